"""The typed success answers of /openapi.json hold what a live server sends, family by family.

Each test drives one route family through its answers (every typed route, each status, the
shapes that differ: null, absent, a repeat) and holds every JSON answer to the schema the
document gives it, with the document's components (jsonschema, Draft 2020-12). A route of the
family whose answer is typed but that no answer reached fails the test: a route typed later is
asked too.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator
from redis.asyncio import Redis
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from auth.claims import Permission
from handlers.openapi_document import UNTYPED_ANSWER
from handlers.voice.chunks import chunk_repository
from storage.identity.passkeys import Passkey, passkey_id_of
from storage.jobs import Job
from tests.audio_samples import webm
from tests.conftest import start_server
from tests.helpers import ALL_PERMS, Client, RedisProcess, ServerUnderTest
from tests.patterns.test_http import full_state, track
from tests.test_openapi_valid import WEBHOOK, WEBHOOK_PATH, WEBHOOK_SECRET, document_of
from tests.voice.test_telegram import ALICE_TG, command
from tests.voice.uploads import chunk_form

JSON = "application/json"
BASE = "urn:sessionhub"
# The success answers still untyped (the routes PROTOCOL alone describes): at most this many.
UNTYPED_AT_MOST = 1


class Answers:
    """A client of one server that holds every JSON answer to its document's schema."""

    def __init__(self, http: aiohttp.ClientSession, spec: dict[str, Any]) -> None:
        self.http = http
        self.paths: dict[str, Any] = spec["paths"]
        self.registry: Registry[Any] = Registry().with_resource(BASE, Resource.from_contents(spec, DRAFT202012))
        self.checked: set[tuple[str, str, str]] = set()

    def schema(self, method: str, template: str, status: int) -> dict[str, Any]:
        response = self.paths[template][method]["responses"][str(status)]
        schema: dict[str, Any] = response["content"][JSON]["schema"]
        return schema

    async def ask(self, method: str, template: str, status: int, *, path: str = "", **kw: Any) -> dict[str, Any]:
        """Send the request; its answer must have ``status`` and hold to the documented schema."""
        async with self.http.request(method, path or template, **kw) as response:
            body = await response.json(content_type=None)
            assert response.status == status, (method, path or template, body)
        schema = self.schema(method, template, status)
        assert schema.get("description") != UNTYPED_ANSWER, (method, template, status)
        ref = schema.get("$ref")
        validator = Draft202012Validator({"$ref": BASE + ref} if ref else schema, registry=self.registry)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert errors == [], (method, template, status, body)
        self.checked.add((method, template, str(status)))
        answer: dict[str, Any] = body
        return answer

    def typed(self, prefix: str) -> set[tuple[str, str, str]]:
        """Every typed JSON success answer of the routes under ``prefix``."""
        found = set()
        for template, methods in self.paths.items():
            for method, operation in methods.items():
                for status, response in operation["responses"].items():
                    schema = response.get("content", {}).get(JSON, {}).get("schema") or {}
                    described = schema.get("description") == UNTYPED_ANSWER
                    if template.startswith(prefix) and status.startswith("2") and schema and not described:
                        found.add((method, template, status))
        return found


