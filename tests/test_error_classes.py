"""What an exception is answered as (handlers/errors.py): Redis failing is `unavailable`, a bug of
ours `internal_error`."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection

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
