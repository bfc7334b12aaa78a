"""Every status a chunk's audio link answers is in the OpenAPI document with its headers: a Range
past the file's end is 416 with ``Content-Range: bytes */<size>``, which the document (and
PROTOCOL.md) did not list."""

from __future__ import annotations

import re

import aiohttp

from tests.audio_samples import webm
from tests.helpers import ServerUnderTest
from tests.test_protocol_doc import PROTOCOL
from tests.voice.uploads import chunk_form, get_json, upload

AUDIO = "/voicebot/audio/{session_id}/{chunk_id}"


async def test_an_unsatisfiable_range_is_a_documented_416(server: ServerUnderTest) -> None:
    token = server.token("alice")
    session_id = await server.create_session("alice")
    status, stored = await upload(server, token, chunk_form(session_id, webm(1000)))
    assert status == 201, stored
    size = stored["chunk"]["size_bytes"]
    status, listing = await get_json(server, f"/voicebot/sessions/{session_id}/chunks", token)
    assert status == 200
    link = server.url + listing["chunks"][0]["audio_url"]
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/openapi.json") as answer:
            operation = (await answer.json())["paths"][AUDIO]["get"]
        async with http.get(link, headers={"Range": "bytes=0-3"}) as answer:
            assert answer.status == 206 and len(await answer.read()) == 4
        for asked in (f"bytes={size + 10}-", "bytes=5-2"):
            async with http.get(link, headers={"Range": asked}) as answer:
                assert answer.status == 416, asked
                assert await answer.read() == b""
                assert answer.headers["Content-Range"] == f"bytes */{size}"
                documented = operation["responses"].get("416")
                assert documented is not None, sorted(operation["responses"])
                for name, header in documented["headers"].items():
                    assert name in answer.headers, name
                    pattern = header["schema"].get("pattern")
                    assert pattern is None or re.search(pattern, answer.headers[name]), (name, pattern)
    text = " ".join(PROTOCOL.read_text(encoding="utf-8").split())
    assert "is `416` with `Content-Range: bytes */<size>` and no body" in text