# The pattern API's whole session, and a state with every field a write can set.
PATTERN = "/api/sessions/{session_id}"
EFFECTS = {
    "reverb": {"decay": 0.1, "wet": 1},
    "delay": {"time": "4n.", "feedback": 0.95, "wet": 0.5},
    "chorus": {"frequency": 10, "depth": 0.25, "wet": 0},
    "distortion": {"amount": 1, "wet": 0.125},
}
EVERY_FIELD = full_state(
    tracks=[
        track(
            "t1",
            steps=[True] * 3,
            parameterLocks=[{"pitch": -24, "volume": 1.5, "tie": True}, {}, {"tie": False}],
            pan=-0.5,
            playbackMode="gate",
            fmParams={"harmonicity": 2.5, "modulationIndex": 7},
            swing=25,
        ),
        track("t2", name="", stepCount=128),
    ],
    tempo=133.5,
    swing=12.25,
    version=7,
    effects=EFFECTS,  # without bypass: stored without it
    scale={"root": "F#", "scaleId": "blues", "locked": False},
    loopRegion={"start": 4, "end": 127},
)
# Every live operation, over Socket.IO, after the PUT of EVERY_FIELD.
LIVE_OPS: list[dict[str, Any]] = [
    {"type": "add_track", "track": track("t3", name="Bass", sampleId="synth:bass", steps=[False] * 8)},
    {"type": "set_step", "trackId": "t3", "step": 1, "on": True},
    {"type": "toggle_step", "trackId": "t3", "step": 2},
    {"type": "set_lock", "trackId": "t3", "step": 2, "lock": {"pitch": 12, "volume": 0.25}},
    {"type": "set_lock", "trackId": "t1", "step": 0, "lock": None},
    {"type": "set_lock", "trackId": "t1", "step": 2, "lock": {}},
    {"type": "set_tempo", "tempo": 97.125},
    {"type": "set_swing", "swing": 55},
    {"type": "set_loop_region", "loopRegion": None},
    {"type": "set_effects", "effects": {**EFFECTS, "bypass": True}},
    {"type": "set_scale", "scale": {"root": "A", "scaleId": "natural-minor", "locked": True}},
    {"type": "rename_track", "trackId": "t3", "name": "Sub"},
    {"type": "set_track_sample", "trackId": "t3", "sampleId": "synth:lead"},
    {"type": "set_track_volume", "trackId": "t3", "volume": 1},
    {"type": "set_track_pan", "trackId": "t3", "pan": 1},
    {"type": "set_track_mute", "trackId": "t3", "muted": True},
    {"type": "set_track_solo", "trackId": "t3", "soloed": True},
    {"type": "set_track_transpose", "trackId": "t3", "transpose": 24},
    {"type": "set_track_step_count", "trackId": "t3", "stepCount": 96},
    {"type": "set_track_playback_mode", "trackId": "t3", "playbackMode": "oneshot"},
    {"type": "clear_track", "trackId": "t1"},
    {"type": "delete_track", "trackId": "t2"},
    {"type": "set_name", "name": " Jam live "},
]


async def _answers(server: ServerUnderTest, user: str, perms: tuple[Permission, ...] = ALL_PERMS) -> Answers:
    headers = {"Authorization": f"Bearer {server.token(user, perms=perms)}"}
    http = aiohttp.ClientSession(base_url=server.url, headers=headers)
    async with http.get("/openapi.json") as response:
        spec = await response.json()
    return Answers(http, spec)


def test_the_untyped_answers_are_at_most_those_left() -> None:
    spec = document_of(Path(tempfile.mkdtemp()), **WEBHOOK)
    untyped = [
        (method, path, status)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
        for status, response in operation["responses"].items()
        for content in response.get("content", {}).values()
        if content.get("schema", {}).get("description") == UNTYPED_ANSWER
    ]
    assert len(untyped) <= UNTYPED_AT_MOST, untyped


