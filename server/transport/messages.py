"""Socket.IO v5 messages as both lanes screen them before python-socketio parses them.

A message that will not be handled (too large, malformed, a reserved event name) is answered
-- its ack when it asked for one, else a ``protocol_error`` event -- never dropped silently;
what is needed for the answer (namespace, ack id, attachments) is read from the message's
header without parsing the rest. Standard library only.
"""

from __future__ import annotations

import json
import re

from protocol.errors import ErrorCode

# type, optional binary count, optional namespace, optional ack id (Socket.IO v5 framing)
_HEADER = re.compile(r"^(\d)(?:(\d{1,10})-)?(/[^,]*,)?(\d{1,18})?")
# Binary attachments one message may declare (our protocol sends none; a client library may).
MAX_ATTACHMENTS = 10
# Names python-socketio dispatches to its own lifecycle handlers: a client sending an event so
# named must not run them (it would reset its rate budget or fake a disconnect).
RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error"})


class MalformedMessage(ValueError):
    """A Socket.IO message that decodes but is not a valid event."""


def size_of(data: str | bytes) -> int:
    """Bytes of an Engine.IO message (UTF-8 for text; a character is at most 4 bytes)."""
    if isinstance(data, str) and not data.isascii():
        return len(data.encode())
    return len(data)


class Header:
    """What a refusal needs from a message it will not parse: namespace, ack id, attachments."""

    __slots__ = ("ack_id", "attachments", "namespace")

    def __init__(self, namespace: str, ack_id: int | None, attachments: int) -> None:
        self.namespace, self.ack_id, self.attachments = namespace, ack_id, attachments

    @classmethod
    def of(cls, data: str | bytes) -> Header:
        head = data[:64] if isinstance(data, str) else data[:64].decode("latin-1")
        match = _HEADER.match(head)
        if match is None:
            return cls("/", None, 0)
        namespace = (match.group(3) or "/,")[:-1]
        has_ack = match.group(1) in ("2", "5") and match.group(4) is not None
        binary = match.group(1) in ("5", "6") and match.group(2) is not None
        return cls(namespace, int(match.group(4)) if has_ack else None, int(match.group(2)) if binary else 0)


def refusal(data: str, max_payload_bytes: int) -> tuple[ErrorCode, str] | None:
    """Why a text message is not to be handled (too large, a malformed or reserved event), or None.

    The stock lane's screen (``server.transport.stock``); the fast lane makes the same checks
    inside python-socketio's parsing, without decoding twice.
    """
    if size_of(data) > max_payload_bytes:
        return ErrorCode.PAYLOAD_TOO_LARGE, f"messages are limited to {max_payload_bytes} bytes"
    match = _HEADER.match(data)
    if match is None or match.group(1) != "2":  # not an EVENT: python-socketio's to judge
        return None
    try:
        event = json.loads(data[match.end():])
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        return ErrorCode.INVALID_PAYLOAD, "the message is malformed (not a Socket.IO v5 message)"
    if not isinstance(event, list) or not event or not isinstance(event[0], str):
        detail = "an event is a JSON array starting with the event's name"
        return ErrorCode.INVALID_PAYLOAD, f"the message is malformed: {detail}"
    if event[0] in RESERVED_EVENTS:
        return ErrorCode.UNKNOWN_EVENT, f"{event[0]!r} is reserved"
    return None
