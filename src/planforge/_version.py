"""The package version, in a module of its own so every layer can read it without the root."""

__all__ = ["__version__"]

__version__ = "0.1.0"
