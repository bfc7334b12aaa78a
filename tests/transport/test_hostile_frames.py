"""Malformed Socket.IO frames over a raw WebSocket: each gets an answer (its ack when it asked
for one), the connection stays usable, and the log gets one traceback per cause, not per frame."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from handlers.log_throttle import LogThrottle
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.raw_wire import RawWebSocket, port_of

# (frame after "42<ack id>", expected error)
MALFORMED = [
    ('["session_done"', "invalid_payload"),  # truncated JSON
    ('{"event":"session_done"}', "invalid_payload"),  # not an array
    ("[]", "invalid_payload"),  # no event name
    ("[1,{}]", "invalid_payload"),  # a name that is not a string
    ('[["x"],{}]', "invalid_payload"),
    ("[" * 3000 + "]" * 3000, "invalid_payload"),  # nested past the JSON decoder's recursion limit
    ('["session_done",{"session_id":"x"}]garbage', "invalid_payload"),
]


def tracebacks(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for record in caplog.records if record.exc_info)


async def test_malformed_frames_with_an_ack_id_get_an_ack(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    try:
        for number, (frame, expected) in enumerate(MALFORMED, start=1):
            ws.send(f"42{number}{frame}")
            ack = await ws.ack(number)
            assert ack["ok"] is False and ack["error"] == expected, (frame[:40], ack)
        ws.send("42[")  # no ack id: a protocol_error event instead of silence
        event = await ws.receive_until('42["protocol_error"')
        assert '"invalid_payload"' in event
        ws.send("49")  # not a Socket.IO packet type at all
        assert '"invalid_payload"' in await ws.receive_until('42["protocol_error"')
        ws.send("9")  # not an Engine.IO packet type: Engine.IO drops it (logged once per cause)
        ws.send(f'4299["session_done",{{"session_id":"{session_id}"}}]')
        assert (await ws.ack(99))["ok"] is True
    finally:
        ws.close()


async def test_a_long_ack_id_is_answered_under_that_whole_id(server: ServerUnderTest) -> None:
    # python-socketio reads an ack id of up to 100 digits. The stock lane's screen read 18: it
    # refused any such event as malformed and acked it under its first 18 digits; a malformed
    # one was acked so on both lanes (a client waits for its own id).
    session_id = await server.create_session("alice")
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    long_id = 10**29 + 7  # 30 digits
    try:
        ws.send(f'42{long_id}["no_such_event",{{}}]')
        assert (await ws.ack(long_id))["error"] == "unknown_event"
        ws.send(f'42{long_id + 1}["disconnect"]')  # reserved: refused, not run
        assert (await ws.ack(long_id + 1))["error"] == "unknown_event"
        ws.send(f'42{long_id + 2}["session_done"')
        assert (await ws.ack(long_id + 2))["error"] == "invalid_payload"
        ws.send(f'42{"1" * 101}["no_such_event",{{}}]')  # past python-socketio's reading: no id at all
        assert '"invalid_payload"' in await ws.receive_until('42["protocol_error"')
        ws.send(f'42{long_id + 3}["session_done",{{"session_id":"{session_id}"}}]')
        assert (await ws.ack(long_id + 3))["ok"] is True
    finally:
        ws.close()


async def test_a_flood_of_malformed_frames_logs_once_per_cause(
    server: ServerUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    caplog.set_level(logging.INFO)  # where a client's mistakes are logged
    try:
        for number in range(1, 301):
            ws.send(f'42{number}["session_done"')  # the same cause, 300 times
        assert (await ws.ack(300))["error"] == "invalid_payload"
        ws.send("42301[1]")  # a second cause
        assert (await ws.ack(301))["error"] == "invalid_payload"
        for _ in range(100):
            ws.send("9")  # a third: not even Engine.IO
        ws.send("42302[1]")
        assert (await ws.ack(302))["error"] == "invalid_payload"
    finally:
        ws.close()
    assert tracebacks(caplog) <= 3, [r.getMessage() for r in caplog.records][:5]


async def test_a_redis_outage_is_unavailable_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, redis_process: RedisProcess
) -> None:
    doomed = RedisProcess(tmp_path / "doomed")
    doomed.start()
    srv = await start_server(doomed.url, tmp_path)
    ws, _ = await RawWebSocket.socketio(port_of(srv.url), srv.token("alice"))
    try:
        doomed.stop()
        caplog.set_level(logging.WARNING, logger="handlers.errors")
        session_id = "6f1c1a4e-1c1b-4d2a-9f5e-0c7a9b1e2d3f"
        for number in range(1, 41):
            ws.send(f'42{number}["subscribe_on_session",{{"session_id":"{session_id}"}}]')
        acks: list[Any] = [await ws.ack(number, timeout=20) for number in range(1, 41)]
        assert {ack["error"] for ack in acks} == {"unavailable"}, acks[:2]
        from_errors = [r for r in caplog.records if r.name == "handlers.errors" and r.exc_info]
        assert len(from_errors) <= 2, len(from_errors)
    finally:
        ws.close()
        await srv.stop()
        await asyncio.sleep(0)


def test_the_throttle_reports_counts_once_per_interval() -> None:
    now = [0.0]
    logger = logging.getLogger("tests.throttle")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        throttle = LogThrottle(logger, every_s=10, clock=lambda: now[0])
        for _ in range(1000):
            try:
                raise ValueError("same place")
            except ValueError as exc:
                throttle.exception("boom", exc)
            now[0] += 0.1  # 1000 in 100 s: one traceback, then a count every 10 s
        assert sum(1 for r in records if r.exc_info) == 1
        counts = [r for r in records if not r.exc_info]
        assert 8 <= len(counts) <= 10 and "more times" in counts[0].getMessage()
    finally:
        logger.removeHandler(handler)
