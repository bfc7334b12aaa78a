"""The listening sweeper looks at the histories of one claim together (storage/due.py), against
a real redis-server whose ``INFO stats`` counts the reads it does."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from storage.clock import Clock
from storage.events import EventLog
from storage.keys import Keys
from storage.listening.model import ListeningRules
from storage.listening.repository import ListeningHistories
from storage.scripts import Scripts
from storage.sessions import SessionDirectory
from storage.store import Store
from tests.helpers import RedisProcess

HISTORIES = 20


def histories_on(redis: Redis) -> ListeningHistories:
    keys, clock = Keys("sh"), Clock()
    log = EventLog(redis=redis, keys=keys, clock=clock, maxlen=1000)
    sessions = SessionDirectory(redis=redis, keys=keys, clock=clock, orphan_days=30)
    store = Store(redis=redis, keys=keys, scripts=Scripts.load(redis), log=log, clock=clock, sessions=sessions)
    return ListeningHistories(store, rules=ListeningRules())


async def test_the_histories_of_one_claim_are_swept_and_settled_together(
    redis: Redis, redis_process: RedisProcess
) -> None:
    histories = histories_on(redis)
    due_key = Keys("sh").listening_due()
    await redis.zadd(due_key, {str(uuid.uuid4()): 1})
    assert await histories.sweep_due(limit=100) == (1, 0)  # the scripts are loaded, the link open
    # Histories with nothing open (their players all stopped): each is looked at and leaves the set.
    await redis.zadd(due_key, {str(uuid.uuid4()): 1 for _ in range(HISTORIES)})
    plain = Redis.from_url(redis_process.url, decode_responses=True)
    try:
        before = int((await plain.info("stats"))["total_reads_processed"])
        assert await histories.sweep_due(limit=100) == (HISTORIES, 0)
        reads = int((await plain.info("stats"))["total_reads_processed"]) - before
    finally:
        await plain.aclose()
    assert reads <= 4, reads  # claim, sweeps, settles, and the second INFO itself (one by one: 42)
    assert await redis.zcard(due_key) == 0
