"""Script calls of one script sent in one loop iteration run as one call of its batch script
(storage/lean_redis.py, ``BATCH_SCRIPT``; issue 26): one EVALSHA for Redis, each call answered
on its own, in the order issued. Against a real redis-server (``INFO commandstats``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from storage.lean_redis import MAX_BATCH, LeanRedis
from tests.helpers import RedisProcess

# Appends its argument to a list and answers the list's length; 'nil' answers nothing, 'boom'
# fails inside Lua, 'wrong' makes Redis refuse a command (a wrong type).
SCRIPT = """
if ARGV[1] == 'nil' then
  return nil
end
if ARGV[1] == 'boom' then
  return 1 + nil
end
if ARGV[1] == 'wrong' then
  return redis.call('HGET', KEYS[1], 'f')
end
return redis.call('RPUSH', KEYS[1], ARGV[1])
"""


@pytest_asyncio.fixture
async def plain(redis: Redis, redis_process: RedisProcess) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_process.url, decode_responses=True)
    yield client
    await client.aclose()


async def calls(plain: Redis, name: str) -> int:
    return int((await plain.info("commandstats")).get(f"cmdstat_{name}", {}).get("calls", 0))


def script_on(redis: Redis) -> Any:
    assert isinstance(redis, LeanRedis)
    script = redis.register_script(SCRIPT)
    redis.remember(script)  # what storage/scripts.py does for every script it registers
    return script


async def test_calls_of_one_iteration_are_one_evalsha_each_answered_in_order(redis: Redis, plain: Redis) -> None:
    script = script_on(redis)
    assert await script(keys=["warm"], args=["x"]) == 1
    before = await calls(plain, "evalsha")
    answers = await asyncio.gather(*(script(keys=["l"], args=[str(i)]) for i in range(10)))
    assert answers == list(range(1, 11))
    assert await plain.lrange("l", 0, -1) == [str(i) for i in range(10)]
    # the batch script's first call finds none: NOSCRIPT, then EVAL; the next batch is one EVALSHA
    assert await calls(plain, "evalsha") - before <= 2
    before = await calls(plain, "evalsha")
    await asyncio.gather(*(script(keys=["m"], args=[str(i)]) for i in range(10)))
    assert await calls(plain, "evalsha") - before == 1


async def test_each_call_of_a_batch_gets_its_own_answer_or_error(redis: Redis, plain: Redis) -> None:
    script = script_on(redis)
    await plain.set("s", "a string")
    args = [("l", "a"), ("l", "nil"), ("l", "boom"), ("s", "wrong"), ("l", "b")]
    answers = await asyncio.gather(
        *(script(keys=[key], args=[arg]) for key, arg in args),
        return_exceptions=True,
    )
    assert answers[0] == 1 and answers[1] is None and answers[4] == 2
    assert isinstance(answers[2], ResponseError)
    assert isinstance(answers[3], ResponseError) and "WRONGTYPE" in str(answers[3])
    assert await plain.lrange("l", 0, -1) == ["a", "b"]  # the failed calls cost the others nothing


async def test_a_batch_holds_at_most_max_batch_calls(redis: Redis, plain: Redis) -> None:
    script = script_on(redis)
    await asyncio.gather(*(script(keys=["w"], args=["x"]) for _ in range(2)))
    before = await calls(plain, "evalsha")
    count = MAX_BATCH + 8
    answers = await asyncio.gather(*(script(keys=["l"], args=[str(i)]) for i in range(count)))
    assert answers == list(range(1, count + 1))
    assert await calls(plain, "evalsha") - before == 2


async def test_other_commands_keep_their_place_ahead_of_a_batch(redis: Redis, plain: Redis) -> None:
    """A call runs after everything sent before it: a write sent between two calls of a batch
    runs before the batch (the batch goes where its last call was)."""
    script = script_on(redis)
    assert isinstance(redis, LeanRedis)
    await asyncio.gather(*(script(keys=["w"], args=["x"]) for _ in range(2)))

    async def ahead_then_call(i: int) -> object:
        sent = redis.send_ahead("ZADD", "due", i, f"m{i}")
        assert sent is not None
        answer = await script(keys=["l"], args=[f"m{i}"])
        await sent
        return answer

    answers = await asyncio.gather(*(ahead_then_call(i) for i in range(5)))
    assert answers == [1, 2, 3, 4, 5]
    assert await plain.zrange("due", 0, -1) == [f"m{i}" for i in range(5)]


@pytest.mark.parametrize("flush", [False, True])
async def test_a_batch_survives_a_redis_that_lost_its_scripts(redis: Redis, plain: Redis, flush: bool) -> None:
    script = script_on(redis)
    await asyncio.gather(*(script(keys=["w"], args=["x"]) for _ in range(2)))
    if flush:
        await plain.script_flush()
    answers = await asyncio.gather(*(script(keys=["l"], args=[str(i)]) for i in range(6)))
    assert answers == list(range(1, 7))
    assert await plain.lrange("l", 0, -1) == [str(i) for i in range(6)]


async def test_calls_of_another_script_end_a_batch_so_writes_keep_their_order(redis: Redis, plain: Redis) -> None:
    first = script_on(redis)
    second = redis.register_script(SCRIPT + "-- another script")
    assert isinstance(redis, LeanRedis)
    redis.remember(second)
    for script in (first, second):  # each script and its batch script loaded
        await script(keys=["w"], args=["x"])
        await asyncio.gather(*(script(keys=["w"], args=["x"]) for _ in range(2)))
    before = await calls(plain, "evalsha")
    order = [first, first, second, first, first]
    answers = await asyncio.gather(*(s(keys=["l"], args=[str(i)]) for i, s in enumerate(order)))
    assert answers == [1, 2, 3, 4, 5]
    assert await plain.lrange("l", 0, -1) == ["0", "1", "2", "3", "4"]  # issued order, not grouped
    assert await calls(plain, "evalsha") - before == 3  # two batches and the call between them
