"""Faults: one model (``spec``), a registry of kinds (``kinds``), a controller in the supervisor
(``controller``, ``plugin``), and Chaos Mesh rendering (``render``).

Importing this package does nothing heavy: the fault workers start as ``python -m sockdrill.chaos.worker``.
"""
