"""A Telegram update redelivered after its first handling died midway through ``/done`` (the
session closed, no reply stored, the claim run out) closes nothing twice: it is that press."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from tests.helpers import ServerUnderTest
from tests.voice.test_chunks import performer_of
from tests.voice.test_events import queued_jobs
from tests.voice.test_telegram import bot, command, post  # noqa: F401  (bot: the fixture)


async def test_a_redelivered_done_update_counts_once_and_queues_one_job(bot: ServerUnderTest, redis: Redis) -> None:  # noqa: F811
    voice = bot.services.voice
    session_id = await bot.create_session("alice")
    await voice.set_active("alice", session_id)
    update_id = 7_000_001
    # The first delivery's close, made before its node died (no pointer cleared, no job, no reply).
    cut = await voice.done(
        session_id, performer_of("alice"), job_id="job-of-update-7000001", request_id=f"telegram-{update_id}"
    )
    assert cut.done_count == 1

    status, reply = await post(bot, {"update_id": update_id, "message": command("/done")})
    assert status == 200 and session_id in reply["text"], reply
    session = await voice.get(session_id)
    assert session is not None and session.done_count == 1
    assert await voice.active_id("alice") is None
    jobs: list[dict[str, Any]] = await queued_jobs(redis, bot)
    assert [(j["type"], j["job_id"]) for j in jobs] == [("DONE_MULTIPROMPT", "job-of-update-7000001")]

    # Another /done (another update) is another press; the session is no longer active.
    status, reply = await post(bot, {"update_id": update_id + 1, "message": command("/done")})
    assert status == 200 and session_id not in reply["text"], reply
