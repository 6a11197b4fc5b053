"""smppbridge: an SMPP 3.4 server that bridges ESMEs to HTTP SMS/Viber providers."""

__version__ = "0.1.0"
__all__ = ["__version__"]
