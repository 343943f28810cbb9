"""The gateway: REST and WebSocket API over the projections and the live event stream, and the web UI."""
