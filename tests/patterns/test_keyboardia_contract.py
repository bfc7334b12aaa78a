"""Keyboardia's black-box session API contract (its ``e2e/session-api-contract.spec.ts``), step by
step against sessionhub: one journey, as a Keyboardia client and its contract suite see the API."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.helpers import ServerUnderTest

MAX_MESSAGE_SIZE = 64 * 1024  # Keyboardia's shared/constants.ts, sessionhub's default body cap


def state(tempo: int, active: tuple[int, ...] = ()) -> dict[str, Any]:
    steps = [index in active for index in range(128)]
    contract_track = {
        "id": "contract-track",
        "name": "Contract Track",
        "sampleId": "sampled:808-kick",
        "steps": steps,
        "parameterLocks": [None] * 128,
        "volume": 1,
        "muted": False,
        "soloed": False,
        "transpose": 0,
        "stepCount": 16,
    }
    return {"tracks": [contract_track], "tempo": tempo, "swing": 12, "version": 1}


def short_track(track_id: str, name: str) -> dict[str, Any]:
    return {
        "id": track_id,
        "name": name,
        "sampleId": "sampled:808-kick",
        "steps": [True] + [False] * 15,
        "parameterLocks": [None] * 16,
        "volume": 1,
        "muted": False,
        "soloed": False,
        "transpose": 0,
        "stepCount": 16,
    }


def active(steps: list[bool]) -> list[int]:
    return [index for index, on in enumerate(steps) if on]


class Api:
    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, path, **kwargs) as response:
            text = await response.text()
            return response.status, (await response.json()) if text else None


async def _journey(api: Api) -> None:
    status, created = await api.call(
        "POST", "/api/sessions", json={"name": "Working Copy", "state": {**state(120, (0,)), "loopRegion": LOOP}}
    )
    assert status == 201 and created["url"] == f"/s/{created['id']}"
    sid = created["id"]
    status, initial = await api.call("GET", f"/api/sessions/{sid}")
    assert status == 200 and (initial["name"], initial["immutable"], initial["remixedFrom"]) == (
        "Working Copy",
        False,
        None,
    )
    status, replaced = await api.call(
        "PUT", f"/api/sessions/{sid}", json={"state": {**state(132, (0, 4)), "loopRegion": None}}
    )
    assert status == 200 and (replaced["id"], replaced["trackCount"]) == (sid, 1)
    status, renamed = await api.call("PATCH", f"/api/sessions/{sid}", json={"name": "Renamed Working Copy"})
    assert status == 200 and renamed["name"] == "Renamed Working Copy"
    status, updated = await api.call("GET", f"/api/sessions/{sid}")
    assert (updated["state"]["tempo"], updated["state"]["loopRegion"]) == (132, None)
    assert active(updated["state"]["tracks"][0]["steps"]) == [0, 4]
    status, remixed = await api.call("POST", f"/api/sessions/{sid}/remix?contract=query")
    assert status == 201 and remixed["remixedFrom"] == sid
    status, remix = await api.call("GET", f"/api/sessions/{remixed['id']}")
    assert (remix["immutable"], remix["remixedFrom"], remix["state"]["loopRegion"]) == (False, sid, None)
    status, published = await api.call("POST", f"/api/sessions/{sid}/publish?contract=query")
    assert status == 201 and (published["immutable"], published["sourceId"]) == (True, sid)
    status, copy = await api.call("GET", f"/api/sessions/{published['id']}")
    assert (copy["immutable"], copy["remixedFrom"], copy["state"]["tempo"]) == (True, sid, 132)
    assert (await api.call("PUT", f"/api/sessions/{published['id']}", json={"state": state(140)}))[0] == 403
    assert (await api.call("PATCH", f"/api/sessions/{sid}", json={"name": "Still Editable"}))[0] == 200


LOOP = {"start": 0, "end": 8}


async def _invalid_requests(api: Api) -> None:
    unsafe = {"name": '<script>alert("contract")</script>', "state": state(120)}
    assert (await api.call("POST", "/api/sessions", json=unsafe))[0] == 400
    status, created = await api.call(
        "POST", "/api/sessions", json={"name": "Validation Control", "state": state(120, (2,))}
    )
    sid = created["id"]
    for method, body in (
        ("PUT", {"state": {**state(132, (2, 6)), "tempo": "fast"}}),
        ("PATCH", {"name": 42}),
        ("PATCH", {"name": "x" * 101}),
        ("PUT", {"state": {"tempo": 130}}),
        ("PATCH", {"state": {"tempo": 130}}),
    ):
        assert (await api.call(method, f"/api/sessions/{sid}", json=body))[0] == 400, (method, body)
    oversized = "x" * MAX_MESSAGE_SIZE
    assert (await api.call("POST", "/api/sessions", json={"padding": oversized}))[0] == 413
    assert (await api.call("PUT", f"/api/sessions/{sid}", json={"padding": oversized}))[0] == 413
    assert (await api.call("PATCH", f"/api/sessions/{sid}", json={"name": oversized}))[0] == 413
    status, unchanged = await api.call("GET", f"/api/sessions/{sid}")
    assert (unchanged["name"], unchanged["state"]["tempo"]) == ("Validation Control", 120)
    assert active(unchanged["state"]["tracks"][0]["steps"]) == [2]
    assert (await api.call("GET", "/api/sessions/" + "-" * 36))[0] == 400
    assert (await api.call("GET", f"/api/sessions/{sid}/publish"))[0] == 404
    headers = {"Content-Type": "application/json"}
    status, malformed = await api.call("POST", "/api/sessions", data=b"{", headers=headers)
    assert status == 400 and malformed["error"] == "Invalid JSON"
    status, undeclared = await api.call(
        "POST", "/api/sessions", data="not json at all", headers={"Content-Type": "text/plain"}
    )
    assert status == 201
    status, read = await api.call("GET", f"/api/sessions/{undeclared['id']}")
    assert (read["state"]["tracks"], read["state"]["tempo"], read["state"]["swing"]) == ([], 120, 0)


async def _hostile_metadata(api: Api) -> None:
    invalid = [
        ({"scale": {"root": "C", "scaleId": "toString", "locked": False}}, "scale.scaleId"),
        ({"scale": {"root": "C", "scaleId": "constructor", "locked": False}}, "scale.scaleId"),
        ({"scale": {"root": "C", "scaleId": "__proto__", "locked": False}}, "scale.scaleId"),
        ({"effects": []}, "effects"),
        ({"effects": {}}, "effects.reverb"),
        ({"loopRegion": {"start": "bad", "end": 8}}, "loopRegion.start"),
        ({"loopRegion": {"start": 4.5, "end": 8}}, "loopRegion.start"),
        ({"loopRegion": {"start": 4, "end": 8.5}}, "loopRegion.end"),
        ({"loopRegion": {"start": 0, "end": 128}}, "loopRegion.end"),
        ({"loopRegion": {"start": 9, "end": 8}}, "loopRegion.start"),
    ]
    for extra, field in invalid:
        status, body = await api.call("POST", "/api/sessions", json={"state": {**state(120), **extra}})
        assert status == 400 and body["error"] == "Validation failed", extra
        assert any(field in detail for detail in body["details"]), (extra, body)
    status, control = await api.call(
        "POST", "/api/sessions", json={"name": "Metadata Control", "state": state(120, (3,))}
    )
    sid = control["id"]
    assert (await api.call("PATCH", f"/api/sessions/{sid}", json={"state": {**state(120), **invalid[0][0]}}))[0] == 400
    assert (await api.call("PUT", f"/api/sessions/{sid}", json={"state": {**state(120), **invalid[8][0]}}))[0] == 400
    status, unchanged = await api.call("GET", f"/api/sessions/{sid}")
    assert (unchanged["name"], unchanged["state"]["tempo"]) == ("Metadata Control", 120)
    assert unchanged["state"]["scale"] == {"root": "C", "scaleId": "minor-pentatonic", "locked": True}
    assert unchanged["state"].get("loopRegion") is None
    assert active(unchanged["state"]["tracks"][0]["steps"]) == [3]


async def _normalized(api: Api) -> None:
    status, partial = await api.call("POST", "/api/sessions", json={"tempo": 140})
    assert status == 201
    status, read = await api.call("GET", f"/api/sessions/{partial['id']}")
    assert {k: read["state"][k] for k in ("tracks", "tempo", "swing", "version")} == {
        "tracks": [],
        "tempo": 140,
        "swing": 0,
        "version": 1,
    }
    status, created = await api.call("POST", "/api/sessions", json={"state": state(120)})
    tracks = [short_track("repair-track", "Original"), short_track("repair-track", "Duplicate")]
    replace = {"state": {"tracks": tracks, "tempo": 120, "swing": 0, "version": 1}}
    assert (await api.call("PUT", f"/api/sessions/{created['id']}", json=replace))[0] == 200
    status, read = await api.call("GET", f"/api/sessions/{created['id']}")
    (kept,) = read["state"]["tracks"]
    assert (kept["name"], len(kept["steps"]), len(kept["parameterLocks"])) == ("Original", 128, 128)
    assert active(kept["steps"]) == [0]


async def _direct_format(api: Api) -> None:
    effects = {
        "bypass": False,
        "reverb": {"decay": 4, "wet": 0.5},
        "delay": {"time": "8n", "feedback": 0.3, "wet": 0.2},
        "chorus": {"frequency": 2, "depth": 0.4, "wet": 0.1},
        "distortion": {"amount": 0.25, "wet": 0.3},
    }
    body = {**state(120, (0,)), "swing": 0, "effects": effects, "loopRegion": LOOP}
    status, created = await api.call("POST", "/api/sessions", json=body)
    assert status == 201
    status, read = await api.call("GET", f"/api/sessions/{created['id']}")
    assert read["state"]["effects"]["reverb"] == {"decay": 4, "wet": 0.5} and read["state"]["loopRegion"] == LOOP


async def _unknown_routes(api: Api) -> None:
    status, health = await api.call("GET", "/api/health")
    assert status == 200 and health["status"] == "ok"
    status, unknown = await api.call("GET", "/api/definitely-not-a-route")
    assert status == 404 and unknown["error"] == "Not found"


async def test_keyboardias_session_api_contract(server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as http:
        api = Api(http)
        for part in (_journey, _invalid_requests, _hostile_metadata, _normalized, _direct_format, _unknown_routes):
            await part(api)
