"""An ``Idempotency-Key`` create whose first run failed *normally* after it made its object is made
once: the client's retry with the same key answers that object.

tests/test_retry_idempotency_kill.py kills the node mid-request; here the node lives and the
request fails as requests do: Redis refuses a step after the create (a key of the wrong type, Redis
out of memory when the answer is kept) or the handler is cancelled after the create (its node
stopping). A failed run used to give its key back whole, so the retry claimed it afresh, derived
new ids and made a second object; a cancelled one, or one whose answer was not kept, held its key
``409`` until its claim ran out. handlers/idempotency.py now gives the claim back keeping the key's
generation (storage/idempotency.py ``release(keep_generation=True)``).

The faults are real Redis refusals, provoked on the test's own redis-server, and a real node
stop: no hook in the product. Where a fault must come at one moment (just after the create), the
test wraps a storage method for the test's length (pytest's monkeypatch, undone afterwards), as
it holds the step after a voice create to stop its node mid-request.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from auth.claims import GUEST_PERMISSIONS
from storage.clock import Clock
from storage.idempotency import Claimed, IdempotentAnswers
from storage.keys import Keys
from storage.patterns.repository import PatternSessions
from storage.voice.repository import VoiceSessions
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest, to_window_start

ANSWER_BOUND_S = 20
DAY_S = 86_400


async def _post(server: ServerUnderTest, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any, str]:
    timeout = aiohttp.ClientTimeout(total=ANSWER_BOUND_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(server.url + path, json=body, headers=headers) as r,
    ):
        return r.status, await r.json(), r.headers.get("Idempotent-Replayed", "")


async def _retry_answers_the_one_session(
    server: ServerUnderTest, redis: Redis, headers: dict[str, str], made: list[str]
) -> None:
    """The keyed voice create sent again on ``server``: answered for real (not a replay) with the
    one session a failed try made, which is active; no second one."""
    status, body, replayed = await _post(server, "/voicebot/create_session", {"session_name": "Once"}, headers)
    assert (status, replayed) == (201, ""), body
    assert body["session_id"] == made[0]
    assert await _voice_sessions(server, redis) == made, "the retry made a second session"
    assert await server.services.voice.active_id("alice") == made[0]


def _alice(server: ServerUnderTest) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token('alice')}", "Idempotency-Key": f"fail-{uuid.uuid4()}"}


async def _voice_sessions(server: ServerUnderTest, redis: Redis) -> list[str]:
    return [str(s) for s in await redis.zrange(server.services.keys.user_sessions("alice"), 0, -1)]


async def test_a_voice_create_that_failed_after_the_create_is_answered_the_session_by_its_retry(
    server: ServerUnderTest, redis: Redis
) -> None:
    """The session is written, then making it active fails (the active pointer is a list: Redis
    answers WRONGTYPE): ``500``. The retry, another body with the same key, is the first request
    (PROTOCOL): it answers that session, by its first name, and makes it active; one session."""
    headers = _alice(server)
    pointer = server.services.keys.active_session("alice")
    await redis.rpush(pointer, "not a session id")
    status, body, _ = await _post(server, "/voicebot/create_session", {"session_name": "First"}, headers)
    assert status == 500 and body["error"] == "internal_error", body
    made = await _voice_sessions(server, redis)
    assert len(made) == 1, "the create ran before the failure"

    await redis.delete(pointer)  # the fault gone
    status, body, replayed = await _post(server, "/voicebot/create_session", {"session_name": "Second"}, headers)
    assert (status, replayed) == (201, ""), body
    assert await _voice_sessions(server, redis) == made, "the retry made a second session"
    assert body["session_id"] == made[0] and body["session_name"] == "First"
    assert await server.services.voice.active_id("alice") == made[0]
    # And its answer is now kept: a repeat replays it.
    assert await _post(server, "/voicebot/create_session", {}, headers) == (201, body, "true")


async def test_a_remix_that_failed_after_the_copy_is_answered_the_copy_by_its_retry(
    server: ServerUnderTest, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy is made and counted on its parent, then the admin sort index refuses the count
    (a string where a sorted set belongs, put there just after the copy was made: WRONGTYPE):
    ``500``. The retry answers that copy, counted once: one child, ``remixCount`` 1."""
    status, parent, _ = await _post(server, "/api/sessions", {"name": "Parent"}, {})
    assert status == 201
    sort_index = server.services.keys.admin_remixes()
    create = PatternSessions.create

    async def create_then_break_the_sort_index(self: PatternSessions, *args: Any, **kwargs: Any) -> Any:
        record = await create(self, *args, **kwargs)
        await redis.delete(sort_index)
        await redis.set(sort_index, "not a sorted set")
        return record

    monkeypatch.setattr(PatternSessions, "create", create_then_break_the_sort_index)
    path = f"/api/sessions/{parent['id']}/remix"
    headers = {"Idempotency-Key": f"fail-{uuid.uuid4()}"}
    status, body, _ = await _post(server, path, None, headers)
    assert status == 500, body
    children = await redis.zrange(server.services.keys.remix_children(parent["id"]), 0, -1)
    assert len(children) == 1, "the copy was made before the failure"

    monkeypatch.undo()
    await redis.delete(sort_index)  # the fault gone
    status, body, replayed = await _post(server, path, None, headers)
    assert (status, replayed) == (201, ""), body
    assert (body["id"], body["remixedFrom"]) == (children[0], parent["id"])
    assert await redis.zrange(server.services.keys.remix_children(parent["id"]), 0, -1) == children
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/sessions/{parent['id']}") as r:
        assert (await r.json())["remixCount"] == 1


