"""Composition root: settings, app factory, Socket.IO and HTTP wiring, the bus, CLI."""
