"""Every Socket.IO event the server registers is defined in docs/PROTOCOL.md as a contract suite
reads it: the payload's fields are the fields of the model the handler validates (names, and
which are optional), and a success ack carries only fields the document names, and all of the
fields it names without a condition. Events come from the router's registry and models from the
handlers themselves, so an event added without its definition fails here."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel

from handlers.payloads import PLAIN_PATTERN, Payload
from handlers.socket_router import SocketRouter
from protocol.errors import CodedError
from server.app import build_app
from server.identity import token_service
from server.services import build_services, connect_redis
from tests import helpers
from tests.contract_docs import documented_events
from tests.helpers import Client, ServerUnderTest

# A session id no session has: the handlers validate the payload before they read anything.
_NOBODY = "11111111-1111-4111-8111-111111111111"


def _handlers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Every registered event with its handler (building the app needs no Redis)."""
    seen: dict[str, Any] = {}
    register = SocketRouter.on

    def recording(self: SocketRouter, event: str, handler: Any, **kw: Any) -> None:
        seen[event] = handler
        register(self, event, handler, **kw)

    monkeypatch.setattr(SocketRouter, "on", recording)
    settings = helpers.test_settings("redis://127.0.0.1:9/0", tmp_path)
    build_app(
        settings,
        services=build_services(settings, redis=connect_redis(settings.redis_url), tokens=token_service(settings)),
    )
    return seen


async def _models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, type[BaseModel] | None]:
    """The payload model each event's handler validates, found by handing it an unknown field
    (refused by the model, before the handler reads anything); None for an event that takes no
    model (``listening_history`` checks its payload is empty itself)."""
    handlers = _handlers(monkeypatch, tmp_path)
    validated: list[type[BaseModel]] = []
    validate = Payload.model_validate.__func__  # type: ignore[attr-defined]

    def recording(cls: type[BaseModel], data: Any, **kw: Any) -> Any:
        validated.append(cls)
        return validate(cls, data, **kw)

    monkeypatch.setattr(Payload, "model_validate", classmethod(recording))
    models: dict[str, type[BaseModel] | None] = {}
    for event, handler in handlers.items():
        validated.clear()
        with pytest.raises(CodedError) as refused:
            await handler(None, {"session_id": _NOBODY, "zz_unknown": 1})
        assert refused.value.code.value == "invalid_payload", (event, refused.value)
        models[event] = validated[0] if validated else None
    return models


