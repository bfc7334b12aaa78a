"""The contract of every listing's ``limit``: the OpenAPI document's maximum is what the server
takes. A client (or a contract suite) reading the document must find its largest ``limit``
answered 200 and one more refused ``400 invalid_payload``, on every route, under any
SESSIONHUB_LIST_LIMIT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from auth.claims import Permission
from tests.conftest import start_server
from tests.helpers import ALL_PERMS, RedisProcess, ServerUnderTest


def _limits(spec: dict[str, Any]) -> dict[str, int]:
    """Each GET route with a ``limit`` query parameter and the maximum its document gives."""
    return {
        path: param["schema"]["maximum"]
        for path, methods in spec["paths"].items()
        for method, op in methods.items()
        if method == "get"
        for param in op.get("parameters", [])
        if param["in"] == "query" and param["name"] == "limit"
    }


async def _ids(http: aiohttp.ClientSession, srv: ServerUnderTest, headers: dict[str, str]) -> dict[str, str]:
    """A session for each path parameter a listing names: a stream's, and a voice session's for
    the voice routes (its chat materials)."""
    async with http.post(srv.url + "/api/streams", json={"title": "limits"}, headers=headers) as answer:
        assert answer.status == 201
        stream = await answer.json()
    session_id = stream["session"]["session_id"]
    # Started: it has a segment, whose review pages by a limit too.
    async with http.post(f"{srv.url}/api/streams/{session_id}/state", json={"action": "start"}, headers=headers) as a:
        assert a.status == 200
    async with http.post(srv.url + "/voicebot/create_session", json={}, headers=headers) as answer:
        assert answer.status == 201
        voice_id = (await answer.json())["session_id"]
    return {"session_id": session_id, "voice_session_id": voice_id}


@pytest.mark.parametrize("list_limit", [200, 30])
async def test_the_documented_maximum_of_every_limit_is_the_servers(
    redis: Any, redis_process: RedisProcess, tmp_path: Path, list_limit: int
) -> None:
    # /admin/audit takes 1..500 and /admin/sessions 1..100 (PROTOCOL.md), whatever
    # SESSIONHUB_LIST_LIMIT says; the document gave every limit the setting as its maximum, so
    # it said 200 (or 30) for the audit log, which answered 200 to limit=201 (and 31).
    srv = await start_server(redis_process.url, tmp_path, list_limit=list_limit)
    headers = {"Authorization": f"Bearer {srv.token('alice', perms=(*ALL_PERMS, Permission.ADMIN))}"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(srv.url + "/openapi.json") as answer:
                limits = _limits(await answer.json())
            assert {"/admin/audit", "/admin/sessions", "/voicebot/sessions", "/api/streams"} <= set(limits)
            assert limits["/admin/audit"] == 500 and limits["/admin/sessions"] == 100
            ids = await _ids(http, srv, headers)
            for path, highest in limits.items():
                voice = path.startswith("/voicebot/sessions/{session_id}")
                url = srv.url + path.format(session_id=ids["voice_session_id" if voice else "session_id"])
                # A listing that needs more than a limit (one segment's review) gets it.
                needs = {"segment": "1"} if path.endswith("/review/clips") else {}
                async with http.get(url, params={**needs, "limit": str(highest)}, headers=headers) as answer:
                    assert answer.status == 200, (path, highest, await answer.text())
                async with http.get(url, params={**needs, "limit": str(highest + 1)}, headers=headers) as answer:
                    assert answer.status == 400, (path, highest + 1, await answer.text())
                    assert (await answer.json())["error"] == "invalid_payload"
    finally:
        await srv.stop()
