"""A malformed request is logged once a minute per kind of error, whatever bytes it varies.

The kind was the exception's class and the first line of aiohttp's message, and that first line
can be the client's own bytes: an ``InvalidURLError``'s message is the request target, and a
``LineTooLong``'s quotes the start of the line. Measured on a real server: a request target or a
long line that differed per request wrote one WARNING line per request (~1 MB/s of log from one
client). The kind is now aiohttp's wording alone (server.logs.error_kind).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
)
from redis.asyncio import Redis

from server.logs import ClientErrorFilter, error_kind
from tests.helpers import RedisProcess
from tests.test_hostile_exhaust_logs import record_of, send_raw

REQUESTS = 40


def bad_target(n: int) -> bytes:
    """A request target aiohttp refuses (an unclosed IPv6 host), different each time."""
    return b"GET http://[::%d%s HTTP/1.1\r\nHost: x\r\n\r\n" % (n, b"q" * (n % 50))


def long_request_line(n: int) -> bytes:
    """A request line past aiohttp's 8190 bytes, its first 100 bytes (which aiohttp quotes) different each time."""
    return b"GET /%d%s HTTP/1.1\r\nHost: x\r\n\r\n" % (n, b"a" * 8200)


def long_header(n: int) -> bytes:
    """A header line past the limit, its quoted start different each time."""
    return b"GET / HTTP/1.1\r\nHost: x\r\nX-L: %d%s\r\n\r\n" % (n, b"b" * 9000)


async def test_varied_bytes_in_malformed_requests_write_one_line_per_kind(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """40 bad request targets, 40 long request lines, 40 long header lines, each different and
    on a new connection: one line for the bad targets, one for the long lines (a request line
    and a header line are the same error). Fails on the previous kind: 120 lines."""
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path)
    caplog.set_level(logging.WARNING, logger="aiohttp.server")
    try:
        for make in (bad_target, long_request_line, long_header):
            await asyncio.gather(*(send_raw(srv.url, make(n)) for n in range(REQUESTS)))
        lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"]
        said = Counter("InvalidURLError" if "InvalidURLError" in line else "LineTooLong" for line in lines)
        assert said == {"InvalidURLError": 1, "LineTooLong": 1}, lines[:5]
        assert all(len(line) < 400 and "\n" not in line for line in lines), lines
    finally:
        await srv.stop()


def test_the_kind_keeps_aiohttps_wording_and_drops_the_clients_bytes() -> None:
    """Errors that differ only in the client's bytes share a kind; the kinds aiohttp words
    differently stay apart; the line still shows an excerpt of the bytes."""
    same: list[Sequence[HttpProcessingError]] = [
        [InvalidURLError(f"http://[::{n}qq") for n in range(3)] + [InvalidURLError("abc")],
        [LineTooLong(b"/%d..." % n, 8190) for n in range(3)] + [LineTooLong(b"X-L: 1...", 8190)],
        [BadStatusLine(f"GET /{n} b HTTP/1.1") for n in range(3)],
        [BadHttpMethod(f"G\x01T{n}") for n in range(3)],
        [InvalidHeader(b"X-\x01%d" % n) for n in range(3)],
        [BadHttpMessage(f"Invalid header value char:\n\n  b'X-A: {n}'\n  ^") for n in range(3)],
    ]
    kinds = [{error_kind(error)[0] for error in group} for group in same]
    assert all(len(group) == 1 for group in kinds), kinds
    distinct = [group[0] for group in same] + [
        BadHttpMessage("Invalid header token:\n\n  b'x'"),
        BadHttpMessage("Invalid character in chunk size:\n\n  b'zz'"),
        BadHttpMessage("Too many headers received"),
        BadHttpMethod("\x16\x03abc"),  # "Received HTTPS traffic on an HTTP port"
    ]
    assert len({error_kind(error)[0] for error in distinct}) == len(distinct)
    said = ClientErrorFilter(clock=lambda: 1000.0)
    record = record_of(InvalidURLError("http://[::1qq"))
    assert said.filter(record) and "http://[::1qq" in record.getMessage()
    assert not said.filter(record_of(InvalidURLError("http://[::2qq")))
