"""sockdrill: a proving ground for SRE agents built on a local Sock Shop."""

__version__ = "0.1.0"
__all__ = ["__version__"]
