"""The HTTP and WebSocket service (extra `server`): FastAPI over the factory, the store and
the runtime."""
