"""What an exception is answered as (handlers/errors.py): Redis failing is `unavailable`, a bug of
ours `internal_error`."""

from __future__ import annotations

import logging

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import ClusterDownError, MovedError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from handlers.errors import classify
from protocol.errors import ErrorCode


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
