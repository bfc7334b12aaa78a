"""OpenAPI 3.1 of the whole HTTP API, generated from the request models; schemathesis holds a
live server to it, route by route."""

from __future__ import annotations

import re

import json
import os
import subprocess
import sys
import time
import uuid
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, seed, settings
from jsonschema import Draft202012Validator
from pydantic import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from requests.structures import CaseInsensitiveDict
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from auth.claims import Permission
from handlers import idempotency
from handlers.head_requests import NO_HEAD
from handlers.openapi_document import HEAD_NOTE, UNTYPED_ANSWER
from handlers.patterns.api_errors import ApiError
from handlers.patterns.requests import CreateBody
from handlers.listening.actions import UPLOAD_CLOCK_SKEW_MS, UPLOAD_MAX_AGE_MS
from handlers.listening.payloads import MAX_UPLOAD_SPAN_MS
from handlers.listening.stats import time_zone
from handlers.voice.chunk_form import DAY_MS
from protocol.errors import CodedError
from storage.voice.audio_format import ImpossibleDuration, probe_bytes
from handlers.voice.operations import AUDIO_TYPES
from server.identity import token_service
from tests import helpers
from tests.conftest import start_server
from tests.test_openapi_valid import WEBHOOK, WEBHOOK_PATH, WEBHOOK_SECRET, document_of
from tests.helpers import ALL_PERMS, READY_TIMEOUT_S, SECRET, RedisProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
# Small, so the whole run stays well under a minute; raise it for a longer hunt.
EXAMPLES_PER_ROUTE = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "10"))
# A fixed seed: every run sends the same cases (OPENAPI_FUZZ_SEED draws others for a hunt;
# seeds 1, 2 and 3 pass too, as do seeds 7 and 11 with the coverage phase and 30 or 60 examples).
FUZZ_SEED = int(os.environ.get("OPENAPI_FUZZ_SEED", "25"))
# Routes that are no HTTP API: the Socket.IO transport and the page assets.
EXCLUDED_PREFIXES = ("/socket.io/", "/static")
# The live server's settings that differ from the defaults (the webhook makes its route exist).
LIVE_ENV = {
    "SESSIONHUB_VOICE_TELEGRAM_WEBHOOK_PATH": WEBHOOK_PATH,
    "SESSIONHUB_VOICE_TELEGRAM_SECRET_TOKEN": WEBHOOK_SECRET,
    "SESSIONHUB_ADMIN_ACTIONS_PER_MIN": "100000",
    "SESSIONHUB_CREATES_PER_MIN": "100000",
    "SESSIONHUB_CREATES_PER_MIN_PER_ADDRESS": "100000",
    "SESSIONHUB_GUESTS_PER_MIN": "100000",
    "SESSIONHUB_PATTERNS_CREATES_PER_MIN": "100000",
    "SESSIONHUB_PATTERNS_CREATES_PER_DAY": "100000000",
}


def _operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, methods in spec["paths"].items() for method in methods}


def _registered(app: Any, webhook_path: str = "") -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or path.startswith(EXCLUDED_PREFIXES):
            continue
        if webhook_path and path == f"/telegram/{webhook_path}":
            path = "/telegram/{webhook_path}"  # the secret path is a parameter in the document
        routes.add((route.method, path))
    return routes


# The chunk upload's file part: any audio type goes out as bytes (schemathesis knows none of them).
schemathesis.serializer.alias(list(AUDIO_TYPES), "application/octet-stream")
schema = schemathesis.openapi.from_dict(document_of(Path("/nonexistent"), **WEBHOOK))


