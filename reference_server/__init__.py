"""reference_server: the token-streaming server done right (WebSocket, SSE, blocking, polling)."""
