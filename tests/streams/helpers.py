"""Helpers of the stream-session tests: create sessions, connect viewers, call the HTTP API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from storage.streams.records import Clip
from storage.streams.repository import StreamSessions, ViewerCaps
from tests.helpers import Client, ServerUnderTest


async def http(
    server: ServerUnderTest, method: str, path: str, *, user: str | None = "alice", token: str | None = None, **kw: Any
) -> tuple[int, Any]:
    """One HTTP call as ``user`` (or with ``token``); returns (status, parsed JSON or text)."""
    headers = dict(kw.pop("headers", {}))
    bearer = token if token is not None else (server.token(user) if user else None)
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    async with aiohttp.ClientSession() as client, client.request(method, server.url + path, headers=headers, **kw) as r:
        body: Any = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


async def create_stream(server: ServerUnderTest, user: str = "alice", **fields: Any) -> str:
    """A new stream session owned by ``user``; returns its id."""
    status, body = await http(server, "POST", "/api/streams", user=user, json={"title": "Raid night", **fields})
    assert status == 201, body
    return str(body["session"]["session_id"])


async def connect(server: ServerUnderTest, clients: list[Client], user: str) -> Client:
    """A connected Socket.IO client as ``user``."""
    client = Client(server.url, server.token(user))
    clients.append(client)
    return await client.connect()


async def started(server: ServerUnderTest, clients: list[Client], **fields: Any) -> tuple[str, Client]:
    """An active session owned by alice, and alice's connection."""
    session_id = await create_stream(server, **fields)
    owner = await connect(server, clients, "alice")
    ack = await owner.call("stream_set_state", {"session_id": session_id, "action": "start"})
    assert ack["ok"] is True, ack
    return session_id, owner


def stored_clip(seq: int, *, segment_index: int, offset_ms: int, note: str, clipped: bool) -> dict[str, object]:
    """A clip as submit.lua stores it."""
    return {
        "clip_id": str(uuid.uuid4()),
        "segment_index": segment_index,
        "offset_ms": offset_ms,
        "stream_offset_ms": offset_ms + 3_600_000 * (segment_index - 1),
        "note": note,
        "submitted_by": f"viewer{seq % 2000}",
        "viewer_tag": f"{seq % 2000:08x}",
        "seq": seq,
        "clipped": clipped,
        "created_at": 1_700_000_000_000 + seq,
    }


async def store_clips(server: ServerUnderTest, session_id: str, clips: list[dict[str, object]]) -> None:
    """The clips written to the session's clips hash, as submit.lua leaves them."""
    store = server.services.store
    key = store.keys.stream_clips(session_id)
    for start in range(0, len(clips), 20_000):
        mapping = {str(c["clip_id"]): json.dumps(c) for c in clips[start : start + 20_000]}
        await store.redis.hset(key, mapping=mapping)  # type: ignore[misc]  # redis-py's union of sync and async
    # The session's clip counter past them, as submit.lua leaves it: a click after them got seq 1
    # again, and with an offset equal to a stored clip's (a click 100 ms in, on a loaded machine)
    # two clips sorted alike, in whichever order they were read (a CI run's failure).
    top = max((int(str(c["seq"])) for c in clips), default=0)
    session_key = store.keys.session(session_id)
    current = int(await store.redis.hget(session_key, "clip_seq") or 0)  # type: ignore[misc]
    if top > current:
        await store.redis.hset(session_key, "clip_seq", top)  # type: ignore[misc]


def submitter(streams: StreamSessions, session_id: str, note: str = "") -> Callable[[str], Awaitable[str]]:
    """A viewer's click on ``session_id`` through submit.lua (no cooldown, caps out of the way):
    the id of the clip stored."""
    caps = ViewerCaps(per_viewer=10_000, per_address=10_000)

    async def submit(viewer: str) -> str:
        made = await streams.submit(
            session_id,
            viewer_id=viewer,
            submission_id=uuid.uuid4().hex,
            note=note,
            cooldown_ms=0,
            max_clips=100_000,
            caps=caps,
        )
        assert made.clip is not None
        return made.clip.clip_id

    return submit


async def stored_unannounced(server: ServerUnderTest, session_id: str, viewer_id: str, note: str) -> Clip:
    """A click of ``viewer_id`` stored as ``clip_submit`` stores it, announced to nobody: what a
    lost ``own_clip`` announcement leaves (the viewer's pages have not heard of it)."""
    stored = await StreamSessions(server.services.store).submit(
        session_id,
        viewer_id=viewer_id,
        submission_id=f"quiet-{uuid.uuid4().hex[:12]}",
        note=note,
        cooldown_ms=0,
        max_clips=100,
        caps=ViewerCaps(per_viewer=100, per_address=100),
    )
    assert stored.created and stored.clip is not None, stored
    return stored.clip
