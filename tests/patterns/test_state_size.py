"""A pattern's state as stored always fits a PUT, and an edit that does not grow it is never
refused for its size (audit "patternphone").

The create and PUT bodies were measured, not the state stored from them: one just under the
limit, stored with the fields it left out (each track's `soloed` and `transpose`, the pattern's
effects and scale), was 700 bytes over it. It could not be saved again, even unchanged, and
every live edit was refused, those that shrank it too: a step turned on offline on a phone was
dropped as "the pattern would outgrow what a save may hold".
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio

from handlers.patterns.requests import CreateBody
from storage.patterns.layout import compact_size
from storage.patterns.repository import PatternSessions
from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.patterns.test_events import player, stored_state

BODY_LIMIT = 8 * 1024
LOCK = {"pitch": -12, "volume": 0.5}


@pytest_asyncio.fixture
async def small(redis: object, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server whose pattern bodies may hold 8 KB (the default 64 KB, scaled down)."""
    server = await start_server(redis_process.url, tmp_path, patterns_max_body_bytes=BODY_LIMIT)
    yield server
    await server.stop()


def sparse_track(number: int) -> dict[str, Any]:
    """A track as a Keyboardia-style client sends it: `soloed` and `transpose` left out."""
    return {
        "id": f"t{number}",
        "name": f"Track {number}",
        "sampleId": "kick",
        "steps": [number % 2 == 0] * 32,
        "parameterLocks": [LOCK if i % 2 else None for i in range(32)],
        "volume": 0.8,
        "muted": False,
        "stepCount": 32,
    }


def stored_size(state: dict[str, Any]) -> int:
    """What the server stores for ``state`` (its defaults filled in), as compact JSON."""
    given = CreateBody.parse({"state": state}).initial_state()
    assert given is not None
    return compact_size(given.initial())


def body(state: dict[str, Any]) -> bytes:
    return json.dumps({"state": state}, separators=(",", ":")).encode()


def just_over_as_stored() -> dict[str, Any]:
    """The fewest sparse tracks that, stored (steps and locks to 128, defaults filled), take more
    than a PUT body may carry back."""
    state: dict[str, Any] = {"tempo": 120, "swing": 0, "version": 1, "tracks": []}
    while stored_size(state) <= BODY_LIMIT - 64:
        state["tracks"].append(sparse_track(len(state["tracks"])))
    return state


async def send(server: ServerUnderTest, method: str, path: str, data: bytes) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, data=data, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_a_state_that_would_be_stored_over_the_limit_is_refused_and_one_stored_fits_a_put(
    small: ServerUnderTest,
) -> None:
    state = just_over_as_stored()
    assert len(body(state)) < BODY_LIMIT < stored_size(state)  # the body fits; as stored, it would not
    status, answer = await send(small, "POST", "/api/sessions", body(state))
    assert (status, answer["error"]) == (413, "Request body too large"), answer
    assert answer["stateBytes"] == stored_size(state), answer
    fitting = {**state, "tracks": state["tracks"][:-1]}
    status, created = await send(small, "POST", "/api/sessions", body(fitting))
    assert status == 201, created
    # A PUT of an almost empty session with the same state: refused too, nothing changed.
    status, answer = await send(small, "PUT", f"/api/sessions/{created['id']}", body(state))
    assert status == 413, answer
    assert len((await stored_state(small, created["id"]))["tracks"]) == len(fitting["tracks"])
    # What is stored is sent back unchanged, as a page's save does: it fits.
    async with aiohttp.ClientSession() as http, http.get(f"{small.url}/api/sessions/{created['id']}") as r:
        kept = (await r.json())["state"]
    status, answer = await send(small, "PUT", f"/api/sessions/{created['id']}", body(kept))
    assert status == 200, answer


async def test_edits_that_do_not_grow_a_state_over_the_limit_are_taken(
    small: ServerUnderTest, clients: list[Client]
) -> None:
    """A state stored over the limit (by a release before this check) is edited back under it."""
    state = just_over_as_stored()
    given = CreateBody.parse({"state": state}).initial_state()
    assert given is not None
    over = given.initial()
    assert compact_size(over) > BODY_LIMIT
    record = await PatternSessions(small.services.store).create(state=copy.deepcopy(over), name=None, author_id="ann")
    ann = await player(small, clients, record.id, "ann")

    async def op(seq: int, operation: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await ann.call("pattern_op", {"session_id": record.id, "seq": seq, "op": operation})
        return answer

    # "true" is a byte shorter than "false"; a lock removed shrinks it: both taken.
    off = next(i for i, on in enumerate(over["tracks"][1]["steps"]) if not on)
    assert (await op(1, {"type": "set_step", "trackId": "t1", "step": off, "on": True}))["ok"] is True
    assert (await op(2, {"type": "set_lock", "trackId": "t0", "step": 1, "lock": None}))["ok"] is True
    # One that grows it is refused, and changes nothing.
    grown = await op(3, {"type": "set_step", "trackId": "t0", "step": 0, "on": False})
    assert (grown["ok"], grown["error"]) == (False, "payload_too_large"), grown
    stored = await stored_state(small, record.id)
    assert stored["tracks"][1]["steps"][off] is True and stored["tracks"][0]["parameterLocks"][1] is None
    assert stored["tracks"][0]["steps"][0] is True
