"""Listening statistics: per local day (split at local midnight), streaks, totals.

Pure functions over sessions already read through the time index; the time zone is the
client's IANA name, resolved with ``zoneinfo`` (DST days have 23 or 25 hours, and a session
across midnight counts on both days).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from functools import cache

from protocol.errors import CodedError, ErrorCode
from storage.listening.model import ListeningSession

_TZ_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}")


# Files of a system's zone folder that are no zone a browser names: `localtime` is this
# machine's own zone (accepted, it answered in the server's zone, not the listener's), and
# `posixrules` a copy of some zone kept for POSIX TZ strings.
NOT_ZONES = frozenset({"localtime", "posixrules"})


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - NOT_ZONES


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone ``name``, or ``invalid_payload`` (never a path, never a guess)."""
    if len(name) > 64 or not _TZ_NAME.fullmatch(name) or name not in _zone_names():
        raise CodedError(ErrorCode.INVALID_PAYLOAD, "tz must be an IANA time zone name, e.g. Europe/Berlin")
    return zoneinfo.ZoneInfo(name)


def local_day(ms: int, tz: zoneinfo.ZoneInfo) -> date:
    """The local calendar day of the instant ``ms``."""
    return datetime.fromtimestamp(ms / 1000, tz).date()


def day_start_ms(day: date, tz: zoneinfo.ZoneInfo) -> int:
    """The instant the local day ``day`` begins (its first existing moment on DST days)."""
    return int(datetime.combine(day, time(0), tzinfo=tz).timestamp() * 1000)


def split_by_day(started_at: int, ended_at: int, tz: zoneinfo.ZoneInfo) -> Iterator[tuple[date, int]]:
    """``(local day, ms)`` parts of a range, cut at each local midnight it crosses."""
    cursor = started_at
    while cursor < ended_at:
        day = local_day(cursor, tz)
        next_midnight = day_start_ms(day + timedelta(days=1), tz)
        part_end = min(ended_at, max(next_midnight, cursor + 1))
        yield day, part_end - cursor
        cursor = part_end


def empty_days(first: date, last: date) -> dict[date, int]:
    """Every local day from ``first`` to ``last`` (both included) at zero ms."""
    return {first + timedelta(days=i): 0 for i in range((last - first).days + 1)}


def add_to_days(totals: dict[date, int], sessions: Iterable[ListeningSession], tz: zoneinfo.ZoneInfo) -> None:
    """Add the sessions' ms to the days of ``totals`` they cover (other days are left out)."""
    for session in sessions:
        for day, ms in split_by_day(session.started_at, session.ended_at, tz):
            if day in totals:
                totals[day] += ms


def streaks(totals: dict[date, int], today: date) -> tuple[int, int]:
    """(current, longest) runs of consecutive days with listening.

    The current run ends today once today has listening, else yesterday (a day not over yet
    does not break it).
    """
    longest = run = 0
    for day in sorted(totals):
        run = run + 1 if totals[day] > 0 else 0
        longest = max(longest, run)
    current = 0
    day = today if totals.get(today, 0) > 0 else today - timedelta(days=1)
    while totals.get(day, 0) > 0:
        current += 1
        day -= timedelta(days=1)
    return current, longest
