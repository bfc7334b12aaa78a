"""Bounded waits on what a page's recording stored: its chunks, its session's status."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from handlers.voice.chunks import chunk_repository
from tests.helpers import ServerUnderTest


async def stored_chunks(
    server: ServerUnderTest, session_id: str, count: int, timeout_s: float = 10
) -> list[dict[str, Any]]:
    """The session's chunks once ``count`` are stored, or those stored when ``timeout_s`` ends."""
    deadline = time.monotonic() + timeout_s
    chunks: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        chunks = await chunk_repository(server.services).list(session_id, limit=50)
        if len(chunks) >= count:
            return chunks
        await asyncio.sleep(0.1)
    return chunks


async def status_becomes(server: ServerUnderTest, session_id: str, status: str) -> None:
    """Wait (10 s at most) until the session's status is ``status``."""
    deadline = time.monotonic() + 10
    while True:
        session = await server.services.voice.get(session_id)
        assert session is not None
        if session.status == status:
            return
        assert time.monotonic() < deadline, f"the session stayed {session.status!r}, not {status!r}"
        await asyncio.sleep(0.05)
