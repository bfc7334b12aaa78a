"""Helpers for chunk uploads over real HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.helpers import ServerUnderTest


def chunk_form(
    session_id: str,
    audio: bytes,
    *,
    start_ms: int = 1000,
    end_ms: int = 2000,
    duration_ms: int = 1000,
    speaker: str | None = None,
    filename: str = "chunk.webm",
) -> aiohttp.FormData:
    """The multipart form the FAB sends."""
    form = aiohttp.FormData()
    form.add_field("session_id", session_id)
    form.add_field("start_ms", str(start_ms))
    form.add_field("end_ms", str(end_ms))
    form.add_field("duration_ms", str(duration_ms))
    if speaker is not None:
        form.add_field("speaker", speaker)
    form.add_field("file", audio, filename=filename, content_type="audio/webm")
    return form


async def upload(server: ServerUnderTest, token: str | None, data: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
    """POST /voicebot/chunks; returns (status, JSON body)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kw.pop("headers", {}))
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/voicebot/chunks", data=data, headers=headers, **kw) as response,
    ):
        return response.status, await response.json()


async def get_json(server: ServerUnderTest, path: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(server.url + path, headers=headers) as response:
        return response.status, await response.json()
