"""What an exception is answered as (handlers/errors.py): Redis failing is `unavailable`, a bug of
ours `internal_error`."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import ClusterDownError, MovedError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from handlers.errors import classify
from protocol.errors import ErrorCode
from tests.conftest import start_server
from tests.helpers import RedisProcess


async def test_a_connection_torn_down_under_a_command_is_unavailable() -> None:
    # How redis-py fails a command whose connection a cluster client's slot map refresh tore
    # down while it was connecting (after a failover; a fresh-clone run answered it
    # internal_error): its writer is gone. A connection never opened is in that state; sending on
    # it goes through the same line of redis-py.
    torn = Connection(host="127.0.0.1", port=1)
    with pytest.raises(AttributeError) as raised:
        await torn._send_packed_command([b"PING\r\n"])
    assert classify(raised.value).code is ErrorCode.UNAVAILABLE


def test_an_attribute_error_of_ours_is_still_an_internal_error() -> None:
    with pytest.raises(AttributeError) as raised:
        None.missing  # type: ignore[attr-defined]  # noqa: B018
    assert classify(raised.value).code is ErrorCode.INTERNAL_ERROR


def _raised(exc: Exception) -> Exception:
    try:
        raise exc
    except Exception as caught:  # with a traceback, as a command's failure comes
        return caught


@pytest.mark.parametrize(
    "exc",
    [
        RedisConnectionError("Connection refused"),
        RedisTimeoutError("Timeout reading from 127.0.0.1:7001"),
        MovedError("3999 127.0.0.1:7002"),
        ClusterDownError("CLUSTERDOWN The cluster is down"),
    ],
    ids=["connection", "timeout", "moved", "cluster-down"],
)
def test_redis_away_or_moving_is_one_warning_without_a_traceback(
    exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    """A reshard's first MOVED wrote a 25-line ERROR traceback per cause and node, though the
    client was answered a retryable `unavailable` and nothing of the code had failed."""
    with caplog.at_level(logging.DEBUG, logger="handlers.errors"):
        assert classify(_raised(exc)).code is ErrorCode.UNAVAILABLE
    records = [record for record in caplog.records if record.name == "handlers.errors"]
    assert [(record.levelno, record.exc_info) for record in records] == [(logging.WARNING, None)]
    assert str(exc) in records[0].getMessage()


def test_a_bug_is_still_an_error_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="handlers.errors"):
        assert classify(_raised(KeyError("a bug of ours"))).code is ErrorCode.INTERNAL_ERROR
    records = [record for record in caplog.records if record.name == "handlers.errors"]
    assert len(records) == 1 and records[0].levelno == logging.ERROR and records[0].exc_info is not None


async def test_redis_away_is_a_503_that_says_when_to_try_again(tmp_path: Path) -> None:
    """A 503 while Redis did not answer (or a slot moved) carried no Retry-After: a client
    retrying at once met the same outage, and an HTTP client could not tell when (audit
    "clusterlive"). It says a second now, in the header and the body."""
    own = RedisProcess(tmp_path / "redis")
    own.start()
    node = await start_server(own.url, tmp_path / "node")
    try:
        headers = {"Authorization": f"Bearer {node.token('alice')}"}
        own.stop()
        async with aiohttp.ClientSession() as http, http.get(f"{node.url}/voicebot/sessions", headers=headers) as r:
            body = await r.json()
            assert (r.status, body["error"], body.get("retry_after_s")) == (503, "unavailable", 1), body
            assert r.headers.get("Retry-After") == "1"
    finally:
        await node.stop()
        own.stop()
