"""Which WebSocket lane the server runs on, decided before any of the libraries is imported.

The fast lane (``server.transport.fastpath``) reaches into private parts of python-socketio,
python-engineio and aiohttp; it was tested with the versions in :data:`TESTED` and nothing
else. The stock lane (``server.transport.stock``) uses only their documented API and runs on
every version ``pyproject.toml`` allows. An installed version outside :data:`TESTED` makes the
server *slower, never down*: ``auto`` picks the stock lane and logs one warning.

This module imports nothing but the standard library (``importlib.metadata`` reads the
versions from the installed distributions' metadata): an aiohttp that breaks at import time,
or is missing, is found here before anything imports it.

``SESSIONHUB_TRANSPORT`` chooses: ``auto`` (the default: fast when every version is tested,
else stock with a warning), ``fast`` (refuse to start outside the tested versions) or
``stock``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from protocol.distributions import installed_version, major_minor

Lane = Literal["fast", "stock"]
Choice = Literal["auto", "fast", "stock"]
CHOICES: tuple[Choice, ...] = ("auto", "fast", "stock")
ENV_VAR = "SESSIONHUB_TRANSPORT"

# distribution -> (lowest tested, first untested): the range the fast lane's contract (the
# private names listed in server.transport.fastpath) was tested in. Widen a range only after
# `make test` passes on the new version. Ranges are of major.minor: any patch release of a
# tested minor runs the fast lane (a patch release keeps a library's internals; constraints.txt
# pins the one CI runs, and the newest set of `make test-versions` runs the newest patch).
TESTED: Mapping[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "python-socketio": ((5, 18), (5, 19)),
    "python-engineio": ((4, 15), (4, 16)),
    "aiohttp": ((3, 14), (3, 15)),
}


class UnsupportedVersions(RuntimeError):
    """The fast lane was asked for (``SESSIONHUB_TRANSPORT=fast``) outside its tested versions."""


def installed_versions() -> dict[str, str]:
    """The installed version of each library the fast lane depends on ("" when missing)."""
    return {name: installed_version(name) for name in TESTED}


def untested(installed: Mapping[str, str] | None = None) -> list[str]:
    """One line per library outside its tested range (empty when the fast lane may run)."""
    installed = installed_versions() if installed is None else installed
    return [
        f"{name} {installed.get(name) or 'missing'} (tested: >={_dotted(low)},<{_dotted(high)})"
        for name, (low, high) in TESTED.items()
        if not low <= major_minor(installed.get(name, "")) < high
    ]


def check_versions(installed: Mapping[str, str] | None = None) -> None:
    """Raise :class:`UnsupportedVersions` (one line) unless every library is in its tested range."""
    wrong = untested(installed)
    if wrong:
        raise UnsupportedVersions("the fast path was not tested with " + "; ".join(wrong))


def choose_lane(choice: str, installed: Mapping[str, str] | None = None) -> tuple[Lane, str]:
    """The lane for ``choice`` (``auto``, ``fast``, ``stock``) and a warning to log ("" for none).

    ``fast`` outside the tested versions raises :class:`UnsupportedVersions`; ``auto`` falls
    back to the stock lane with a warning saying why.
    """
    if choice not in CHOICES:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "stock":
        return "stock", ""
    wrong = untested(installed)
    if not wrong:
        return "fast", ""
    if choice == "fast":
        check_versions(installed)
    return "stock", (
        "serving on stock python-socketio (slower: more memory and CPU per connection): the fast path was not "
        "tested with " + "; ".join(wrong)
    )


def _dotted(pair: tuple[int, int]) -> str:
    return f"{pair[0]}.{pair[1]}"
