"""Socket.IO v5 messages as both lanes screen them before python-socketio parses them.

A message that will not be handled (too large, malformed, a reserved event name) is answered
-- its ack when it asked for one, else a ``protocol_error`` event -- never dropped silently;
what is needed for the answer (namespace, ack id, attachments) is read from the message's
header without parsing the rest. Both lanes build their answers here (:func:`refusal_packet`,
with the reasons :func:`too_large`, :func:`malformed` and :func:`reserved`), so a refusal reads
the same whichever lane serves. Standard library only: this module is imported by both lanes,
and python-socketio's packet class is handed in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from protocol.errors import ErrorCode, with_seq
from protocol.events import PROTOCOL_ERROR

# type, optional binary count, optional namespace, optional ack id (Socket.IO v5 framing). An ack
# id is read as python-socketio reads it, up to 100 digits (longer, it refuses the message, and
# the id is none): at 18 the stock lane's screen cut a longer one, refused the message as
# malformed and acked the cut id, where the fast lane handled it under its whole id.
_ACK_DIGITS = 100
_HEADER = re.compile(rf"^(\d)(?:(\d{{1,10}})-)?(/[^,]*,)?(\d{{1,{_ACK_DIGITS}}}(?!\d))?")
# Binary attachments one message may declare (our protocol sends none; a client library may).
MAX_ATTACHMENTS = 10
# Names python-socketio dispatches to its own lifecycle handlers: a client sending an event so
# named must not run them (it would reset its rate budget or fake a disconnect).
RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error"})
# Socket.IO v5 packet types of an answer (the protocol's numbers, as python-socketio's packet module has them).
_EVENT, _ACK, _CONNECT_ERROR = 2, 3, 4

Error = tuple[ErrorCode, str]
P = TypeVar("P")


class MalformedMessage(ValueError):
    """A Socket.IO message that decodes but is not a valid event."""


def size_of(data: str | bytes) -> int:
    """Bytes of an Engine.IO message (UTF-8 for text; a character is at most 4 bytes)."""
    if isinstance(data, str) and not data.isascii():
        return len(data.encode())
    return len(data)


# What Header.of reads of a message: its type, count, a namespace of up to 64 characters and its ack id.
_HEAD_CHARS = 64 + 16 + _ACK_DIGITS


class Header:
    """What a refusal needs from a message it will not parse: namespace, ack id, attachments."""

    __slots__ = ("ack_id", "attachments", "connect", "namespace")

    def __init__(self, namespace: str, ack_id: int | None, attachments: int, *, connect: bool = False) -> None:
        self.namespace, self.ack_id, self.attachments = namespace, ack_id, attachments
        self.connect = connect  # a CONNECT: refused with a CONNECT_ERROR (see refusal_packet)

    @classmethod
    def of(cls, data: str | bytes) -> Header:
        head = data[:_HEAD_CHARS] if isinstance(data, str) else data[:_HEAD_CHARS].decode("latin-1")
        match = _HEADER.match(head)
        if match is None:
            return cls("/", None, 0)
        namespace = (match.group(3) or "/,")[:-1]
        has_ack = match.group(1) in ("2", "5") and match.group(4) is not None
        binary = match.group(1) in ("5", "6") and match.group(2) is not None
        ack_id = int(match.group(4)) if has_ack else None
        return cls(namespace, ack_id, int(match.group(2)) if binary else 0, connect=match.group(1) == "0")


def too_large(max_payload_bytes: int) -> Error:
    """The refusal of a message over ``max_payload_bytes``."""
    return ErrorCode.PAYLOAD_TOO_LARGE, f"messages are limited to {max_payload_bytes} bytes"


def malformed(exc: BaseException) -> Error:
    """The refusal of a message that failed to parse (``exc``: why; a MalformedMessage says it)."""
    detail = f": {exc}" if isinstance(exc, MalformedMessage) else " (not a Socket.IO v5 message)"
    return ErrorCode.INVALID_PAYLOAD, "the message is malformed" + detail


# A binary message declaring no attachment (`45[...]`, `450-[...]`): python-socketio held it
# for an attachment it could never take (its count was reached), and took the connection's next
# message for that attachment: on the fast lane that message was answered as the binary one's
# refusal, its own ack never sent; on the stock lane, which holds the parts itself, every later
# message waited, unanswered, for good. No client library sends one.
NO_ATTACHMENT = MalformedMessage("a binary message declares one attachment or more")


def event_name(event: object) -> str:
    """The name of a decoded EVENT's data; MalformedMessage when it is not ``[name, ...]``."""
    if not isinstance(event, list) or not event or not isinstance(event[0], str):
        raise MalformedMessage("an event is a JSON array starting with the event's name")
    return event[0]


