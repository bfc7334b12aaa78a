"""Hostile input to stream sessions: every refusal is an error answer, stores nothing, and
leaves the connection usable."""

from __future__ import annotations

from typing import Any

import pytest

from tests.streams.helpers import connect, create_stream, http, started
from tests.helpers import Client, ServerUnderTest

MISSING = "00000000-0000-4000-8000-000000000000"

BAD_CLIPS = [
    ({"note": 42}, "invalid_payload"),
    ({"note": "x" * 101}, "invalid_payload"),
    ({"note": "nul\x00byte"}, "invalid_payload"),
    ({"note": "bell\x07"}, "invalid_payload"),
    ({"note": "two\nlines"}, "invalid_payload"),
    ({"note": "\u202eevil"}, "invalid_payload"),
    ({"note": "c1\x85control"}, "invalid_payload"),
    # At either end too: the trim would take them away unseen, where the published pattern refuses them.
    ({"note": "\x85hello\x85"}, "invalid_payload"),
    ({"note": "\u2028x"}, "invalid_payload"),
    ({"note": "x\u2029"}, "invalid_payload"),
    ({"note": "\ttabbed"}, "invalid_payload"),
    ({"note": ["list"]}, "invalid_payload"),
    ({"note": None}, "invalid_payload"),
    ({"submission_id": "short"}, "invalid_payload"),
    ({"submission_id": "has space in it"}, "invalid_payload"),
    ({"submission_id": 12345678}, "invalid_payload"),
    ({"submitted_by": "someone-else"}, "invalid_payload"),
    ({"offset_ms": 0}, "invalid_payload"),
    ({"session_id": "not-a-uuid"}, "invalid_session_id"),
    ({"session_id": MISSING}, "session_not_found"),
    ({"session_id": 7}, "invalid_session_id"),
]


@pytest.mark.parametrize("extra, code", BAD_CLIPS)
async def test_bad_clip_submissions_store_nothing(
    server: ServerUnderTest, clients: list[Client], redis: Any, extra: dict[str, Any], code: str
) -> None:
    session_id, _ = await started(server, clients)
    viewer = await connect(server, clients, "viewer-1")
    log_before = await redis.xlen(server.services.keys.log(session_id))

    ack = await viewer.call("clip_submit", {"session_id": session_id, **extra})
    assert ack["ok"] is False and ack["error"] == code, ack
    body = {k: v for k, v in extra.items() if k != "session_id"}
    target = extra.get("session_id", session_id)
    status, answer = await http(server, "POST", f"/api/streams/{target}/clips", user="viewer-1", json=body)
    assert status >= 400 and answer["error"] == code, answer

    assert await redis.hlen(server.services.keys.stream_clips(session_id)) == 0
    assert await redis.xlen(server.services.keys.log(session_id)) == log_before
    # The refusals did not start the cooldown, and the connection still works.
    assert (await viewer.call("clip_submit", {"session_id": session_id, "note": "fine"}))["ok"] is True


