"""Idempotency-Key answers are bounded per caller and route (storage/idempotency.py): the oldest
keys are dropped first, the recent ones still replay, and nothing outside the bound is kept."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

import handlers.idempotency
from storage.idempotency import Claimed, IdempotentAnswers, StoredAnswer
from storage.keys import Keys
from tests.conftest import start_server
from tests.helpers import RedisProcess

KEYS = Keys("sh")


def _answer(n: int) -> StoredAnswer:
    return StoredAnswer(201, "application/json", f'{{"n": {n}}}')


async def _kept(redis: Redis, owner: str) -> list[str]:
    """Every idempotency key of ``owner`` in Redis, answers and index alike."""
    return sorted([key async for key in redis.scan_iter(match=f"sh:{{idem:{owner}}}:*")])


async def test_a_caller_keeps_only_its_most_recent_keys(redis: Redis) -> None:
    answers = IdempotentAnswers(redis, KEYS, max_answers=3)
    names = [f"key-{n:04d}" for n in range(5)]
    for n, name in enumerate(names):
        assert await answers.claim("create", "u:alice", name) is None
        await answers.store("create", "u:alice", name, _answer(n))
    assert await answers.claim("create", "u:bob", "key-0000") is None  # another caller: apart
    # The three recent ones replay; the two oldest are gone (a new request again).
    for n, name in enumerate(names[2:], start=2):
        assert await answers.claim("create", "u:alice", name) == _answer(n)
    held = [KEYS.idempotent_answer("create", "u:alice", name) for name in names]
    assert [bool(await redis.exists(key)) for key in held] == [False, False, True, True, True]
    assert await _kept(redis, "u:alice") == sorted([*held[2:], KEYS.idempotent_index("create", "u:alice")])
    assert await redis.zcard(KEYS.idempotent_index("create", "u:alice")) == 3
    assert await redis.ttl(KEYS.idempotent_index("create", "u:alice")) > 0


async def test_a_claim_dropped_while_it_ran_keeps_no_answer(redis: Redis) -> None:
    answers = IdempotentAnswers(redis, KEYS, max_answers=1)
    assert await answers.claim("create", "u:alice", "slow-0001") is None
    assert await answers.claim("create", "u:alice", "fast-0001") is None  # drops the slow one's claim
    await answers.store("create", "u:alice", "slow-0001", _answer(1))
    await answers.store("create", "u:alice", "fast-0001", _answer(2))
    assert not await redis.exists(KEYS.idempotent_answer("create", "u:alice", "slow-0001"))
    assert await answers.claim("create", "u:alice", "fast-0001") == _answer(2)


async def test_a_given_back_claim_does_not_count(redis: Redis) -> None:
    answers = IdempotentAnswers(redis, KEYS, max_answers=2)
    assert await answers.claim("create", "u:alice", "kept-0001") is None
    await answers.store("create", "u:alice", "kept-0001", _answer(1))
    for n in range(3):  # failed requests give their claims back
        assert await answers.claim("create", "u:alice", f"fail-{n:04d}") is None
        await answers.release("create", "u:alice", f"fail-{n:04d}")
    assert await answers.claim("create", "u:alice", "kept-0001") == _answer(1)
    assert await redis.zcard(KEYS.idempotent_index("create", "u:alice")) == 1


@pytest.mark.parametrize("whole", [True, False])
async def test_a_run_whose_claim_ran_out_leaves_the_answer_of_the_retry_that_took_it_over(
    redis: Redis, whole: bool
) -> None:
    """A run stalled past its claim's lifetime (its node starved, its renewals lost) while a retry
    took the key over and stored its answer: the stalled run failing then gives back nothing.
    Its release deleted that answer (and, given back whole, the key's place in the index), and
    the next retry ran as a new request, with new ids: the object made a second time."""
    answers = IdempotentAnswers(redis, KEYS, max_answers=5)
    redis_key = KEYS.idempotent_answer("create", "u:alice", "slow-0001")
    first = await answers.begin("create", "u:alice", "slow-0001")
    await redis.delete(redis_key)  # its claim ran out
    retry = await answers.begin("create", "u:alice", "slow-0001")
    assert retry == Claimed(generation=first.generation, again=True)  # type: ignore[union-attr]
    await answers.store("create", "u:alice", "slow-0001", _answer(7))
    await answers.release("create", "u:alice", "slow-0001", keep_generation=not whole)  # the stalled run fails
    assert await answers.claim("create", "u:alice", "slow-0001") == _answer(7)
    assert await redis.zscore(KEYS.idempotent_index("create", "u:alice"), redis_key) is not None
    # A claim is still given back, whole or keeping its generation, on a bounded store or not.
    for store in (answers, IdempotentAnswers(redis, KEYS)):
        assert await store.claim("create", "u:bob", "fail-0001") is None
        await store.release("create", "u:bob", "fail-0001", keep_generation=not whole)
        assert not await redis.exists(KEYS.idempotent_answer("create", "u:bob", "fail-0001"))
        assert await store.claim("create", "u:bob", "fail-0001") is None
        await store.release("create", "u:bob", "fail-0001")


async def _create(url: str, key: str) -> tuple[int, Any, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "/api/sessions", json={}, headers={"Idempotency-Key": key}) as r,
    ):
        return r.status, (await r.json())["id"], r.headers.get("Idempotent-Replayed", "")


async def test_the_http_routes_keep_a_bounded_number_of_keys_per_caller(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a route (the pattern create, whose caller is its address): past the bound the
    oldest key runs again, a recent one still replays, and the caller holds the bound's worth."""
    monkeypatch.setattr(handlers.idempotency, "MAX_ANSWERS_PER_CALLER", 2)
    server = await start_server(redis_process.url, tmp_path)
    try:
        keys = [str(uuid.uuid4()) for _ in range(4)]
        first = [await _create(server.url, key) for key in keys]
        assert all(status == 201 for status, _, _ in first)
        recent = await _create(server.url, keys[-1])
        assert recent == (201, first[-1][1], "true")
        oldest = await _create(server.url, keys[0])
        assert oldest[0] == 201 and oldest[1] != first[0][1] and oldest[2] == ""
        index = server.services.keys.idempotent_index("pattern_create", "a:127.0.0.1")
        assert await redis.zcard(index) == 2
    finally:
        await server.stop()