async def test_voice_answers_hold_their_schemas(redis_process: RedisProcess, redis: Redis, tmp_path: Path) -> None:
    server = await start_server(
        redis_process.url,
        tmp_path,
        **WEBHOOK,
        voice_telegram_users=f"{ALICE_TG}:alice",
    )
    api = await _answers(server, "alice")
    try:
        none = await api.ask("post", "/voicebot/active_session", 200)
        assert none == {"active_session": None}
        created = await api.ask("post", "/voicebot/create_session", 201, json={"session_name": "Typed"})
        session_id = created["session_id"]
        await api.ask("post", "/voicebot/active_session", 200)
        await api.ask("post", "/voicebot/activate_session", 200, json={"session_id": session_id})
        await api.ask("get", "/voicebot/sessions", 200)
        one = f"/voicebot/sessions/{session_id}"
        view = await api.ask("get", "/voicebot/sessions/{session_id}", 200, path=one)
        assert view["digest"] is None and view["closed_at"] is None and "orphaned" in view
        material = {"kind": "text", "text": "a note"}
        await api.ask("post", "/voicebot/materials", 201, json=material)
        materials = f"/voicebot/sessions/{session_id}/materials"
        page = await api.ask("get", "/voicebot/sessions/{session_id}/materials", 200, path=materials)
        assert [m["text"] for m in page["materials"]] == ["a note"] and page["next"] is None
        audio = webm(1500)
        upload = "/voicebot/chunks"
        await api.ask("post", upload, 201, data=chunk_form(session_id, audio))
        await api.ask("post", upload, 200, data=chunk_form(session_id, audio))
        chunks = f"/voicebot/sessions/{session_id}/chunks"
        listed = await api.ask("get", "/voicebot/sessions/{session_id}/chunks", 200, path=chunks)
        assert "transcript" not in listed["chunks"][0]
        # Transcribed by the worker: the chunk gains its transcript fields.
        await chunk_repository(server.services).annotate(
            session_id, "ch000001", {"transcript": "hello", "transcript_error": ""}
        )
        listed = await api.ask("get", "/voicebot/sessions/{session_id}/chunks", 200, path=chunks)
        assert listed["chunks"][0]["transcript"] == "hello"
        await api.ask("post", upload, 200, data=chunk_form(session_id, audio))
        for text in ("/session", "/start Bot", "/done", "/session", "/login"):
            await api.ask("post", "/voicebot/bot/command", 200, json={"text": text})
        hook = f"/telegram/{WEBHOOK_PATH}"
        update = {"update_id": 1, "message": command("/start Hooked")}
        secret = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
        reply = await api.ask("post", "/telegram/{webhook_path}", 200, path=hook, json=update, headers=secret)
        assert reply["chat_id"] == ALICE_TG
        await api.ask("delete", "/voicebot/sessions/{session_id}", 200, path=one)
        assert api.typed("/voicebot/") | api.typed("/telegram/") <= api.checked | {
            ("get", "/voicebot/fab/config", "200")
        }
    finally:
        await api.http.close()
        await server.stop()


async def test_stream_answers_hold_their_schemas(redis_process: RedisProcess, redis: Redis, tmp_path: Path) -> None:
    server = await start_server(redis_process.url, tmp_path, clips_cooldown_s=0)
    api = await _answers(server, "alice")
    bob = {"Authorization": f"Bearer {server.token('bob')}"}
    try:
        created = await api.ask("post", "/api/streams", 201, json={"title": "Typed", "game": "Go"})
        sid = created["session"]["session_id"]
        one = "/api/streams/{session_id}"
        at = one.replace("{session_id}", sid)
        fresh = await api.ask("get", one, 200, path=at)
        assert fresh["segments"] == [] and fresh["ended_at"] is None
        await api.ask("post", one + "/state", 200, path=at + "/state", json={"action": "start"})
        clip = {"note": "wow", "submission_id": "first-click"}
        stored = await api.ask("post", one + "/clips", 201, path=at + "/clips", json=clip, headers=bob)
        clip_id = stored["clip"]["clip_id"]
        await api.ask("post", one + "/clips", 200, path=at + "/clips", json=clip, headers=bob)
        await api.ask("post", one + "/clips", 201, path=at + "/clips", headers=bob)
        await api.ask("post", one + "/state", 200, path=at + "/state", json={"action": "pause"})
        paused = await api.ask("get", one, 200, path=at)
        assert paused["segments"][0]["ended_at"] is not None
        await api.ask("get", "/api/streams", 200)
        moments = one + "/moments"
        await api.ask("get", moments, 200, path=at + "/moments")
        capped = await api.ask("get", moments, 200, path=at + "/moments?notes=0&ids=1&sort=count")
        assert "note_count" in capped["moments"][0]
        edit = one + "/clips/{clip_id}"
        await api.ask("patch", edit, 200, path=f"{at}/clips/{clip_id}", json={"clipped": True, "note": "best"})
        export = one + "/export"
        await api.ask("get", export, 200, path=at + "/export?format=json")
        await api.ask("get", export, 200, path=at + "/export?format=json&of=moments")
        await api.ask("get", one + "/blocked", 200, path=at + "/blocked")
        blocked = one + "/blocked"
        await api.ask("post", blocked, 200, path=at + "/blocked", json={"user_id": "bob"})
        await api.ask("get", blocked, 200, path=at + "/blocked")
        await api.ask("delete", blocked + "/{user_id}", 200, path=at + "/blocked/bob")
        await api.ask("delete", edit, 200, path=f"{at}/clips/{clip_id}")
        await api.ask("post", one + "/state", 200, path=at + "/state", json={"action": "resume"})
        gone = await api.ask("post", one + "/clips", 200, path=at + "/clips", json=clip, headers=bob)
        assert gone["clip"] is None and gone["deleted"] is True
        await api.ask("delete", one + "/clips", 200, path=at + "/clips?by=bob")
        await api.ask("post", one + "/state", 200, path=at + "/state", json={"action": "end"})
        ended = await api.ask("get", one, 200, path=at)
        assert ended["state"] == "ended" and ended["ended_at"] is not None
        # The routes typed before these (the review's) are asked by their own tests.
        reviewed = {
            ("get", one + "/clips", "200"),
            ("get", one + "/review", "200"),
            ("get", one + "/review/clips", "200"),
            ("get", one + "/clips/mine", "200"),
        }
        assert api.typed("/api/streams") <= api.checked | reviewed
    finally:
        await api.http.close()
        await server.stop()


