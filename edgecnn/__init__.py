"""edgecnn: train, quantize, export and profile small image classifiers for edge devices."""

__version__ = "0.1.0"

from edgecnn.errors import UserError  # noqa: E402  (what every stage raises; the stages: edgecnn.api)
