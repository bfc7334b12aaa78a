"""The Engine.IO 4 / Socket.IO 5 WebSocket lane, behind one small interface.

What the rest of the server uses (nothing else of this package):

- :func:`choose_lane` (``server.transport.versions``): which lane runs, from
  ``SESSIONHUB_TRANSPORT`` and the installed versions; imports nothing heavy, so it runs
  before aiohttp, python-socketio or python-engineio is imported.
- :func:`build_server`: the Socket.IO server of that lane, a :class:`SocketServer`.
- :class:`Outlet` and :class:`Packet` (``server.transport.contract``): a connection's way out,
  and a packet encoded once for all of them; the order they keep is written down there.

The lanes: ``fast`` (``fastpath``, ``front``, ``leanws``, ``engine``, ``outlet``) reaches into
the libraries' private parts, for memory and speed, and runs only on the versions it was
tested with; ``stock`` (``stock``) uses their documented API and runs on every version
``pyproject.toml`` allows. The libraries' private names appear in this package only
(``tests/transport/test_contract.py`` greps the tree).
"""

from __future__ import annotations

from typing import Any

from server.transport.contract import Outlet, Packet, SocketServer
from server.transport.versions import Lane, UnsupportedVersions, choose_lane

__all__ = ["Lane", "Outlet", "Packet", "SocketServer", "UnsupportedVersions", "build_server", "choose_lane"]


def build_server(lane: Lane, **options: Any) -> SocketServer:
    """The Socket.IO server of ``lane``; ``options`` are python-socketio's and Engine.IO's, plus
    ``max_payload_bytes``, ``slow_limit_bytes``, ``connect_timeout_s``,
    ``max_connections_per_address``, ``max_http_connections_per_address``,
    ``descriptor_reserve`` and ``trust_forwarded_for``, and
    ``write_deadline`` (both lanes), and ``held_bytes`` (the node's budget of unfinished
    requests, ``handlers.held_bytes``) and ``outbound_budget_bytes`` (the fast lane's only: the
    stock lane cuts a poller past ``slow_limit_bytes``, a WebSocket at the write deadline)."""
    # Imported here: a lane's libraries are imported only once the lane is chosen.
    if lane == "fast":
        from server.transport.fastpath import SessionServer

        return SessionServer(**options)
    options.pop("outbound_budget_bytes", None)
    from server.transport.stock import StockSessionServer

    return StockSessionServer(**options)
