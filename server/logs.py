"""Process logging: plain text, or one JSON object per line (``SESSIONHUB_LOG_FORMAT=json``)."""

from __future__ import annotations

import datetime
import json
import logging
import os

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


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the known extras, any error."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
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
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


class ClientErrorFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (a client's malformed header or request line) as an
    ERROR with a traceback: that is the client's mistake, not the server's. One WARNING line
    naming the problem instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg = f"{record.getMessage()}: a malformed request ({type(error).__name__}: {error.message})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_client_errors() -> None:
    """Install :class:`ClientErrorFilter` on aiohttp's server logger (once per process)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
        logger.addFilter(ClientErrorFilter())
