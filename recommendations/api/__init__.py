"""The REST API: thin DRF views over the same validation, storage and
serving that the WebSocket uses."""
