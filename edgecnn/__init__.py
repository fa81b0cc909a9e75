"""edgecnn: train, quantize, export and profile small image classifiers for edge devices."""

__version__ = "0.1.0"
