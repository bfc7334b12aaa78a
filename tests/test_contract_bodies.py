"""Body rules a contract suite checks route by route, as docs/PROTOCOL.md states them: a JSON
body is read whatever its Content-Type (the pattern API's create excepted), and a listening
session's id is a UUID v4 on both ways of deleting one."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator

from tests.helpers import Client, ServerUnderTest
from tests.test_protocol_doc import PROTOCOL


def _doc() -> str:
    return " ".join(PROTOCOL.read_text(encoding="utf-8").split())


async def _post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], method: str = "POST"
) -> tuple[int, Any]:
    async with http.request(method, url, data=body, headers=headers) as answer:
        return answer.status, await answer.json()


async def test_a_json_body_is_read_whatever_its_content_type(server: ServerUnderTest) -> None:
    bearer = {"Authorization": f"Bearer {server.token('alice')}"}
    async with aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as http:
        for typed in ({"Content-Type": "text/plain"}, {}):  # another type, and none
            status, answer = await _post(http, server.url + "/api/streams", b'{"title": "typed"}', {**bearer, **typed})
            assert status == 201 and answer["session"]["title"] == "typed", (typed, answer)
            body = b'{"session_name": "named"}'
            status, answer = await _post(http, server.url + "/voicebot/create_session", body, {**bearer, **typed})
            assert status == 201 and answer["session_name"] == "named", (typed, answer)
            status, answer = await _post(http, server.url + "/api/streams", b"[1]", {**bearer, **typed})
            assert (status, answer["error"]) == (400, "invalid_payload"), (typed, answer)
            # The pattern API's create ignores a body not typed application/json (a default session) ...
            status, created = await _post(http, server.url + "/api/sessions", b'{"name": "ignored"}', typed)
            assert status == 201, created
            url = f"{server.url}/api/sessions/{created['id']}"
            async with http.get(url) as answer:
                assert (await answer.json())["name"] is None
            # ... while its PATCH reads it.
            status, patched = await _post(http, url, b'{"name": "read"}', typed, method="PATCH")
            assert (status, patched["name"]) == (200, "read"), patched
    # PROTOCOL.md said nothing of the type of a JSON body but for the pattern API's create.
    assert re.search(r"reads it as JSON whatever its `Content-Type` says, or without one", _doc())


async def test_a_listening_session_id_is_a_uuid_on_both_ways_of_deleting_one(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    token = server.token("alice")
    client = Client(server.url, token)
    clients.append(client)
    await client.connect()
    history = (await client.call("listening_history"))["session_id"]
    ack = await client.call("listening_delete", {"session_id": history, "id": "not-a-uuid"})
    assert ack["error"] == "invalid_payload", ack
    ack = await client.call("listening_delete", {"session_id": history, "id": "11111111-1111-4111-8111-111111111111"})
    assert ack["error"] == "not_found", ack
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.delete(server.url + "/api/listening/sessions/not-a-uuid") as answer:
            assert (answer.status, (await answer.json())["error"]) == (400, "invalid_payload")
    # PROTOCOL.md gave the id no form: a client could not know "not-a-uuid" is refused, not 404.
    doc = _doc()
    assert "(`id`: a listening session's, a UUID v4; another form is `invalid_payload`)" in doc
    assert "an `id` that is not a UUID v4, `400 invalid_payload`" in doc


async def test_a_null_body_is_valid_to_the_document_exactly_where_the_server_takes_it(server: ServerUnderTest) -> None:
    """The pattern API's create takes JSON ``null`` as no body (a default session, as the origin
    app does); sessionhub's optional bodies refuse it. The document said the create's body is an
    object, so a contract suite's schema-violating ``null`` was accepted (201)."""
    bearer = {"Authorization": f"Bearer {server.token('alice')}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/openapi.json") as answer:
            spec = await answer.json()
        async with http.post(server.url + "/api/streams", json={"title": "nulls"}, headers=bearer) as answer:
            stream_id = (await answer.json())["session"]["session_id"]
        json_type = {"Content-Type": "application/json"}
        for path, template, headers, taken in (
            ("/api/sessions", "/api/sessions", json_type, True),
            (f"/api/streams/{stream_id}/clips", "/api/streams/{session_id}/clips", {**bearer, **json_type}, False),
        ):
            schema = spec["paths"][template]["post"]["requestBody"]["content"]["application/json"]["schema"]
            validator = Draft202012Validator({**schema, "components": spec["components"]})
            assert validator.is_valid(None) is taken, (path, schema)
            async with http.post(server.url + path, data=b"null", headers=headers) as answer:
                assert (answer.status < 300) is taken, (path, answer.status, await answer.text())
    assert "or nothing (no body, or JSON `null`, as the origin app takes it)" in _doc()
