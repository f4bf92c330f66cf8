"""Gateway: one place to run AI agents behind an OpenAI-compatible API and a WebSocket protocol."""

__version__ = "0.1.0"

__all__ = ["__version__"]
