"""Real-time contact-center wallboard server."""

__version__ = "0.1.0"