async def test_listening_answers_hold_their_schemas(redis_process: RedisProcess, redis: Redis, tmp_path: Path) -> None:
    server = await start_server(redis_process.url, tmp_path)
    api = await _answers(server, "alice")
    try:
        empty = await api.ask("get", "/api/listening/sessions", 200)
        assert empty == {"sessions": [], "next_cursor": None}
        item = {"title": "Song", "duration_s": 200.0}
        played = {"item_id": "song-1", "status": "playing", "position_s": 1.5, "item": item}
        started = await api.ask("post", "/api/listening/report", 200, json=played)
        assert started["listening"]["item_duration_s"] == 200
        await api.ask("post", "/api/listening/report", 200, json={"item_id": "song-2", "status": "stopped"})
        history = await api.ask("get", "/api/listening", 200)
        assert len(history["open"]) == 1
        now_ms = server.services.clock.now_ms()
        upload: dict[str, Any] = {"item_id": "song-3", "device_id": "phone", "client_id": "c-1"}
        upload |= {"started_at": now_ms - 60_000, "ended_at": now_ms - 1_000}
        stored = await api.ask("post", "/api/listening/upload", 201, json=upload)
        await api.ask("post", "/api/listening/upload", 200, json=upload)
        short = {**upload, "client_id": "c-2", "started_at": now_ms - 100_500, "ended_at": now_ms - 100_000}
        dropped = await api.ask("post", "/api/listening/upload", 200, json=short)
        assert dropped["listening"] is None
        page = await api.ask("get", "/api/listening/sessions", 200, path="/api/listening/sessions?limit=1")
        assert page["next_cursor"] is not None
        await api.ask("get", "/api/listening/stats", 200, path="/api/listening/stats?days=3&tz=Europe/Berlin")
        await api.ask("get", "/api/listening/export", 200, path="/api/listening/export?format=json")
        gone = f"/api/listening/sessions/{stored['listening']['id']}"
        await api.ask("delete", "/api/listening/sessions/{id}", 200, path=gone)
        await api.ask("post", "/api/listening/clear", 200, json={"confirm": True, "request_id": "press-0001"})
        again = await api.ask("post", "/api/listening/clear", 200, json={"confirm": True, "request_id": "press-0001"})
        assert again["repeated"] is True
        assert api.typed("/api/listening") <= api.checked
    finally:
        await api.http.close()
        await server.stop()


