"""The error-ack contract of every Socket.IO event, as docs/PROTOCOL.md's Errors states it: a
refusal carries a code of the error table and echoes the payload's whole-number ``seq``,
except a message refused unread (oversized), which carries none, and the document says so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import Client, ServerUnderTest
from tests.test_protocol_doc import PROTOCOL, _registered_events


def _errors_section() -> str:
    text = PROTOCOL.read_text(encoding="utf-8")
    return text[text.index("## Errors") : text.index("## Retries")]


def _documented_codes() -> set[str]:
    return set(re.findall(r"^\| `(\w+)` \| \d{3} \|", _errors_section(), re.M))


async def test_every_events_error_ack_echoes_the_seq_with_a_documented_code(
    server: ServerUnderTest, clients: list[Client], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    events = _registered_events(monkeypatch, tmp_path)
    codes = _documented_codes()
    assert len(codes) > 15  # the table was read
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    for event, scoped in sorted(events.items()):
        # A session-scoped event refused on its id; one that takes no field on an unknown one.
        payload = {"session_id": "not-a-uuid", "seq": 11} if scoped else {"nope": 1, "seq": 11}
        ack = await client.call(event, payload)
        assert ack["ok"] is False and ack["error"] in codes, (event, ack)
        assert ack["seq"] == 11, (event, ack)
    ack = await client.call("no_such_event", {"seq": 12})
    assert (ack["error"], ack["seq"]) == ("unknown_event", 12)


async def test_a_message_refused_unread_has_no_seq_and_the_document_says_so(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    ack = await client.call("pattern_op", {"session_id": "x", "seq": 13, "op": {}, "pad": "z" * 40_000})
    # Not decoded (PROTOCOL, Message size): nothing of it is read, its seq included.
    assert ack["error"] == "payload_too_large" and "seq" not in ack, ack
    # PROTOCOL.md said every error ack of a payload with a seq echoes it (pattern_op's errors, "Any
    # other event name") without this exception, which a client matching acks by seq meets.
    section = " ".join(_errors_section().split())
    assert re.search(r"echoes the payload's `seq`.*refused unread \(over the size limit", section), section[:600]
    assert "carries no `seq`" in section