def reserved(name: str) -> Error | None:
    """The refusal of an event named as one of python-socketio's lifecycle events, or None."""
    return (ErrorCode.UNKNOWN_EVENT, f"{name!r} is reserved") if name in RESERVED_EVENTS else None


def payload_of(event: object) -> Any:
    """A decoded EVENT's payload (its first argument), whose ``seq`` a refusal echoes; None
    when it has none."""
    return event[1] if isinstance(event, list) and len(event) > 1 else None


def refusal(data: str, max_payload_bytes: int) -> tuple[Error, Any] | None:
    """Why a text message is not to be handled (too large, a malformed or reserved event), with
    the payload its answer takes ``seq`` from (None when it was not decoded), or None.

    The stock lane's screen (``server.transport.stock``); the fast lane makes the same checks
    inside python-socketio's parsing, without decoding twice.
    """
    if size_of(data) > max_payload_bytes:
        return too_large(max_payload_bytes), None
    match = _HEADER.match(data)
    if match is None or match.group(1) != "2":  # not an EVENT: python-socketio's to judge
        return None
    try:
        event = json.loads(data[match.end() :])
        refused = reserved(event_name(event))
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        return malformed(exc), None
    return None if refused is None else (refused, payload_of(event))


def refusal_packet(
    packet_class: Callable[..., P],
    namespace: str,
    ack_id: int | None,
    error: Error,
    payload: Any = None,
    *,
    connect: bool = False,
) -> P | None:
    """The packet that answers a message that will not be handled, built with the lane's
    ``packet_class``: its ack when it asked for one, else a ``protocol_error`` event; None for a
    reserved name without an ack (dropped: nothing waits for it, and it is not an error of ours).
    The ack echoes ``payload``'s whole-number ``seq`` as every error ack does (the router's
    ``with_seq``); ``payload`` is None when the message was not decoded (too large, malformed).
    A refused CONNECT (``connect``: too large, malformed) gets a CONNECT_ERROR, as the connect
    handler's refusals: a ``protocol_error`` event, on a namespace not joined, was ignored by a
    Socket.IO client, which waited out its connect timeout instead of hearing connect_error."""
    if connect:
        detail = {"error": error[0].value, "message": error[1]}
        return packet_class(_CONNECT_ERROR, namespace=namespace, data={"message": error[0].value, "data": detail})
    body: dict[str, Any] = {"ok": False, "error": error[0].value, "message": error[1]}
    if ack_id is not None:
        return packet_class(_ACK, namespace=namespace, data=[with_seq(body, payload)], id=ack_id)
    if error[0] is ErrorCode.UNKNOWN_EVENT:
        return None
    return packet_class(_EVENT, namespace=namespace, data=[PROTOCOL_ERROR, body])


# python-socketio's refusal of a CONNECT it will not pass to the connect handler: a namespace this
# server does not serve, or one the connection has joined already.
_UNABLE = "Unable to connect"


def shaped_connect_error(packet_type: int, data: Any) -> Any:
    """``data`` of an outgoing packet, with python-socketio's bare-string CONNECT_ERROR
    (``"Unable to connect"``) given the object Socket.IO v5 clients read (``message`` and
    ``data``, as every refusal of the connect handler has: ``connect_error`` with
    ``message: "invalid_payload"``); anything else unchanged."""
    if packet_type != _CONNECT_ERROR or data != _UNABLE:
        return data
    detail = "this server serves namespace '/' only, once per connection"
    code = ErrorCode.INVALID_PAYLOAD.value
    return {"message": code, "data": {"error": code, "message": detail}}
