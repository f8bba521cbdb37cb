"""rnix: run LLM agents the way Unix runs programs."""

__version__ = "0.1.0"