async def test_a_pattern_create_whose_answer_redis_refused_to_keep_is_answered_the_session_by_its_retry(
    server: ServerUnderTest, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis reaches its memory limit between the create and keeping the answer (``maxmemory``
    set just after the create: the answer's SET is refused OOM). The session stands, so the first
    request is answered ``201``; its key is given back at once (not held ``409`` until its claim
    runs out) with its generation: the retry answers the same session; one session."""
    made: list[str] = []
    create = PatternSessions.create

    async def create_then_fill_redis(self: PatternSessions, *args: Any, **kwargs: Any) -> Any:
        record = await create(self, *args, **kwargs)
        made.append(record.id)
        await redis.config_set("maxmemory", 1)  # noeviction (the default): writes refused OOM
        return record

    monkeypatch.setattr(PatternSessions, "create", create_then_fill_redis)
    headers = {"Idempotency-Key": f"fail-{uuid.uuid4()}"}
    try:
        first = await _post(server, "/api/sessions", {"name": "Beat"}, headers)
    finally:
        await redis.config_set("maxmemory", 0)
    monkeypatch.undo()
    assert first[0] == 201 and first[1]["id"] == made[0], first
    before = await redis.zcard(server.services.keys.all_sessions())

    status, body, replayed = await _post(server, "/api/sessions", {"name": "Beat"}, headers)
    assert (status, replayed) == (201, ""), body
    assert body["id"] == made[0]
    assert await redis.zcard(server.services.keys.all_sessions()) == before, "the retry made a second session"
    assert await _post(server, "/api/sessions", {}, headers) == (201, body, "true")


class StuckAfterTheCreate:
    """``VoiceSessions.set_active`` (the step after a voice create) held on its first call until
    :attr:`go` is set: the request's handler is then mid-request, its session written."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reached = asyncio.Event()
        self.go = asyncio.Event()
        self.handler: asyncio.Task[Any] | None = None
        set_active = VoiceSessions.set_active

        async def held_once(repo: VoiceSessions, user_id: str, session_id: str) -> None:
            if self.handler is None:
                self.handler = asyncio.current_task()
                self.reached.set()
                await self.go.wait()
            await set_active(repo, user_id, session_id)

        monkeypatch.setattr(VoiceSessions, "set_active", held_once)

    async def send(self, server: ServerUnderTest, headers: dict[str, str]) -> asyncio.Task[Any]:
        """The create, sent; returned once its handler is held."""
        sent = asyncio.create_task(_post(server, "/voicebot/create_session", {"session_name": "Once"}, headers))
        await asyncio.wait_for(self.reached.wait(), ANSWER_BOUND_S)
        return sent


async def test_a_voice_create_cancelled_by_its_node_stopping_is_answered_the_session_by_its_retry(
    server: ServerUnderTest, redis: Redis, redis_process: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node stops while a create runs: aiohttp cancels the handler after the runner's
    shutdown timeout (3 s), the session written, not yet made active, and the client's
    connection is cut. The retry, on another node, is answered at once (the key was given back,
    not held ``409`` until its claim runs out) with that session, made active; one session."""
    stuck = StuckAfterTheCreate(monkeypatch)
    stopping = await start_server(redis_process.url, tmp_path / "stopping")
    headers = _alice(server)
    try:
        sent = await stuck.send(stopping, headers)
    finally:
        await stopping.stop()
    with pytest.raises(aiohttp.ClientError):
        await sent
    assert stuck.handler is not None and stuck.handler.cancelled(), "the node's stop cancelled the handler"
    made = await _voice_sessions(server, redis)
    assert len(made) == 1 and await server.services.voice.active_id("alice") is None

    await _retry_answers_the_one_session(server, redis, headers, made)


async def test_a_voice_create_whose_node_stopped_while_its_answer_was_kept_is_answered_by_its_retry_at_once(
    server: ServerUnderTest, redis: Redis, redis_process: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node stops while it keeps a create's answer (the session made and made active, the
    answer's SET not yet through): aiohttp cancels the handler there. The claim used to stay
    until it ran out, every retry ``409`` for up to 10 s; now it is given back keeping the key's
    generation, and the retry on another node is answered at once with that session."""
    reached = asyncio.Event()
    held: list[asyncio.Task[Any]] = []
    store = IdempotentAnswers.store

    async def held_once(answers: IdempotentAnswers, *args: Any, **kwargs: Any) -> None:
        if not held:
            task = asyncio.current_task()
            assert task is not None
            held.append(task)
            reached.set()
            await asyncio.Event().wait()  # until the node's stop cancels it
        await store(answers, *args, **kwargs)

    monkeypatch.setattr(IdempotentAnswers, "store", held_once)
    stopping = await start_server(redis_process.url, tmp_path / "stopping")
    headers = _alice(server)
    try:
        sent = asyncio.create_task(_post(stopping, "/voicebot/create_session", {"session_name": "Once"}, headers))
        await asyncio.wait_for(reached.wait(), ANSWER_BOUND_S)
    finally:
        await stopping.stop()
    with pytest.raises(aiohttp.ClientError):
        await sent
    assert held[0].cancelled(), "the node's stop cancelled the handler while it kept the answer"
    made = await _voice_sessions(server, redis)
    assert len(made) == 1

    await _retry_answers_the_one_session(server, redis, headers, made)


async def test_a_voice_create_whose_client_went_away_is_finished_and_replayed(
    server: ServerUnderTest, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that goes away does not cancel its handler on a running node (aiohttp's
    ``handler_cancellation`` is off): a retry while it still runs is ``409``, and once it has
    finished, the retry is its kept answer; one session."""
    stuck = StuckAfterTheCreate(monkeypatch)
    headers = _alice(server)
    sent = await stuck.send(server, headers)
    sent.cancel()  # the client goes away: its connection closed
    await asyncio.gather(sent, return_exceptions=True)
    status, body, _ = await _post(server, "/voicebot/create_session", {"session_name": "Once"}, headers)
    assert (status, body["error"]) == (409, "conflict"), body
    assert stuck.handler is not None and not stuck.handler.done()
    stuck.go.set()
    await asyncio.wait_for(asyncio.gather(stuck.handler, return_exceptions=True), ANSWER_BOUND_S)

    status, body, replayed = await _post(server, "/voicebot/create_session", {"session_name": "Once"}, headers)
    assert (status, replayed) == (201, "true"), body
    assert [body["session_id"]] == await _voice_sessions(server, redis)
    assert await server.services.voice.active_id("alice") == body["session_id"]


async def test_a_guests_key_kept_after_a_failure_counts_once_in_the_addresss_day(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    """A guest's key that failed after its create stays (its generation kept), so it counts in
    the address's day of new keys (what a failure may leave is bounded as an answer is); its
    retry is the same key and is not counted again. With a day of 2 keys: the failed key and its
    retry, then one more key, then the next is refused."""
    clock = Clock()
    to_window_start(clock, DAY_S)  # the test's requests in one UTC day
    capped = await start_server(redis_process.url, tmp_path, clock=clock, idempotency_keys_per_day_per_address=2)
    try:
        guest = f"guest-{uuid.uuid4().hex}"
        token = capped.token(guest, perms=GUEST_PERMISSIONS, ttl_s=DAY_S, guest=True)

        def keyed(key: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}", "Idempotency-Key": key}

        pointer = capped.services.keys.active_session(guest)
        await redis.rpush(pointer, "not a session id")
        failing = keyed(f"fail-{uuid.uuid4()}")
        assert (await _post(capped, "/voicebot/create_session", {}, failing))[0] == 500
        await redis.delete(pointer)
        status, first, _ = await _post(capped, "/voicebot/create_session", {}, failing)
        assert status == 201, first
        status, second, _ = await _post(capped, "/voicebot/create_session", {}, keyed(str(uuid.uuid4())))
        assert status == 201, second
        status, refused, _ = await _post(capped, "/voicebot/create_session", {}, keyed(str(uuid.uuid4())))
        assert (status, refused["error"]) == (429, "rate_limited"), refused
        owned = {str(s) for s in await redis.zrange(capped.services.keys.user_sessions(guest), 0, -1)}
        assert owned == {first["session_id"], second["session_id"]}
    finally:
        await capped.stop()


async def test_a_claim_given_back_keeping_its_generation_is_claimed_again_as_the_same_request(redis: Redis) -> None:
    """storage/idempotency.py: given back with ``keep_generation`` (a run that may have made
    something), the key is claimed again at once with its first generation, marked ``again``;
    given back whole (a refusal that made nothing), it is a new request."""
    answers = IdempotentAnswers(redis, Keys("sh"), max_answers=10)
    first = await answers.begin("create", "u:alice", "kept-0001")
    assert isinstance(first, Claimed) and not first.again
    await answers.release("create", "u:alice", "kept-0001", keep_generation=True)
    again = await answers.begin("create", "u:alice", "kept-0001")
    assert again == Claimed(generation=first.generation, again=True)

    await answers.release("create", "u:alice", "kept-0001")
    fresh = await answers.begin("create", "u:alice", "kept-0001")
    # Claimed anew: the generation is the claim's own time (the same number only when claimed
    # within the millisecond of the first).
    assert isinstance(fresh, Claimed) and not fresh.again
