"""A resend of one press of Done, Process or Tasks (the same ``request_id``) is answered as the
press was and counts or queues nothing more; another press (another id, or none) acts again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from auth.claims import Permission
from handlers.voice.actions import JOBS_PER_MIN
from tests.helpers import Client, ServerUnderTest, to_window_start
from tests.voice.test_chunks import performer_of
from tests.voice.test_events import connected, queued_jobs


async def test_a_resent_done_counts_once_and_queues_one_job(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    voice = server.services.voice
    session_id = await server.create_session("alice")
    await voice.set_active("alice", session_id)
    alice = await connected(server, clients, "alice")
    press = {"session_id": session_id, "request_id": "press-one-0001"}

    first = await alice.call("session_done", press)
    assert first["ok"] and first["done_count"] == 1 and first["repeated"] is False, first
    assert first["active_session_cleared"] is True
    # The same press again, twice at once (a lost ack and a page's resend racing): the first
    # press's answer, nothing counted or queued.
    again = await asyncio.gather(*(alice.call("session_done", press) for _ in range(2)))
    for ack in again:
        assert ack["ok"] and ack["repeated"] is True, ack
        assert (ack["done_count"], ack["job_id"], ack["is_active"]) == (1, first["job_id"], False)
    session = await voice.get(session_id)
    assert session is not None and session.done_count == 1
    jobs = await queued_jobs(redis, server)
    assert [(j["type"], j["job_id"], j["payload"]) for j in jobs] == [
        ("DONE_MULTIPROMPT", first["job_id"], {"done_count": 1, "active_seq": 2})  # set, then cleared
    ]

    # Another press (a new id, or no id) is another close action: counted and queued again.
    second = await alice.call("session_done", {"session_id": session_id, "request_id": "press-two-0002"})
    third = await alice.call("session_done", {"session_id": session_id})
    assert (second["done_count"], second["repeated"], third["done_count"], third["repeated"]) == (2, False, 3, False)
    assert len({first["job_id"], second["job_id"], third["job_id"]}) == 3
    assert len(await queued_jobs(redis, server)) == 3

    # Ids are the user's own: an operator pressing with alice's id makes a press of their own.
    ops = await connected(server, clients, "ops", perms=(Permission.READ_ALL, Permission.UPDATE))
    ack = await ops.call("session_done", press)
    assert ack["ok"] and (ack["done_count"], ack["repeated"]) == (4, False), ack


async def test_a_resent_done_leaves_the_session_chosen_again_after_the_press(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    """Done, its ack lost, the session chosen again (the bot's ``/session``), then the page's
    resend of that Done: the resend cleared the pointer again (audit "verify44" F4). The first
    send had cleared it; what is set since is the person's choice."""
    voice = server.services.voice
    session_id = await server.create_session("alice")
    await voice.set_active("alice", session_id)
    alice = await connected(server, clients, "alice")
    press = {"session_id": session_id, "request_id": "press-lost-ack-01"}
    first = await alice.call("session_done", press)
    assert first["ok"] and first["active_session_cleared"] is True, first
    await voice.set_active("alice", session_id)  # chosen again
    again = await alice.call("session_done", press)
    assert again["ok"] and again["repeated"] is True and again["active_session_cleared"] is False, again
    assert await voice.active_id("alice") == session_id
    assert [j["job_id"] for j in await queued_jobs(redis, server)] == [first["job_id"]]


@pytest.mark.parametrize(
    "event, extra",
    [("post_process_session", {}), ("create_tasks_from_chunks", {"chunk_ids": ["c1", "c2", "c1"]})],
)
async def test_a_resent_job_event_queues_one_job(
    server: ServerUnderTest, clients: list[Client], redis: Any, event: str, extra: dict[str, Any]
) -> None:
    session_id = await server.create_session("alice")
    alice = await connected(server, clients, "alice")
    press = {"session_id": session_id, "request_id": "abcdefgh_1234", **extra}

    first = await alice.call(event, press)
    assert first["ok"] and first["repeated"] is False, first
    again = await asyncio.gather(*(alice.call(event, press) for _ in range(2)))
    for ack in again:
        assert ack["ok"] and ack["repeated"] is True and ack["job_id"] == first["job_id"], ack
        assert ack.get("chunk_count") == first.get("chunk_count")
    assert [j["job_id"] for j in await queued_jobs(redis, server)] == [first["job_id"]]

    other = await alice.call(event, {**press, "request_id": "abcdefgh_5678"})
    plain = await alice.call(event, {"session_id": session_id, **extra})
    assert other["repeated"] is False and plain["repeated"] is False
    assert len({first["job_id"], other["job_id"], plain["job_id"]}) == 3
    assert len(await queued_jobs(redis, server)) == 3


@pytest.mark.parametrize("event", ["session_done", "post_process_session", "create_tasks_from_chunks"])
@pytest.mark.parametrize("request_id", ["short", "x" * 65, "has space!", 12345678, ""])
async def test_a_malformed_request_id_is_refused(
    server: ServerUnderTest, clients: list[Client], redis: Any, event: str, request_id: Any
) -> None:
    session_id = await server.create_session("alice")
    alice = await connected(server, clients, "alice")
    extra = {"chunk_ids": ["c1"]} if event == "create_tasks_from_chunks" else {}
    ack = await alice.call(event, {"session_id": session_id, "request_id": request_id, **extra})
    assert ack["error"] == "invalid_payload", ack
    assert await queued_jobs(redis, server) == []


async def test_a_press_cut_off_before_its_job_gets_it_at_the_resend_once(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    """A node that died between a press's step and its job (the close counted, no job queued,
    no ack): the resend is answered as that press and queues its job, by its id, once."""
    voice = server.services.voice
    session_id = await server.create_session("alice")
    await voice.set_active("alice", session_id)
    alice = await connected(server, clients, "alice")
    # The first press's own steps, as the handler ran them before it died.
    cut = await voice.done(session_id, performer_of("alice"), job_id="job-of-the-cut-press", request_id="cut-press-01")
    assert (cut.done_count, cut.repeated) == (1, False)
    await voice.claim_request(
        session_id, "process", "alice", "cut-process-01", {"session_id": session_id, "job_id": "job-of-the-cut-process"}
    )

    for _ in range(2):
        ack = await alice.call("session_done", {"session_id": session_id, "request_id": "cut-press-01"})
        assert ack["ok"] and (ack["done_count"], ack["job_id"], ack["repeated"]) == (1, "job-of-the-cut-press", True), (
            ack
        )
        assert ack["active_session_cleared"] in (True, False)
        ack = await alice.call("post_process_session", {"session_id": session_id, "request_id": "cut-process-01"})
        assert ack["ok"] and (ack["job_id"], ack["repeated"]) == ("job-of-the-cut-process", True), ack
    assert await voice.active_id("alice") is None  # the resend cleared what the cut press had not
    jobs = await queued_jobs(redis, server)
    assert sorted((j["type"], j["job_id"]) for j in jobs) == [
        ("DONE_MULTIPROMPT", "job-of-the-cut-press"),
        ("POST_PROCESS_SESSION", "job-of-the-cut-process"),
    ]
    session = await voice.get(session_id)
    assert session is not None and session.done_count == 1


@pytest.mark.parametrize(
    "event, extra",
    [("session_done", {}), ("post_process_session", {}), ("create_tasks_from_chunks", {"chunk_ids": ["c1"]})],
)
async def test_a_resend_is_answered_past_the_jobs_limit(
    server: ServerUnderTest, clients: list[Client], redis: Any, event: str, extra: dict[str, Any]
) -> None:
    """The press was counted towards the user's jobs a minute: its resend is answered, not
    refused rate_limited (a page resends an unanswered press until it is answered)."""
    session_id = await server.create_session("alice")
    alice = await connected(server, clients, "alice")
    to_window_start(server.services.clock)  # the jobs a minute: all of them in one minute
    first = await alice.call(event, {"session_id": session_id, "request_id": "first-press-0", **extra})
    assert first["ok"], first
    for n in range(1, JOBS_PER_MIN):
        assert (await alice.call(event, {"session_id": session_id, "request_id": f"other-press-{n}", **extra}))["ok"]
    refused = await alice.call(event, {"session_id": session_id, "request_id": "one-press-too-many", **extra})
    assert refused["error"] == "rate_limited", refused
    again = await alice.call(event, {"session_id": session_id, "request_id": "first-press-0", **extra})
    assert again["ok"] and again["repeated"] is True and again["job_id"] == first["job_id"], again
    assert len(await queued_jobs(redis, server)) == JOBS_PER_MIN
