"""A long-polling connection cut for flooding still gets its acks and the reason, as a WebSocket does.

PROTOCOL (Flooding): the client reads the ack of the refusal that reached the limit, then
``protocol_error`` with ``reason: "flood"``, then the disconnect. Over long-polling those waited in
the session's queue for the next poll, and the cut ended the session first: a client that sent 50
status changes in one POST got none of its acks (40 of the writes were applied) and no notice,
and its retries repeated writes already done (audit "protoclient"). Both lanes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import fast_lane_only
from tests.raw_wire import RawPoller
from tests.test_hostile_sockets_stalled_ws import lane_server

LANES = [pytest.param("fast", marks=fast_lane_only), "stock"]
# A burst of 40, then 5 refusals cut the connection.
_LIMITS: dict[str, Any] = {"event_rate_per_s": 1.0, "event_burst": 40, "flood_refusals": 5, "flood_window_s": 60.0}
WRITES = 50


@pytest.mark.parametrize("lane", LANES)
async def test_a_long_poller_cut_for_flooding_reads_every_ack_and_why(
    lane: str, redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    srv = await lane_server(lane, redis_process.url, tmp_path, **_LIMITS)
    try:
        session_id = await srv.create_session("alice")
        async with aiohttp.ClientSession() as http:
            poller = await RawPoller.open(http, srv.url)
            await poller.socketio(srv.token("alice"))
            statuses = ("recording", "paused")
            writes = [
                f"42{n}" + json.dumps(["set_session_status", {"session_id": session_id, "status": statuses[n % 2]}])
                for n in range(WRITES)
            ]
            assert await poller.post(*writes) == 200
            got: list[str] = []
            while True:  # poll after poll, as the client does, until the session is gone
                packets = await poller.get(timeout=10)
                if packets and packets[0].startswith("HTTP"):
                    break
                got.extend(packets)
                if any(p == "1" for p in packets):  # Engine.IO CLOSE
                    break
        applied = (await srv.services.log.position(session_id)).offset - 1  # the creation is event 1
        acks = [json.loads(p[p.index("[") :])[0] for p in got if p.startswith("43")]
        ok = [ack for ack in acks if ack.get("ok") is True]
        assert applied > 0 and len(ok) == applied, (applied, len(ok), acks[-3:])
        notices = [json.loads(p[2:]) for p in got if p.startswith('42["protocol_error"')]
        assert notices and notices[0][1]["reason"] == "flood", got[-5:]
    finally:
        await srv.stop()
