"""The HTTP and WebSocket API, served by Ray Serve."""

__all__: list[str] = []
