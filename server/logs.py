"""Process logging: plain text, or one JSON object per line (``SESSIONHUB_LOG_FORMAT=json``)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp.http_exceptions import HttpProcessingError

# Fields a log call may add with ``extra=`` that the JSON lines carry (request and event lines).
EXTRA_FIELDS = (
    "request_id",
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
    "remote",
    "event",
    "sid",
    "session_id",
    "outcome",
)


# What a line must not hold as it is: line breaks and the other controls (C0, DEL, C1; a path's
# percent-encoded CR LF wrote a whole forged line into the request log), the line and paragraph
# separators, the bidi controls that reorder how the rest of the line reads, and lone surrogates
# (a header's bytes that were not UTF-8). Each is written as an escape: ``\x0a``, ``\u202e``.
_NOT_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """``text`` as one line of the log: what :data:`_NOT_ONE_LINE` names, escaped."""
    return text if _NOT_ONE_LINE.search(text) is None else _NOT_ONE_LINE.sub(_escaped, text)


class TextFormatter(logging.Formatter):
    """A record as one line of text (its traceback, if any, on the lines after it): whatever the
    message quotes of a client (a path, a name) cannot start a line of its own."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return one_line(super().formatMessage(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the known extras, any error."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": one_line(record.getMessage()),
        }
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                value = getattr(record, name)
                line[name] = one_line(value) if isinstance(value, str) else value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def json_line(level: str, logger: str, message: str) -> str:
    """A line as :class:`JsonFormatter` writes it, for what is said before logging is set up."""
    record = logging.LogRecord(logger, logging.getLevelName(level), "", 0, message, None, None)
    return JsonFormatter().format(record)


def format_from_environment() -> str:
    """``SESSIONHUB_LOG_FORMAT`` read directly: the settings that carry it may be what failed."""
    return "json" if os.environ.get("SESSIONHUB_LOG_FORMAT", "").strip().lower() == "json" else "text"


def configure(level: str, log_format: str) -> None:
    """Set up the root logger once, for the whole process."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


# A client's malformed request is said once per kind of error per this long; the repeats are
# counted and said with the next line of that kind.
CLIENT_ERROR_EVERY_S = 60.0
# Kinds of error remembered at once (the oldest is forgotten first): the kind is aiohttp's
# wording, not the client's bytes, so there are few, but a bound costs nothing.
CLIENT_ERROR_KINDS = 64
# How much of the request's offending bytes (as aiohttp quotes them) a line keeps.
CLIENT_ERROR_EXCERPT = 120


# Where aiohttp's wording of an error ends and the client's bytes begin on its first line: a
# quote (``Bad status line 'GET …'``, ``… reading: b'…'``) or a colon before a space or the end.
_CLIENT_BYTES_START = re.compile(r"""['"]|:(?:\s|$)""")


def error_kind(error: HttpProcessingError) -> tuple[str, str]:
    """The kind a malformed request's error is throttled by, free of the client's bytes, and
    what its message says besides (those bytes, quoted by aiohttp).

    The kind is the exception's class and aiohttp's wording before the first quote or colon:
    ``LineTooLong`` quotes the client's line on that first line, and an ``InvalidURLError``'s
    message is the request target itself, so a kind that kept them let a client write one
    WARNING line per request by varying them.
    """
    from aiohttp.http_exceptions import InvalidURLError

    message = str(error.message)
    name = type(error).__name__
    if isinstance(error, InvalidURLError):
        return name, message
    first_line = message.partition("\n")[0]
    found = _CLIENT_BYTES_START.search(first_line)
    cut = found.start() if found else len(first_line)
    wording = first_line[:cut].strip(" :")[:CLIENT_ERROR_EXCERPT]
    return f"{name}: {wording}", message[cut:].lstrip(" :")


class ClientErrorFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (a client's malformed header or request line) as an
    ERROR with a traceback: that is the client's mistake, not the server's. One WARNING line
    naming the problem instead, on one line, with at most :data:`CLIENT_ERROR_EXCERPT`
    characters of the offending bytes, and at most once per kind of error per
    :data:`CLIENT_ERROR_EVERY_S` (the repeats counted in the next): aiohttp quotes the whole
    offending line, escaped (a control byte takes four characters), so one client sending 4 KB
    bad headers on new connections made the server write 16 KB of WARNING per request, as fast as
    it could connect, past ``SESSIONHUB_LOG_LEVEL=WARNING``."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._said: dict[str, tuple[float, int]] = {}  # kind -> (when said, repeats since)

    def forget(self) -> None:
        """Start afresh: the next line of every kind is said."""
        self._said.clear()

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        kind, quoted = error_kind(error)
        now = self._clock()
        said = self._said.get(kind)
        if said is not None and now - said[0] < CLIENT_ERROR_EVERY_S:
            self._said[kind] = (said[0], said[1] + 1)
            return False
        if said is None and len(self._said) >= CLIENT_ERROR_KINDS:
            self._said.pop(next(iter(self._said)))
        self._said[kind] = (now, 0)
        excerpt = " ".join(quoted.split())
        if len(excerpt) > CLIENT_ERROR_EXCERPT:
            excerpt = excerpt[:CLIENT_ERROR_EXCERPT] + "..."
        repeats = f"; {said[1]} more since the last line of this kind" if said is not None and said[1] else ""
        record.msg = f"{record.getMessage()}: a malformed request ({kind} {excerpt}){repeats}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_client_errors() -> None:
    """Install :class:`ClientErrorFilter` on aiohttp's server logger (once per process); an app
    built again in the same process (the tests build many) starts its count afresh, so what
    one server was told is not kept from the next one's log."""
    logger = logging.getLogger("aiohttp.server")
    for installed in logger.filters:
        if isinstance(installed, ClientErrorFilter):
            installed.forget()
            return
    logger.addFilter(ClientErrorFilter())
