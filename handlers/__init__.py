"""One module per capability: HTTP routes and Socket.IO events, thin by design."""
