"""The package's version, in a module of its own so `isobox --version` imports nothing else."""

__version__ = "0.1.0"
