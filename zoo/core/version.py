"""The tool's version: one place, read by the core (artifact metadata, manifests) without importing
upward, re-exported as ``zoo.__version__`` and read by the build (pyproject.toml's dynamic version)."""

__version__ = "0.1.0"