async def test_admin_answers_hold_their_schemas(redis_process: RedisProcess, redis: Redis, tmp_path: Path) -> None:
    # A tiny large-session bound: every session raises an alert with its values.
    server = await start_server(redis_process.url, tmp_path, admin_large_session_bytes=1)
    api = await _answers(server, "boss", perms=(*ALL_PERMS, Permission.ADMIN))
    try:
        async with api.http.post("/api/sessions", json={"name": "Root"}) as r:
            pattern_id = (await r.json())["id"]
        async with api.http.post(f"/api/sessions/{pattern_id}/remix") as r:
            assert r.status == 201, await r.text()
        voice = await server.create_session("boss")
        await api.ask("get", "/admin/metrics", 200)
        page = await api.ask("get", "/admin/sessions", 200, path="/admin/sessions?limit=1")
        assert page["next_cursor"] is not None
        await api.ask("post", "/admin/recalculate", 200, json={})
        one = "/admin/sessions/{session_id}"
        detail = await api.ask("get", one, 200, path=f"/admin/sessions/{pattern_id}?events=5")
        assert detail["remix"]["descendants"]["children"] and detail["events"]
        remix = detail["remix"]["descendants"]["children"][0]["session_id"]
        await api.ask("get", one, 200, path=f"/admin/sessions/{remix}")
        alerts = await api.ask("get", "/admin/alerts", 200)
        assert "large_sessions" in {alert["alert"] for alert in alerts["alerts"]}
        await api.ask("post", "/admin/orphans/delete", 200, json={"older_than_days": 1, "dry_run": True})
        await api.ask("delete", one, 200, path=f"/admin/sessions/{voice}", json={"confirm": voice})
        dead = [Job(type=kind, session_id=pattern_id, performer_id="boss") for kind in ("GONE", "KEPT")]
        for job in dead:
            await redis.lpush(server.services.keys.jobs_dead(), job.to_json())
        await api.ask("get", "/admin/jobs/dead", 200, path="/admin/jobs/dead?limit=1")
        await api.ask("post", "/admin/jobs/dead/{job_id}/retry", 200, path=f"/admin/jobs/dead/{dead[0].job_id}/retry")
        await api.ask("delete", "/admin/jobs/dead/{job_id}", 200, path=f"/admin/jobs/dead/{dead[0].job_id}")
        await api.ask("delete", "/admin/jobs/dead", 200, path="/admin/jobs/dead?confirm=1")
        audit = await api.ask("get", "/admin/audit", 200)
        assert [entry["action"] for entry in audit["entries"]] == [
            "discard_dead_letters",
            "retry_dead_letter",
            "delete_session",
            "recalculate",
        ]
        assert api.typed("/admin/") <= api.checked
    finally:
        await api.http.close()
        await server.stop()


async def test_the_other_answers_hold_their_schemas(redis_process: RedisProcess, redis: Redis, tmp_path: Path) -> None:
    """The pattern API's probe, the landing page's list, a passkey's removal."""
    server = await start_server(redis_process.url, tmp_path)
    api = await _answers(server, "alice")
    try:
        await api.ask("get", "/api/health", 200)
        async with api.http.post("/api/sessions", json={"name": "Mine"}) as r:
            assert r.status == 201
        await api.ask("post", "/api/streams", 201, json={"title": "Mine"})
        await api.ask("post", "/voicebot/create_session", 201, json={})
        await api.ask("get", "/api/listening", 200)
        recent = await api.ask("get", "/api/me/sessions", 200)
        by_kind = {entry["kind"]: entry for entry in recent["sessions"]}
        assert "status" in by_kind["voice"] and "status" not in by_kind["pattern"]
        credential = "Y3JlZGVudGlhbA"
        kept = Passkey(passkey_id_of(credential), "alice", credential, "cGs", 0, 1, 1, "laptop", {})
        await server.services.passkeys.add(kept)
        removal = "/api/auth/passkeys/{passkey_id}"
        await api.ask("delete", removal, 200, path=removal.replace("{passkey_id}", kept.passkey_id))
        asked = {("get", "/api/health", "200"), ("get", "/api/me/sessions", "200"), ("delete", removal, "200")}
        assert asked <= api.typed("/api/") and asked <= api.checked
    finally:
        await api.http.close()
        await server.stop()


async def _pattern(api: Answers, session_id: str) -> dict[str, Any]:
    """``GET /api/sessions/<id>``, held to its schema."""
    return await api.ask("get", PATTERN, 200, path=f"/api/sessions/{session_id}")


async def _live(server: ServerUnderTest, session_id: str, ops: list[dict[str, Any]]) -> None:
    """Each op applied over a real Socket.IO connection."""
    client = Client(server.url, server.token("alice"))
    try:
        await client.connect()
        ack = await client.call("subscribe_on_session", {"session_id": session_id})
        assert ack["ok"] is True, ack
        for seq, op in enumerate(ops):
            ack = await client.call("pattern_op", {"session_id": session_id, "seq": seq, "op": op})
            assert ack["ok"] is True, (op, ack)
    finally:
        await client.close()


