"""edgetwin: an edge-gateway agent for digital twins of machines."""

__version__ = "0.1.0"
