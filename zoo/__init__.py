"""ultraface-zoo: the UltraFace face detectors, exported to every edge runtime and proven."""

__version__ = "0.1.0"