async def test_every_events_payload_is_its_models_fields(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    models = await _models(monkeypatch, tmp_path)
    assert len(models) > 20 and sum(model is not None for model in models.values()) > 20
    documented = documented_events()
    assert set(models) - set(documented) == set(), "events without a payload in PROTOCOL.md"
    differences = {}
    for event, model in models.items():
        fields = {} if model is None else {n: f.is_required() for n, f in model.model_fields.items()}
        if fields != documented[event].fields:
            differences[event] = {"code": fields, "PROTOCOL.md": documented[event].fields}
    assert differences == {}


async def _created(http: aiohttp.ClientSession, url: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(url, json=body, headers=headers) as answer:
        assert answer.status == 201, await answer.text()
        return await answer.json()


class _Calls:
    """Each event called as a client that means it would call it, its success acks kept by event."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.acks: dict[str, list[dict[str, Any]]] = {}

    async def __call__(self, event: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        ack = await self.client.call(event, payload)
        assert ack["ok"] is True, (event, payload, ack)
        self.acks.setdefault(event, []).append(ack)
        return ack


async def _voice(call: _Calls, session_id: str) -> None:
    subscribed = await call("subscribe_on_session", {"session_id": session_id})
    position = {key: subscribed[key] for key in ("epoch", "offset", "last_id")}
    await call("subscribe_on_session", {"session_id": session_id, **position})  # a replay's ack
    await call("follow_active_session", {})
    await call("follow_user")
    await call("set_session_status", {"session_id": session_id, "status": "recording"})
    await call("post_process_session", {"session_id": session_id, "request_id": uuid.uuid4().hex})
    await call("create_tasks_from_chunks", {"session_id": session_id, "chunk_ids": ["ch000001"]})
    await call("session_done", {"session_id": session_id, "request_id": uuid.uuid4().hex})
    await call("unsubscribe_from_session", {"session_id": session_id})


async def _pattern(call: _Calls, session_id: str) -> None:
    await call("pattern_join", {"session_id": session_id, "name": "Ann", "colour": "#336699"})
    await call("pattern_op", {"session_id": session_id, "seq": 1, "op": {"type": "set_tempo", "tempo": 100}})
    await call("pattern_cursor", {"session_id": session_id, "cursor": None})
    await call("pattern_heartbeat", {"session_id": session_id})
    await call("pattern_leave", {"session_id": session_id})


async def _stream(call: _Calls, session_id: str) -> None:
    await call("stream_set_state", {"session_id": session_id, "action": "start"})
    clip = (await call("clip_submit", {"session_id": session_id, "note": "here"}))["clip"]
    clip_ref = {"session_id": session_id, "clip_id": clip["clip_id"]}
    await call("clip_update", {**clip_ref, "clipped": True})
    await call("clip_delete", clip_ref)
    await call("stream_block_viewer", {"session_id": session_id, "user_id": "bob"})
    await call("clip_clear_viewer", {"session_id": session_id, "user_id": "bob"})


async def _listening(call: _Calls) -> None:
    history = (await call("listening_history"))["session_id"]
    reported = await call("listening_report", {"session_id": history, "item_id": "song", "status": "playing"})
    now_ms = int(time.time() * 1000)
    upload = {"item_id": "tune", "device_id": "phone", "client_id": "up-1"}
    times = {"started_at": now_ms - 120_000, "ended_at": now_ms - 60_000}
    await call("listening_upload", {"session_id": history, **upload, **times})
    await call("listening_delete", {"session_id": history, "id": reported["listening"]["id"]})
    await call("listening_clear", {"session_id": history, "confirm": True})


async def test_every_events_success_ack_has_the_documented_fields(
    server: ServerUnderTest, clients: list[Client], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = server.token("alice")
    client = Client(server.url, token)
    clients.append(client)
    await client.connect()
    call = _Calls(client)
    async with aiohttp.ClientSession(base_url=server.url) as http:
        stream = await _created(http, "/api/streams", {"title": "acks"}, token)
        pattern = await _created(http, "/api/sessions", {})
    await _voice(call, await server.create_session("alice"))
    await _pattern(call, pattern["id"])
    await _stream(call, stream["session"]["session_id"])
    await _listening(call)
    await call("renew_token", {"token": server.token("alice")})
    registered = set(_handlers(monkeypatch, tmp_path))
    assert registered - set(call.acks) == set(), "an event this test does not call: add it"
    documented = documented_events()
    differences = {}
    for event, acks in call.acks.items():
        named = documented[event].ack
        sent = set().union(*acks) - {"ok"}
        # Every field sent is named; every field named is sent by one of the calls (a replay's
        # ``recovered`` by the second subscribe).
        if sent != named:
            differences[event] = {"sent, not in PROTOCOL.md": sent - named, "in PROTOCOL.md, not sent": named - sent}
    assert differences == {}


# How the document words a pattern it does not spell out: a family's name for it.
_FAMILIES = {
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$": "UUID v4",
    PLAIN_PATTERN: "text rule",
}


def _spellings(number: int | float) -> set[str]:
    """How a bound may be written: ``64``, ``100``, ``604800``, ``2^53``, ``2^63 \u2212 1`` (a minus sign)."""
    whole = int(number)
    said = {str(number), str(whole), f"{whole:,}"}
    for power in range(8, 65):
        said |= {f"2^{power}"} if whole == 1 << power else set()
        said |= {f"2^{power} \u2212 1"} if whole == (1 << power) - 1 else set()
    return said


def _bounds(schema: dict[str, Any]) -> list[tuple[str, set[str]]]:
    """Each bound of a field's JSON schema with the ways the document may write it (one suffices)."""
    found: list[tuple[str, set[str]]] = []
    for branch in schema.get("anyOf", [schema]):
        for key in ("maxLength", "maxItems", "maximum"):
            if key in branch:
                found.append((f"{key} {branch[key]}", _spellings(branch[key])))
        found += [(f"enum {value}", {f"`{value}`", f'"{value}"'}) for value in branch.get("enum", [])]
        pattern = branch.get("pattern")
        if pattern is not None:
            choices = re.fullmatch(r"\^\(([\w|]+)\)\$", pattern)
            if choices is not None:  # an alternation: a list of values
                found += [(f"value {value}", {f"`{value}`"}) for value in choices.group(1).split("|")]
            elif pattern in _FAMILIES or "\\x00" in pattern or "\x00" in pattern:  # control characters, as text or not
                found.append((f"pattern {pattern}", {_FAMILIES.get(pattern, "control character"), "text rule"}))
            else:
                found.append((f"pattern {pattern}", {pattern.strip("^$").replace("\\", "")}))
        if "items" in branch:
            found += _bounds(branch["items"])
    return found


async def test_every_payload_fields_bounds_are_in_its_definition(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A field's limits (longest, largest, its values, its form) are where the event is defined:
    a client reading ``"user_id"`` alone cannot know a ``user_id`` with a space is refused."""
    models = await _models(monkeypatch, tmp_path)
    documented = documented_events()
    missing: dict[str, list[str]] = {}
    checked = 0
    for event, model in sorted(models.items()):
        if model is None:
            continue
        text = " ".join(documented[event].text.split()).replace("\\", "")
        for name, schema in model.model_json_schema()["properties"].items():
            if name == "session_id":  # the one id rule of every event (Errors: invalid_session_id)
                continue
            for bound, spellings in _bounds(schema):
                checked += 1
                if not any(said in text for said in spellings):
                    missing.setdefault(event, []).append(f"{name}: {bound}")
    assert checked > 40
    assert not missing, "\n".join(f"{event}: {found}" for event, found in missing.items())
