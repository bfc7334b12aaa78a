"""Installed library versions, as the version checks read them (the standard library only: the
transport's lane is chosen from these before aiohttp or python-socketio is imported)."""

from __future__ import annotations

import functools
import re
from importlib.metadata import PackageNotFoundError, version


@functools.cache
def installed_version(name: str) -> str:
    """The installed version of the distribution ``name`` ("" when missing), read once per
    process: the code that runs is the code imported at start-up whatever is installed later, and
    reading a distribution's metadata parses it (~1.3 ms; an app built again, as the test suite
    does a thousand times, read six)."""
    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def major_minor(text: str) -> tuple[int, int]:
    """``(major, minor)`` of a version string; ``(-1, -1)`` when it has none (below every range)."""
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (-1, -1)
