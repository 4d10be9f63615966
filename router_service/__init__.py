"""router-service: classify signals with transparent rules and route them to HTTP agents."""

__version__ = "0.1.0"
