"""What an anonymous client can make the server write to its log.

Every request and event writes one INFO line by design (``SESSIONHUB_LOG_LEVEL=WARNING`` silences
them). A request aiohttp cannot parse was one WARNING line each, quoting the whole offending line
escaped: measured on a real server, 200 requests with a 4,000-byte header of control bytes, each
on a new connection, wrote 200 WARNING lines, 3.2 MB (16 KB a request: four characters per
byte), multi-line, at any log level. Now such a line is said once per kind of error a minute, on
one line, with a bounded excerpt, and the repeats are counted in the next.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp.http_exceptions import BadHttpMessage
from redis.asyncio import Redis

from server.logs import CLIENT_ERROR_EVERY_S, ClientErrorFilter
from tests.helpers import RedisProcess

BAD_HEADER = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"\x01" * 4000 + b"\r\n\r\n"
BAD_VERSION = b"GET / HTTP/9." + b"9" * 4000 + b"\r\n\r\n"


async def send_raw(url: str, raw: bytes) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)  # the 400 and the close
    finally:
        writer.close()


async def test_malformed_requests_write_a_bounded_line_per_kind(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """200 requests with a 4 KB malformed header, then 200 with a 4 KB bad version, each on a new
    connection: each kind is said at most once (another test's request of that kind within the
    minute may have said it already), on one line of a few hundred characters. Fails on the
    previous filter: 400 lines of up to 16 KB."""
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path)
    caplog.set_level(logging.WARNING, logger="aiohttp.server")
    try:
        for raw in (BAD_HEADER, BAD_VERSION):
            for _ in range(200):
                await send_raw(srv.url, raw)
        lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"]
        assert len(lines) <= 2, len(lines)
        assert all(len(line) < 400 and "\n" not in line for line in lines), lines
    finally:
        await srv.stop()


def record_of(error: BaseException) -> logging.LogRecord:
    """The record aiohttp's server logs for a request it could not parse."""
    return logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 0, "Error handling request from %s", ("203.0.113.7",),
        (type(error), error, None),
    )  # fmt: skip


def test_the_repeats_of_a_kind_are_counted_in_its_next_line() -> None:
    """Within the minute a kind's repeats are dropped and counted (whatever bytes they quote);
    the first line after it says how many; another kind is said at once."""
    now = [1000.0]
    said = ClientErrorFilter(clock=lambda: now[0])
    first = record_of(BadHttpMessage("Invalid header value char:\n\n  b'X-A: " + "\\x01" * 1000 + "'"))
    assert said.filter(first) and first.levelno == logging.WARNING
    assert "Invalid header value char" in first.getMessage() and len(first.getMessage()) < 300
    assert [said.filter(record_of(BadHttpMessage(f"Invalid header value char:\n\n  b'{n}'"))) for n in range(5)] == [
        False
    ] * 5
    assert said.filter(record_of(BadHttpMessage("Invalid character in chunk size:\n\n  b'zz'")))
    now[0] += CLIENT_ERROR_EVERY_S
    later = record_of(BadHttpMessage("Invalid header value char:\n\n  b'again'"))
    assert said.filter(later)
    assert "5 more since the last line of this kind" in later.getMessage(), later.getMessage()
