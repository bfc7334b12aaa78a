"""A client's rate budget is its transport's, not each Socket.IO connection's on it.

A hostile-client audit found that a namespace disconnect and connect again (``41`` then ``40``) on
one Engine.IO connection made a new connection with a full bucket, a flood count at zero and no
retry identities used: cycling that way, a client sent at any rate it liked and never reached a
per-connection cap. Both lanes: python-socketio hands every connect of a transport one environ.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from auth.claims import GUEST_PERMISSIONS
from tests.conftest import start_server
from tests.patterns.test_events import new_pattern
from tests.raw_wire import RawWebSocket, port_of

_SESSION = "1b4e28ba-2d11-4b3a-8c6d-6b7e3f1a2c3d"
# Six events, then about one a hundred seconds: no token comes back while a test runs.
_LIMITS: dict[str, Any] = {"event_rate_per_s": 0.01, "event_burst": 6, "flood_refusals": 1000, "flood_window_s": 60.0}


async def _again(ws: RawWebSocket, token: str) -> None:
    """Leave namespace ``/`` and connect to it again on the same transport."""
    ws.send("41")
    ws.send('40{"token":"' + token + '"}')
    answer = await ws.receive_until("40")
    assert "sid" in json.loads(answer[2:]), answer


async def test_connecting_again_on_one_transport_gets_no_new_bucket(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    srv = await start_server(redis_process.url, tmp_path, **_LIMITS)
    stack = contextlib.ExitStack()
    try:
        token = srv.token("mallory")
        ws, _ = await RawWebSocket.socketio(port_of(srv.url), token)
        stack.callback(ws.close)
        unsubscribe = '["unsubscribe_from_session",{"session_id":"' + _SESSION + '"}]'
        ack_ids = iter(range(1, 1000))

        async def answered() -> bool:
            ack_id = next(ack_ids)
            ws.send(f"42{ack_id}{unsubscribe}")
            ack = await ws.ack(ack_id)
            assert ack["ok"] is True or ack.get("error") == "rate_limited", ack
            return bool(ack["ok"])

        assert [await answered() for _ in range(3)] == [True, True, True]
        # Three tokens of six left; the cycle's two messages may spend one each (the fast lane
        # charges every message no handler's guard sees, and drops them once none is left; the
        # stock lane cannot): a fresh bucket at the connect answered all six.
        await _again(ws, token)
        after = [await answered() for _ in range(6)]
        assert sum(after) <= 3 and not after[-1], after
    finally:
        stack.close()
        await srv.stop()


async def test_connecting_again_on_one_transport_gets_no_new_retry_identities(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """A connection may name four ``client_id`` values for its pattern ops (each costs a key in
    Redis for an hour); connecting again did not count the ones already used."""
    srv = await start_server(redis_process.url, tmp_path)
    stack = contextlib.ExitStack()
    try:
        token = srv.token("mallory", perms=GUEST_PERMISSIONS, guest=True)
        pattern = await new_pattern(srv)
        ws, _ = await RawWebSocket.socketio(port_of(srv.url), token)
        stack.callback(ws.close)
        subscribe = '["subscribe_on_session",{"session_id":"' + pattern + '"}]'

        def op(ack_id: int, client_id: str) -> None:
            body = {
                "session_id": pattern,
                "client_id": client_id,
                "seq": ack_id,
                "op": {"type": "set_step", "trackId": "t1", "step": ack_id % 16, "on": True},
            }
            ws.send(f"42{ack_id}" + json.dumps(["pattern_op", body]))

        ws.send(f"421{subscribe}")
        assert (await ws.ack(1))["ok"] is True
        for n in range(2, 6):
            op(n, f"client-{n}")
            got = await ws.ack(n)
            assert got["ok"] is True, got
        await _again(ws, token)
        ws.send(f"426{subscribe}")
        assert (await ws.ack(6))["ok"] is True
        op(7, "client-2")  # one already named: still its own
        assert (await ws.ack(7))["ok"] is True
        op(8, "client-8")
        refused = await ws.ack(8)
        assert refused.get("error") == "invalid_payload" and "client_id" in refused.get("message", ""), refused
    finally:
        stack.close()
        await srv.stop()
