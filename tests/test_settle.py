"""SessionDirectory.settle (what shutdown and readers of the admin indexes wait on) ends once its
background touches are done, without depending on the loop to run their done callbacks first.

A finished touch leaves the pending set by a done callback, a loop turn after it finished; and
from Python 3.12 a gather of finished tasks completes without yielding that turn. Waiting for
the set to empty itself therefore spun forever on 3.12+ (a server's shutdown held the loop: seen
as a 60 s teardown hang on the newest set, Python 3.13)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from storage.clock import Clock
from storage.keys import Keys
from storage.sessions import SessionDirectory


async def test_settle_with_only_finished_touches_returns_at_once(redis: Redis) -> None:
    directory = SessionDirectory(redis=redis, keys=Keys("sh"), clock=Clock(), orphan_days=30)

    async def touch() -> None:
        return None

    task = asyncio.get_running_loop().create_task(touch())
    directory._pending.add(task)
    task.add_done_callback(directory._pending.discard)
    await asyncio.sleep(0)  # the touch runs and finishes; its done callback waits for the next turn
    assert task.done() and task in directory._pending

    settling = directory.settle()
    with pytest.raises(StopIteration):  # done in one step: no turn of the loop waited for
        settling.send(None)
    assert not directory._pending