@pytest.fixture(scope="module")
def live_url(module_redis_process: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``serve`` process for the module, on a redis-server of its own: the per-test ``redis``
    fixture flushes the worker's shared one, and the fuzzed ids (``real_ids``) would vanish under
    it between two of this module's tests."""
    port = free_port()
    env = {
        **os.environ,
        **LIVE_ENV,
        "REDIS_URL": module_redis_process.url,
        "SESSIONHUB_PORT": str(port),
        "SESSIONHUB_JWT_SECRET": SECRET,
        "SESSIONHUB_DATA_DIR": str(tmp_path_factory.mktemp("openapi")),
        "SESSIONHUB_INPROCESS_WORKERS": "0",
        "SESSIONHUB_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "server", "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert process.poll() is None, f"the server exited with {process.returncode}"
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"{url} was not ready in {READY_TIMEOUT_S} s"
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def fuzzer_headers(module_redis_process: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A token with every permission, admin included: every route is reachable past its auth."""
    tokens = token_service(helpers.test_settings(module_redis_process.url, tmp_path_factory.mktemp("t")))
    token, _ = tokens.mint(user_id="fuzzer", now_s=time.time(), ttl_s=3600, perms=(*ALL_PERMS, Permission.ADMIN))
    return {"Authorization": f"Bearer {token}"}


def _post(url: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, headers={**headers, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


@pytest.fixture(scope="module")
def real_ids(live_url: str, fuzzer_headers: dict[str, str]) -> dict[str, str]:
    """One session of each kind the fuzzer owns, by the path prefix that serves it."""
    voice = _post(live_url + "/voicebot/create_session", fuzzer_headers, b"{}")
    stream = _post(live_url + "/api/streams", fuzzer_headers, b'{"title": "fuzzed"}')
    pattern = _post(live_url + "/api/sessions", fuzzer_headers, b"{}")
    return {
        "/voicebot/": voice["session_id"],
        "/api/streams/": stream["session"]["session_id"],
        "/api/sessions/": pattern["id"],
        "/admin/": voice["session_id"],
    }


def _integers(value: Any) -> Any:
    """``value`` with every integral float written as an integer.

    JSON Schema's ``integer`` admits 355.0 and schemathesis sends it so; the server's models are
    strict (a number written with a fraction is a float, refused where an integer is due), a
    spelling no JSON Schema can exclude. The case goes out with the same values, as integers.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {key: _integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integers(item) for item in value]
    return value


def _aim(case: schemathesis.Case, real_ids: dict[str, str]) -> None:
    """Every other case names a session that exists, so the routes past the 404 are fuzzed too."""
    params = case.path_parameters or {}
    if "webhook_path" in params:
        params["webhook_path"] = WEBHOOK_PATH
        # Telegram's header: a case without it is refused 401 before its body is read.
        if case.headers is None:
            case.headers = CaseInsensitiveDict()
        case.headers["X-Telegram-Bot-Api-Secret-Token"] = WEBHOOK_SECRET
    # Which half is the case's own (a hash of its drawn id), so a run of one route sends the
    # same requests as a run of all.
    if "session_id" in params and zlib.crc32(str(params["session_id"]).encode()) % 2 == 0:
        for prefix, session_id in real_ids.items():
            if case.path.startswith(prefix):
                params["session_id"] = session_id
    if isinstance(case.body, dict | list) and case.media_type == "application/json":
        case.body = _integers(case.body)
    if isinstance(case.body, dict) and case.media_type == "multipart/form-data":
        # The small fields before the file part, as docs/PROTOCOL.md asks (the server streams the
        # file to disk and must know its session first); a part order is nothing a schema says.
        case.body = {
            **{k: v for k, v in case.body.items() if k != "file"},
            **{k: v for k, v in case.body.items() if k == "file"},
        }


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    """An integer of a body, or of a query string (where it is text)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _backwards_loop(case: schemathesis.Case) -> bool:
    """A pattern state whose loop region starts after it ends (a create takes the state's fields at
    the top level too, when ``state`` is absent or null)."""
    body = _dict(case.body)
    region = _dict(_dict(body["state"] if body.get("state") is not None else body).get("loopRegion"))
    start, end = _int(region.get("start")), _int(region.get("end"))
    return start is not None and end is not None and start > end


def _unknown_zone(case: schemathesis.Case) -> bool:
    try:
        time_zone(str(_dict(case.query).get("tz", "UTC")))
    except CodedError:
        return True
    return False


def _bad_admin_range(case: schemathesis.Case) -> bool:
    query = _dict(case.query)
    low, high = _int(query.get("created_from")), _int(query.get("created_to"))
    return low is not None and high is not None and low > high


def _bad_upload_times(case: schemathesis.Case) -> bool:
    body = _dict(case.body)
    started, ended = _int(body.get("started_at")), _int(body.get("ended_at"))
    if started is None or ended is None:
        return False
    now_ms = int(time.time() * 1000)
    return (
        ended <= started
        or ended - started > MAX_UPLOAD_SPAN_MS
        or ended > now_ms + UPLOAD_CLOCK_SKEW_MS
        or started < now_ms - UPLOAD_MAX_AGE_MS - 60_000  # a minute's margin for the run itself
    )


def _bad_chunk(case: schemathesis.Case) -> bool:
    """A chunk whose times are out of order, or whose file is no audio the server recognises."""
    body = _dict(case.body)
    start, end = _int(body.get("start_ms")), _int(body.get("end_ms"))
    if start is not None and end is not None and (end < start or end - start > DAY_MS):
        return True
    file = body.get("file", b"")
    data = file if isinstance(file, bytes) else str(file).encode("utf-8", "surrogatepass")
    try:
        return probe_bytes(data) is None
    except ImpossibleDuration:
        return True


def _later_export_part(case: schemathesis.Case) -> bool:
    part = _int(_dict(case.query).get("part"))
    return part is not None and part > 1


# Rules no JSON Schema can state: an order between two values, the clock, the zone database, the
# session's own size, what a file's bytes are. A case one of these would refuse is still sent and held to every other
# check; only positive_data_acceptance (ST202) skips it. Every other rule is in the schemas.
CANNOT_SAY: dict[tuple[str, str], Callable[[schemathesis.Case], bool]] = {
    # loopRegion.start must not be after loopRegion.end
    ("POST", "/api/sessions"): _backwards_loop,
    ("PUT", "/api/sessions/{session_id}"): _backwards_loop,
    ("PATCH", "/api/sessions/{session_id}"): _backwards_loop,
    # tz must name a zone of the server's zone database (its shape is in the schema)
    ("GET", "/api/listening/stats"): _unknown_zone,
    # created_from must not be after created_to
    ("GET", "/admin/sessions"): _bad_admin_range,
    # ended_at after started_at, at most 24 h later, not in the future, not over a year ago
    ("POST", "/api/listening/upload"): _bad_upload_times,
    # end_ms not before start_ms, at most a day later; the file's bytes are audio (sniffed)
    ("POST", "/voicebot/chunks"): _bad_chunk,
    # the part must be one the export has: 1..(events / per file), known only from the session
    ("GET", "/api/streams/{session_id}/export"): _later_export_part,
}


def schema_valid_accepted(ctx: CheckContext, response: Any, case: schemathesis.Case) -> bool | None:
    """positive_data_acceptance (ST202), but for the rules above and 412.

    412 answers a precondition on the resource as it is now (an If-Match that is not the current
    ETag, a deletion's confirm that does not repeat the id): state, as 409 is, which
    schemathesis already accepts.
    """
    rule = CANNOT_SAY.get((case.method.upper(), case.operation.path))
    if response.status_code == 412 or (rule is not None and rule(case)):
        return None
    return positive_data_acceptance(ctx, response, case)


@schema.parametrize()
# Seeded, with no example database: every run sends the same cases, so a red run is one to fix
# rather than a draw (a longer hunt raises OPENAPI_FUZZ_EXAMPLES and tries other seeds).
@seed(FUZZ_SEED)
@settings(
    max_examples=EXAMPLES_PER_ROUTE,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    # Generated cases only: schemathesis's coverage phase (boundary values of every parameter,
    # unbounded by max_examples) triples the run; OPENAPI_FUZZ_COVERAGE=1 adds it for a hunt.
    phases=[Phase.explicit, Phase.generate] if os.environ.get("OPENAPI_FUZZ_COVERAGE") == "1" else [Phase.generate],
)
def test_every_route_holds_its_schema(
    case: schemathesis.Case, live_url: str, fuzzer_headers: dict[str, str], real_ids: dict[str, str]
) -> None:
    _aim(case, real_ids)
    case.call_and_validate(
        base_url=live_url,
        headers=fuzzer_headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            schema_valid_accepted,  # a request the schema allows is not refused (ST202)
        ],
        timeout=30,
    )


async def test_the_document_covers_every_route_and_only_those(redis_process: RedisProcess, tmp_path: Path) -> None:
    server = await start_server(redis_process.url, tmp_path, **WEBHOOK)
    try:
        async with aiohttp.ClientSession() as http, http.get(server.url + "/openapi.json") as response:
            assert response.status == 200
            served = await response.json()
        assert served["openapi"] == "3.1.0"
        assert _operations(served) == _registered(server.app, WEBHOOK_PATH)
        assert WEBHOOK_PATH not in str(served)  # the webhook's secret path is never published
    finally:
        await server.stop()


async def test_every_get_answers_head_as_the_document_says(redis_process: RedisProcess, tmp_path: Path) -> None:
    """HEAD is not an operation of its own in the document: the info says every GET answers it,
    and the GETs that refuse it say so in their description. Asked of the live server, each
    answers as documented: the GET's status, or 405 with an Allow that leaves HEAD out."""
    server = await start_server(redis_process.url, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/openapi.json") as response:
                served = await response.json()
            assert HEAD_NOTE in served["info"]["description"]
            refusing = set()
            for path, methods in served["paths"].items():
                if "get" not in methods:
                    continue
                refused = methods["get"].get("description", "").startswith("HEAD is refused (405")
                url = server.url + path.replace("{session_id}", str(uuid.uuid4())).replace("{chunk_id}", "ch000001")
                async with http.head(url) as head, http.get(url) as get:
                    if refused:
                        refusing.add(path)
                        assert head.status == 405 and "HEAD" not in head.headers["Allow"], path
                        assert "GET" in head.headers["Allow"].split(", "), path
                    else:
                        assert head.status == get.status, path
            assert refusing == set(NO_HEAD)
    finally:
        await server.stop()


def test_list_limits_say_their_maximum(tmp_path: Path) -> None:
    spec = document_of(tmp_path, list_limit=50)
    limits = {
        path: p["schema"]["maximum"]
        for path, methods in spec["paths"].items()
        for op in methods.values()
        for p in op.get("parameters", [])
        if p["name"] == "limit"
    }
    # The admin listing and the audit log have their own bounds (PROTOCOL.md), not the setting.
    own = {"/admin/sessions": 100, "/admin/audit": 500, "/admin/jobs/dead": 100}
    assert len(limits) >= 6 and {path: limit for path, limit in limits.items() if path not in own} == dict.fromkeys(
        set(limits) - set(own), 50
    )
    assert {path: limits[path] for path in own} == own


def _retried_routes() -> set[tuple[str, str]]:
    """The routes docs/PROTOCOL.md's "Retries" section names as taking Idempotency-Key."""
    text = (ROOT / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    section = text[text.index("## Retries: `Idempotency-Key`") :]
    routes, method = set(), "POST"
    for named_method, path in re.findall(r"`(?:(POST|PUT|PATCH) )?(/[^`]+)`", section[: section.index(" take an")]):
        method = named_method or method  # a route without a method has the one named before it
        routes.add((method, path.replace("{id}", "{session_id}")))
    return routes


def test_the_routes_that_take_an_idempotency_key_say_so(tmp_path: Path) -> None:
    """Each route PROTOCOL names under Retries lists the header with the values it takes, the
    409 of a repeat while the first still runs and the replay's mark on its answers; no other does."""
    spec = document_of(tmp_path, **WEBHOOK)
    keyed = set()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
            if "Idempotency-Key" not in headers:
                continue
            keyed.add((method.upper(), path))
            assert headers["Idempotency-Key"]["schema"]["pattern"] == idempotency._KEY.pattern
            assert "409" in operation["responses"], (method, path)
            for status, response in operation["responses"].items():
                if status.startswith("2"):
                    assert "Idempotent-Replayed" in response.get("headers", {}), (method, path, status)
    assert len(_retried_routes()) == 10
    assert keyed == _retried_routes()


def test_every_json_answer_is_typed_or_says_where_its_fields_are(tmp_path: Path) -> None:
    """47 of 75 success answers were a bare ``{"type": "object"}``: a code generator got nothing
    from them and was not told so. Each is now a model, or says that PROTOCOL gives its fields."""
    spec = document_of(tmp_path)
    typed, described = set(), set()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if not status.startswith("2") or schema is None:
                    continue
                if "$ref" in schema or "anyOf" in schema:
                    typed.add((method, path))
                else:
                    assert schema == {"type": "object", "description": UNTYPED_ANSWER}, (method, path, schema)
                    described.add((method, path))
    typed_too = {("get", "/api/auth/me"), ("post", "/api/sessions"), ("get", "/api/sessions/{session_id}")}
    assert typed_too | {("post", "/voicebot/create_session")} <= typed, typed
    # This document itself (an OpenAPI document) is the answer left to PROTOCOL.
    assert described == {("get", "/openapi.json")}


def test_a_route_not_installed_is_not_documented(tmp_path: Path) -> None:
    spec = document_of(tmp_path)  # no webhook path: no webhook route
    assert not any(path.startswith("/telegram/") for path in spec["paths"])
    assert ("POST", "/voicebot/chunks") in _operations(spec)


def test_the_document_is_generated_from_the_models(tmp_path: Path) -> None:
    spec = document_of(tmp_path)
    body = spec["paths"]["/admin/orphans/delete"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["additionalProperties"] is False
    stats = {p["name"]: p["schema"] for p in spec["paths"]["/api/listening/stats"]["get"]["parameters"]}
    assert stats["days"] == {"type": "integer", "minimum": 1, "maximum": 366}  # StatsQuery's Field(ge, le)
    upload = spec["paths"]["/voicebot/chunks"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert "audio/webm" in upload["encoding"]["file"]["contentType"]
    assert upload["schema"]["properties"]["end_ms"]["minimum"] == 0  # ChunkMeta's
    put = spec["paths"]["/api/sessions/{session_id}"]["put"]
    assert put["responses"]["412"]["content"]["application/json"]["schema"]["$ref"].endswith("/PatternError")
    assert any(p["name"] == "If-Match" and p["in"] == "header" for p in put["parameters"])
    # The pattern API takes any hex UUID in either case (404 when unknown); the others a v4.
    pattern_id = next(p["schema"]["pattern"] for p in put["parameters"] if p["name"] == "session_id")
    stream = spec["paths"]["/api/streams/{session_id}"]["get"]["parameters"]
    stream_id = next(p["schema"]["pattern"] for p in stream if p["name"] == "session_id")
    for other_uuid in ("00000000-0000-0000-0000-000000000000", "6BA7B810-9DAD-11D1-80B4-00C04FD430C8"):
        assert re.fullmatch(pattern_id, other_uuid) and not re.fullmatch(stream_id, other_uuid)
    guest = spec["paths"]["/api/auth/guest"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert spec["components"]["schemas"][guest["$ref"].rsplit("/", 1)[1]]["required"] == [
        "token",
        "user_id",
        "expires_at",
    ]
    pages = [
        path
        for path, methods in spec["paths"].items()
        if "text/html" in methods.get("get", {}).get("responses", {}).get("200", {}).get("content", {})
    ]
    assert {"/", "/admin", "/api-docs", "/patterns", "/streams", "/history", "/player"} <= set(pages)


def test_the_admin_listing_names_the_installed_kinds(tmp_path: Path) -> None:
    # The kind filter is an enum of the kinds this server has (a kind it lacks is a 400), and
    # PROTOCOL.md lists the same ones.
    spec = document_of(tmp_path)
    parameters = spec["paths"]["/admin/sessions"]["get"]["parameters"]
    kind = next(parameter for parameter in parameters if parameter["name"] == "kind")
    enums = [option["enum"] for option in kind["schema"].get("anyOf", [kind["schema"]]) if "enum" in option]
    assert enums == [["voice", "pattern", "stream", "stream_audience", "listening"]], kind
    protocol = (Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    assert "`voice`, `pattern`, `stream`,\n`stream_audience`, `listening`" in protocol


# Headers of HTTP itself or of every page's hardening (handlers/web_pages.py): no route's contract.
GENERIC_HEADERS = {
    "content-type",
    "content-length",
    "date",
    "server",
    "cache-control",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "x-content-type-options",
    "referrer-policy",
}


async def test_every_header_an_answer_carries_is_documented(redis_process: RedisProcess, tmp_path: Path) -> None:
    """The answers' own headers (the request id, a download's name, an export's counts) are in the
    document on the operation and status that send them, in the form they are sent; and every
    header the document says is always sent, is."""
    server = await start_server(redis_process.url, tmp_path)
    admin = {"Authorization": f"Bearer {server.token('boss', perms=(*ALL_PERMS, Permission.ADMIN))}"}
    try:
        async with aiohttp.ClientSession(base_url=server.url, headers=admin) as http:
            async with http.get("/openapi.json") as r:
                paths = (await r.json())["paths"]
            async with http.post("/api/streams", json={"title": "Headers"}) as r:
                stream_id = (await r.json())["session"]["session_id"]
            asked = [
                ("get", "/api/auth/credential", "/api/auth/credential"),
                ("get", f"/voicebot/sessions/{uuid.uuid4()}", "/voicebot/sessions/{session_id}"),
                ("get", f"/api/streams/{stream_id}/export?format=edl", "/api/streams/{session_id}/export"),
                ("get", f"/api/streams/{stream_id}/export", "/api/streams/{session_id}/export"),
                ("get", "/api/listening/export?format=csv", "/api/listening/export"),
                ("get", "/admin/export", "/admin/export"),
            ]
            for method, url, template in asked:
                async with http.request(method, url) as r:
                    status = str(r.status)
                    sent = {k.lower(): v for k, v in r.headers.items() if k.lower() not in GENERIC_HEADERS}
                headers = paths[template][method]["responses"][status].get("headers", {})
                documented = {name.lower(): header for name, header in headers.items()}
                assert set(sent) <= set(documented), (url, status, sent)
                for name, value in sent.items():
                    assert re.fullmatch(documented[name]["schema"].get("pattern", ".*"), value), (url, name, value)
                always = {name for name, header in documented.items() if header.get("required")}
                assert always <= set(sent), (url, status, always)
    finally:
        await server.stop()


async def test_an_id_in_any_case_is_the_same_id(redis_process: RedisProcess, tmp_path: Path) -> None:
    """Every route family takes an id in any case and answers it lower-case (PROTOCOL, ids), and
    the document's path patterns say so: an upper-case id is inside them, not a 4xx they promise."""
    server = await start_server(redis_process.url, tmp_path)
    admin = {"Authorization": f"Bearer {server.token('boss', perms=(*ALL_PERMS, Permission.ADMIN))}"}
    try:
        async with aiohttp.ClientSession(base_url=server.url, headers=admin) as http:
            async with http.get("/openapi.json") as r:
                paths = (await r.json())["paths"]
            async with http.post("/voicebot/create_session", json={}) as r:
                voice_id = (await r.json())["session_id"]
            async with http.post("/api/streams", json={"title": "Case"}) as r:
                stream_id = (await r.json())["session"]["session_id"]
            unknown = str(uuid.uuid4())
            asked = [
                ("get", "/voicebot/sessions/{session_id}", voice_id, 200),
                ("get", "/api/streams/{session_id}", stream_id, 200),
                ("get", "/admin/sessions/{session_id}", voice_id, 200),
                ("delete", "/api/listening/sessions/{id}", unknown, 404),  # well formed, none such
            ]
            for method, template, known_id, status in asked:
                name = template.rsplit("{", 1)[1].rstrip("}")
                shouting = known_id.upper()
                schema = next(p["schema"] for p in paths[template][method]["parameters"] if p["name"] == name)
                assert re.fullmatch(schema["pattern"], shouting), (template, schema)
                async with http.request(method, template.replace("{" + name + "}", shouting)) as r:
                    answer = await r.json()
                    assert r.status == status, (template, answer)
                assert shouting not in json.dumps(answer), (template, answer)
                if status == 200:
                    assert known_id in json.dumps(answer), (template, answer)
    finally:
        await server.stop()


async def test_one_query_rule_for_every_family(redis_process: RedisProcess, tmp_path: Path) -> None:
    """PROTOCOL's query rule, route family by route family: a parameter the route takes, given
    twice, is 400 invalid_payload; a parameter it does not take is ignored (admin included)."""
    server = await start_server(redis_process.url, tmp_path)
    admin = {"Authorization": f"Bearer {server.token('boss', perms=(*ALL_PERMS, Permission.ADMIN))}"}
    try:
        async with aiohttp.ClientSession(base_url=server.url, headers=admin) as http:
            async with http.post("/api/streams", json={"title": "Query"}) as r:
                stream_id = (await r.json())["session"]["session_id"]
            taken = [
                ("/voicebot/sessions", "limit=1"),
                ("/api/streams", "limit=1"),
                (f"/api/streams/{stream_id}/export", "format=csv"),
                ("/api/listening/sessions", "limit=1"),
                ("/api/listening/stats", "days=7"),
                ("/api/me/sessions", "limit=1"),
                ("/admin/sessions", "limit=1"),
                ("/admin/audit", "limit=1"),
            ]
            for path, parameter in taken:
                async with http.get(f"{path}?{parameter}&foo=2&_=123") as r:
                    assert r.status == 200, (path, await r.text())
                async with http.get(f"{path}?{parameter}&{parameter}") as r:
                    answer = await r.json()
                    assert (r.status, answer["error"]) == (400, "invalid_payload"), (path, answer)
            for path in ("/admin/metrics", "/admin/alerts"):  # routes that take no parameter
                async with http.get(f"{path}?x=1&x=2") as r:
                    assert r.status == 200, (path, await r.text())
    finally:
        await server.stop()


def test_every_503_documents_the_retry_after_it_may_carry(tmp_path: Path) -> None:
    """A 503 that knows how long to wait (the storage guard's storage_full, on the stream, voice
    and guest creates as on the pattern API's) sends Retry-After: the document says so on each."""
    spec = document_of(tmp_path, **WEBHOOK)
    checked = 0
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            unavailable = operation["responses"].get("503")
            if unavailable is not None and path != "/readyz":  # not ready: an answer, not a refusal
                assert "Retry-After" in unavailable["headers"], (method, path)
                checked += 1
    assert checked and {"/api/streams", "/voicebot/create_session", "/api/auth/guest"} <= {
        path for path, methods in spec["paths"].items() if "503" in methods.get("post", {}).get("responses", {})
    }


def test_a_create_body_is_valid_to_the_document_exactly_when_the_server_takes_it(tmp_path: Path) -> None:
    """``POST /api/sessions``: beside a state object the top-level state fields are ignored
    (PROTOCOL.md, as the origin app does), so the document must not hold them to their rules
    there; without one it must. Both sides are asked the same bodies."""
    spec = document_of(tmp_path)
    registry: Registry[Any] = Registry().with_resource("urn:sessionhub", Resource.from_contents(spec, DRAFT202012))
    body = spec["paths"]["/api/sessions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # The object's schema (beside it the document admits JSON null, taken as no body:
    # tests/test_contract_bodies.py).
    ref = next(branch["$ref"] for branch in body.get("anyOf", [body]) if "$ref" in branch)
    validator = Draft202012Validator({"$ref": "urn:sessionhub" + ref}, registry=registry)
    state = {"tracks": [], "tempo": 120, "swing": 0, "version": 1}
    bodies: list[dict[str, Any]] = [
        {},
        {"tempo": 100},
        {"swing": -1},
        {"state": state},
        {"state": state, "swing": -1},  # ignored beside the state: the document said refused
        {"state": state, "tempo": "fast", "tracks": "none"},
        {"state": None, "swing": -1},
        {"state": None, "tempo": 100},
        {"state": "x"},
        {"name": 5, "state": state},
    ]
    for case in bodies:
        try:
            CreateBody.parse(case)
            taken = True
        except (ValidationError, ApiError):
            taken = False
        assert validator.is_valid(case) is taken, case


async def test_a_page_route_takes_any_id_as_the_document_says(redis_process: RedisProcess, tmp_path: Path) -> None:
    """A page reads its id itself (handlers.web_pages.add_page): its route answers the page for any
    segment, so the document must not publish the segment as a session id the route refuses."""
    server = await start_server(redis_process.url, tmp_path)
    try:
        async with aiohttp.ClientSession(base_url=server.url) as http:
            async with http.get("/openapi.json") as r:
                paths = (await r.json())["paths"]
            pages = [
                path
                for path, methods in paths.items()
                if "{" in path
                and "text/html" in methods.get("get", {}).get("responses", {}).get("200", {}).get("content", {})
            ]
            assert {"/s/{session_id}", "/watch/{session_id}", "/session/{session_id}"} <= set(pages)
            for path in pages:
                (param,) = [p for p in paths[path]["get"]["parameters"] if p["in"] == "path"]
                assert "pattern" not in param["schema"], path
                async with http.get(path.replace("{session_id}", "not-a-session")) as r:
                    assert (r.status, r.content_type) == (200, "text/html"), path
    finally:
        await server.stop()
