"""The bus reads an event's envelope off its head (server/bus.py ``_parse``): what it reads must
be what decoding the whole message as JSON gives, for envelopes the scripts really write."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from server.bus import _ENVELOPE_HEAD, _parse
from storage.keys import Keys
from tests.voice.test_status_cost import OWNER, voice_on


def decoded(raw: str) -> tuple[str, int, str, str, float]:
    doc = json.loads(raw)
    return str(doc["epoch"]), int(doc["offset"]), str(doc["type"]), str(doc.get("id") or ""), float(doc.get("ts") or 0)


def read(raw: str) -> tuple[str, int, str, str, float]:
    parsed = _parse(raw)
    assert parsed.raw == raw  # forwarded byte for byte
    return parsed.epoch, parsed.offset, parsed.type, parsed.id, parsed.ts_ms


async def test_a_scripts_envelope_is_read_off_its_head_as_json_reads_it(redis: Redis) -> None:
    voice = voice_on(redis)
    session = await voice.create(owner_id="alice", telegram_user_id="", name="s")
    for status in ("recording", "paused", "recording"):
        await voice.set_status(session.id, status, OWNER)
    entries = await redis.xrange(Keys("sh").log(session.id))
    raws = [fields["e"] for _, fields in entries]
    assert len(raws) >= 3
    for raw in raws:
        assert _ENVELOPE_HEAD.match(raw) is not None  # the short way is the one taken
        assert read(raw) == decoded(raw)


@pytest.mark.parametrize(
    "raw",
    [
        # escaped text in a field: decoded as JSON
        '{"session_id":"s","epoch":"e\\"1","offset":3,"id":"e.1.ab","type":"t","ts":5,"data":{}}',
        # another writer's field order
        '{"epoch":"e","offset":3,"session_id":"s","id":"x","type":"t","ts":5,"data":{}}',
        # a ts Lua wrote as a float
        '{"session_id":"s","epoch":"e","offset":3,"id":"x","type":"t","ts":1.5e+12,"data":{"a":[1]}}',
    ],
)
def test_other_envelopes_are_decoded_as_json(raw: str) -> None:
    assert read(raw) == decoded(raw)


def test_a_truncated_message_is_refused_as_before() -> None:
    raw = '{"session_id":"s","epoch":"e","offset":3,"id":"x","type":"t","ts":5,"data":{"a":1'
    with pytest.raises(ValueError):
        _parse(raw)
