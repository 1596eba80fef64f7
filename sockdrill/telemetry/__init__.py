"""Telemetry: tracing in the pods (``tracing``), the runtime's exporters (``collectors``), the supervisor
plugin that serves them and runs the flight recorder (``plugin``)."""
