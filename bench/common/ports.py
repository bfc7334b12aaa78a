"""Free loopback ports: every benchmark listens on 127.0.0.1 only, never on a fixed port."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A currently free TCP port on loopback (the kernel picks it; it is free until someone binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