async def test_pattern_answers_hold_their_schemas(redis_process: RedisProcess, redis: Redis, tmp_path: Path) -> None:
    """The whole session through its shapes: new, every state field set (PUT, PATCH, live ops),
    a remix of a named and of an unnamed parent, a published copy, a parent gone, an orphan."""
    server = await start_server(redis_process.url, tmp_path, patterns_creates_per_min=100, patterns_orphan_days=1)
    api = await _answers(server, "alice")
    try:
        fresh_id = (await api.ask("post", "/api/sessions", 201))["id"]
        fresh = await _pattern(api, fresh_id)
        assert (fresh["name"], fresh["remixedFrom"], fresh["remixedFromName"]) == (None, None, None)
        assert fresh["state"]["tracks"] == [] and "loopRegion" not in fresh["state"]
        assert fresh["state"]["effects"]["bypass"] is False
        edited = (await api.ask("post", "/api/sessions", 201, json={"name": "Jam", "state": full_state()}))["id"]
        one = f"/api/sessions/{edited}"
        await api.ask("put", PATTERN, 200, path=one, json={"state": EVERY_FIELD})
        put = (await _pattern(api, edited))["state"]
        assert "bypass" not in put["effects"] and put["loopRegion"] == {"start": 4, "end": 127}
        t1, t2 = put["tracks"]
        assert t1["parameterLocks"][:4] == [{"pitch": -24, "volume": 1.5, "tie": True}, None, {"tie": False}, None]
        assert (t1["pan"], t1["playbackMode"], t1["swing"], t1["fmParams"]["harmonicity"]) == (-0.5, "gate", 25, 2.5)
        assert t2["name"] == "" and "pan" not in t2 and len(t2["steps"]) == 128
        renamed = await api.ask("patch", PATTERN, 200, path=one, json={"name": " Jam session "})
        assert renamed["name"] == "Jam session"
        await _live(server, edited, LIVE_OPS)
        live = await _pattern(api, edited)
        assert live["name"] == "Jam live" and live["state"]["loopRegion"] is None
        assert live["state"]["effects"]["bypass"] is True and live["state"]["tempo"] == 97.125
        t1, t3 = live["state"]["tracks"]
        assert t1["steps"] == [False] * 128 and t1["parameterLocks"] == [None] * 128
        assert t3["steps"][1:3] == [True, True] and t3["parameterLocks"][2] == {"pitch": 12, "volume": 0.25}
        assert (t3["name"], t3["pan"], t3["stepCount"], t3["playbackMode"]) == ("Sub", 1, 96, "oneshot")
        remixes = PATTERN + "/remix"
        remix_id = (await api.ask("post", remixes, 201, path=one + "/remix"))["id"]
        remix = await _pattern(api, remix_id)
        assert (remix["name"], remix["remixedFrom"], remix["remixedFromName"]) == (None, edited, "Jam live")
        assert remix["state"] == live["state"] and (await _pattern(api, edited))["remixCount"] == 1
        untitled = (await api.ask("post", remixes, 201, path=f"/api/sessions/{fresh_id}/remix"))["id"]
        assert (await _pattern(api, untitled))["remixedFromName"] == "Untitled Session"
        published_id = (await api.ask("post", PATTERN + "/publish", 201, path=one + "/publish"))["id"]
        published = await _pattern(api, published_id)
        assert published["immutable"] is True and (published["name"], published["remixedFrom"]) == ("Jam live", edited)
        async with api.http.delete(one) as deleted:
            assert deleted.status == 204
        for copy in (remix_id, published_id):
            assert (await _pattern(api, copy))["remixedFromName"] == "Unknown Session"
        server.services.clock.shift_ms = 2 * 86_400_000  # past the one orphan day
        assert (await _pattern(api, fresh_id))["orphaned"] is True
        assert (await _pattern(api, fresh_id))["orphaned"] is False  # the load revived it
        assert api.typed("/api/sessions") <= api.checked
    finally:
        server.services.clock.shift_ms = 0
        await api.http.close()
        await server.stop()
