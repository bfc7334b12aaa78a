"""A change reaches a small session's members as soon as it is acknowledged (issue 26: the
steady-rate latency lead).

A room whose rounds follow each other closely lingers before its next round so that changes
arriving meanwhile share its writes (server/bus.py). For a room of a few members a round takes
microseconds, so that linger was a few microseconds -- which the event loop cannot wait: epoll
waits whole milliseconds, so with nothing else to do the server slept a full millisecond before
every delivery of a conversation (a recorder toggling, a player answering what it saw). The
server here is its own process, as in production: a test client sharing its event loop would
wake it early and hide the wait.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import CHILD_TEST_TIMEOUT_S, RedisProcess, free_port
from tests.raw_wire import RawWebSocket
from tests.test_processes import ROOT, _wait_ready, mint, node_env, post

pytestmark = pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)

CHANGES = 60


async def test_back_to_back_changes_of_a_small_session_are_delivered_with_their_ack(
    redis_process: RedisProcess, tmp_path: Path
) -> None:
    token = mint("alice", "read_own", "create", "update")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        cwd=ROOT,
        env=node_env(
            tmp_path,
            redis_process.url,
            SESSIONHUB_INPROCESS_WORKERS="0",
            SESSIONHUB_EVENT_RATE_PER_S="1000",  # the conversation is faster than a person's
            SESSIONHUB_EVENT_BURST="1000",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    ws: RawWebSocket | None = None
    try:
        await _wait_ready(url, proc)
        status, created = await post(f"{url}/voicebot/create_session", token)
        assert status == 201, created
        session_id = created["session_id"]
        ws, _ = await RawWebSocket.socketio(port, token)
        ws.send('420["subscribe_on_session",' + json.dumps({"session_id": session_id}) + "]")
        assert (await ws.ack(0))["ok"]

        # The recorder answers each change with the next, as a person toggling does: each round
        # of the room follows the one before within milliseconds.
        gaps_ms: list[float] = []
        for n in range(1, CHANGES + 1):
            change = {"session_id": session_id, "status": "recording" if n % 2 else "paused"}
            ws.send(f'42{n}["set_session_status",{json.dumps(change)}]')
            acked = delivered = 0.0
            while not (acked and delivered):
                message = await ws.receive()
                now = time.perf_counter()
                if message == "2":
                    ws.send("3")
                elif isinstance(message, str) and message.startswith(f"43{n}["):
                    assert json.loads(message[2 + len(str(n)) :])[0].get("changed"), message
                    acked = now
                elif isinstance(message, str) and message.startswith('42["session_status"'):
                    delivered = now
            gaps_ms.append((delivered - acked) * 1000)
        # Published by the same Redis step that answers the ack: the event follows at once. A
        # millisecond timer between them shows as every gap >= ~1 ms.
        assert statistics.median(gaps_ms) < 0.6, sorted(gaps_ms)
    finally:
        if ws is not None:
            ws.close()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(20)
        if proc.stderr is not None:
            proc.stderr.close()
