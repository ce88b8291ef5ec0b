"""The REST API (`/api/v1`): JSON endpoints, bearer tokens, live logs over SSE and WebSocket."""
