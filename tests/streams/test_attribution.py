"""The streamer's review and exports name each clip's viewer by their current display name."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from handlers.streams.answers import Review
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, http, started

HOSTILE_NAME = 'Ada <img src=x onerror="window.pwned=1">'


async def _clip(
    server: ServerUnderTest, clients: list[Client], session_id: str, user: str, note: str
) -> dict[str, Any]:
    viewer = await connect(server, clients, user)
    ack = await viewer.call("clip_submit", {"session_id": session_id, "note": note})
    assert ack["ok"] is True, ack
    return dict(ack["clip"])


async def _review(server: ServerUnderTest, session_id: str) -> dict[str, dict[str, Any]]:
    status, body = await http(server, "GET", f"/api/streams/{session_id}/clips")
    assert status == 200, body
    return {c["submitted_by"]: c for s in body["segments"] for c in s["clips"]}


async def test_review_and_exports_name_viewers_by_their_current_display_name(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, _ = await started(server, clients)
    watcher = await server.subscriber(clients, session_id, user="viewer-3")
    status, _ = await http(server, "PATCH", "/api/auth/me", user="viewer-1", json={"name": HOSTILE_NAME})
    assert status == 200
    named = await _clip(server, clients, session_id, "viewer-1", "first")
    unnamed = await _clip(server, clients, session_id, "viewer-2", "second")
    # Nothing a viewer receives names another viewer: the ack and the live event carry no name.
    assert "viewer_name" not in named and "viewer_name" not in unnamed
    await watcher.wait_for(lambda: len(watcher.named("clip_added")) == 2)
    assert not any("viewer_name" in json.dumps(e) or "Ada" in json.dumps(e) for e in watcher.named("clip_added"))

    clips = await _review(server, session_id)
    status, body = await http(server, "GET", f"/api/streams/{session_id}/clips")
    Review.model_validate(body)  # the shape /openapi.json documents
    assert clips["viewer-1"]["viewer_name"] == HOSTILE_NAME  # as text: the page escapes it
    assert clips["viewer-2"]["viewer_name"] is None  # no name chosen: pages show the viewer tag

    # A rename shows on the next load, for clips made before it.
    status, _ = await http(server, "PATCH", "/api/auth/me", user="viewer-1", json={"name": "Ada L."})
    assert status == 200
    assert (await _review(server, session_id))["viewer-1"]["viewer_name"] == "Ada L."

    status, body = await http(server, "GET", f"/api/streams/{session_id}/export?format=json")
    exported = {c["submitted_by"]: c["viewer_name"] for c in body["clips"]}
    assert exported == {"viewer-1": "Ada L.", "viewer-2": None}
    status, body = await http(server, "GET", f"/api/streams/{session_id}/export?format=csv")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][-1] == "viewer"
    assert {r[3]: r[-1] for r in rows[1:]} == {"viewer-1": "Ada L.", "viewer-2": f"viewer {unnamed['viewer_tag']}"}
