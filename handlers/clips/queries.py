"""Query parameters of the owner's review and export routes, checked at the edge."""

from __future__ import annotations

from aiohttp import web

from handlers.clips.moments import MomentSort
from handlers.clips.settings import ClipSettings
from handlers.clips.timecode import DEFAULT_FPS, FRAME_RATES
from handlers.http_common import query_int
from protocol.errors import CodedError, ErrorCode

MAX_WINDOW_S = 600


def choice(request: web.Request, name: str, choices: tuple[str, ...], default: str) -> str:
    """The query parameter ``name``, one of ``choices``, or ``invalid_payload``."""
    value = request.query.get(name, default)
    if value not in choices:
        raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{name} must be one of {', '.join(choices)}")
    return value


def only_clipped(request: web.Request) -> bool:
    """``?only=clipped`` (default ``all``)."""
    return choice(request, "only", ("all", "clipped"), "all") == "clipped"


def sort_order(request: web.Request) -> MomentSort:
    """``?sort=time|count`` (default ``time``)."""
    return "count" if choice(request, "sort", ("time", "count"), "time") == "count" else "time"


def moments_window(request: web.Request, settings: ClipSettings) -> int:
    """``?window_s=`` 1..600, default from the settings."""
    return query_int(request, "window_s", default=settings.moment_window_s, low=1, high=MAX_WINDOW_S)


def frame_rate(request: web.Request) -> str:
    """``?fps=`` one of 23.976, 25, 29.97, 30, 60 (default 30)."""
    return choice(request, "fps", tuple(FRAME_RATES), DEFAULT_FPS)


def subject(request: web.Request) -> str:
    """``?of=clips|moments`` (default ``clips``)."""
    return choice(request, "of", ("clips", "moments"), "clips")