async def test_notes_are_trimmed_then_measured_and_kept_as_text(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id, _ = await started(server, clients)
    notes = ["  " + "y" * 100 + "  ", "<script>alert(1)</script>", '=HYPERLINK("x")', "👩‍💻 gg", ""]
    for n, note in enumerate(notes):
        viewer = await connect(server, clients, f"viewer-{n}")
        ack = await viewer.call("clip_submit", {"session_id": session_id, "note": note})
        assert ack["ok"] is True and ack["clip"]["note"] == note.strip(), ack


async def test_not_a_stream_session_is_not_found(server: ServerUnderTest, clients: list[Client]) -> None:
    voice_id = await server.create_session("alice")
    alice = await connect(server, clients, "alice")
    for event, extra in [
        ("clip_submit", {}),
        ("stream_set_state", {"action": "start"}),
        ("clip_delete", {"clip_id": MISSING}),
        ("clip_update", {"clip_id": MISSING, "clipped": True}),
    ]:
        ack = await alice.call(event, {"session_id": voice_id, **extra})
        assert ack["error"] == "session_not_found", (event, ack)
    status, body = await http(server, "GET", f"/api/streams/{voice_id}")
    assert (status, body["error"]) == (404, "session_not_found")


@pytest.mark.parametrize(
    "event, extra",
    [
        ("stream_set_state", {"action": "explode"}),
        ("stream_set_state", {"action": ["start"]}),
        ("stream_set_state", {}),
        ("clip_update", {"clip_id": MISSING}),
        ("clip_update", {"clip_id": "../../etc", "clipped": True}),
        ("clip_update", {"clip_id": MISSING, "clipped": "yes"}),
        ("clip_delete", {"clip_id": 5}),
    ],
)
async def test_bad_owner_payloads(
    server: ServerUnderTest, clients: list[Client], event: str, extra: dict[str, Any]
) -> None:
    session_id, owner = await started(server, clients)
    ack = await owner.call(event, {"session_id": session_id, **extra})
    assert ack["error"] == "invalid_payload", ack
    assert (await owner.call("stream_set_state", {"session_id": session_id, "action": "pause"}))["ok"] is True


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({}, 400, "invalid_payload"),
        ({"title": ""}, 400, "invalid_payload"),
        ({"title": "   "}, 400, "invalid_payload"),
        ({"title": "t" * 201}, 400, "invalid_payload"),
        ({"title": "tab\there"}, 400, "invalid_payload"),
        ({"title": "\tTitle\u2028"}, 400, "invalid_payload"),
        ({"title": "ok", "game": "\x85g"}, 400, "invalid_payload"),
        ({"title": "ok", "viewer_delay_s": -1}, 400, "invalid_payload"),
        ({"title": "ok", "viewer_delay_s": 601}, 400, "invalid_payload"),
        ({"title": "ok", "viewer_delay_s": "5"}, 400, "invalid_payload"),
        ({"title": "ok", "viewer_delay_s": 1.5}, 400, "invalid_payload"),
        ({"title": "ok", "game": "g" * 101}, 400, "invalid_payload"),
        ({"title": "ok", "owner_id": "bob"}, 400, "invalid_payload"),
        ({"title": "x" * 20000}, 413, "payload_too_large"),
    ],
)
async def test_bad_creations(reading_server: ServerUnderTest, body: dict[str, Any], status: int, code: str) -> None:
    """Refused creations: on the module's shared server (nothing is written)."""
    redis, keys = reading_server.services.redis, reading_server.services.keys
    before = await redis.zcard(keys.user_streams("alice"))
    got, answer = await http(reading_server, "POST", "/api/streams", json=body)
    assert (got, answer["error"]) == (status, code)
    assert await redis.zcard(keys.user_streams("alice")) == before


async def test_http_needs_a_token_and_checks_ids(server: ServerUnderTest) -> None:
    session_id = await create_stream(server)
    status, body = await http(server, "POST", "/api/streams", user=None, json={"title": "x"})
    assert (status, body["error"]) == (401, "unauthorized")
    status, body = await http(server, "GET", f"/api/streams/{session_id}", token="forged.token.value")
    assert (status, body["error"]) == (401, "unauthorized")
    status, body = await http(server, "GET", "/api/streams/not-a-uuid")
    assert (status, body["error"]) == (400, "invalid_session_id")
    status, body = await http(server, "PATCH", f"/api/streams/{session_id}/clips/xyz", json={"clipped": True})
    assert (status, body["error"]) == (400, "invalid_payload")
    status, body = await http(server, "PATCH", f"/api/streams/{session_id}/clips/{MISSING}", json={"clipped": True})
    assert (status, body["error"]) == (404, "not_found")
    status, body = await http(server, "POST", f"/api/streams/{session_id}/state", data=b"\xff\xfe not json")
    assert (status, body["error"]) == (400, "invalid_payload")
    for query in ["format=exe", "fps=24", "window_s=0", "of=everything", "only=some", "sort=random"]:
        status, body = await http(server, "GET", f"/api/streams/{session_id}/export?{query}")
        assert (status, body["error"]) == (400, "invalid_payload"), query


async def test_a_flood_of_clicks_stores_one(server: ServerUnderTest, clients: list[Client], redis: Any) -> None:
    session_id, _ = await started(server, clients)
    viewer = await connect(server, clients, "viewer-1")
    acks = [await viewer.call("clip_submit", {"session_id": session_id}) for _ in range(25)]
    assert [a["ok"] for a in acks].count(True) == 1
    assert {a["error"] for a in acks if not a["ok"]} == {"rate_limited"}
    assert await redis.hlen(server.services.keys.stream_clips(session_id)) == 1
