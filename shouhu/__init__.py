"""Shouhu (守護): shared wire contract, models and CLI for the edge agent and the collector."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shouhu")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
