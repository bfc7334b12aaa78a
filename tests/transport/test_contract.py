"""The transport's contract (server/transport/__init__.py): the libraries' private names stay in
server/transport/, the lane is chosen before anything heavy is imported, and an untested
library version makes the server slower, never down."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from server.app import SIO_KEY, build_sio
from server.transport import choose_lane
from server.transport.versions import TESTED, UnsupportedVersions, installed_versions, untested
from tests import helpers
from tests.helpers import ServerUnderTest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("server", "handlers", "jobs", "auth", "storage", "protocol", "bench")
# Private names of python-socketio, python-engineio, aiohttp and redis-py that the fast lane
# relies on (its contract, server/transport/fastpath.py), and any import of a private module.
PRIVATE_NAMES = re.compile(
    r"\b(?:_handle_eio_message|_handle_eio_connect|_handle_eio_disconnect|_handle_event|_send_packet"
    r"|_binary_packet|_engineio_server_class|_send_ping|_handle_connect|_cors_allowed_origins"
    r"|_trigger_event|_get_socket|_message_tail|_bound_port|_reuse_address|_reuse_port|_backlog"
    r"|_resubscribe_shard_channels)\b"
    r"|\._async\b|\bTCPSite\._server\b|\b(?:socketio|engineio|aiohttp|redis)\._[a-z]"
)


def test_private_library_names_appear_only_in_the_transport_package() -> None:
    leaks = []
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            if path.is_relative_to(ROOT / "server" / "transport"):
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if PRIVATE_NAMES.search(line):
                    leaks.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not leaks, "private library names outside server/transport/:\n" + "\n".join(leaks)


def test_the_private_name_pattern_finds_what_it_must() -> None:
    # The grep above must be able to fail: the names the fast lane uses are found where they are.
    fastpath = (ROOT / "server" / "transport" / "fastpath.py").read_text(encoding="utf-8")
    for name in ("_handle_eio_message", "_binary_packet", "_message_tail", "self._async", "_send_ping"):
        assert PRIVATE_NAMES.search(name), name
        assert name in fastpath
    assert PRIVATE_NAMES.search("from redis._parsers.base import BaseParser")


def _untested() -> dict[str, str]:
    return {**installed_versions(), "python-socketio": "5.11.0"}


def test_auto_takes_the_fast_lane_on_tested_versions_and_the_stock_lane_with_a_warning_outside() -> None:
    # On the versions CI pins (constraints.txt) auto is fast; `make test-versions` runs this on others.
    assert choose_lane("auto")[0] == ("stock" if untested() else "fast")
    assert choose_lane("auto", installed_versions()) == choose_lane("auto")
    assert choose_lane("stock") == ("stock", "")
    lane, warning = choose_lane("auto", _untested())
    assert lane == "stock" and "python-socketio 5.11.0" in warning
    with pytest.raises(UnsupportedVersions, match=r"python-socketio 5\.11\.0"):
        choose_lane("fast", _untested())
    with pytest.raises(ValueError, match="SESSIONHUB_TRANSPORT"):
        choose_lane("quick")


def test_the_stock_lane_is_built_when_a_version_is_untested_and_said_once_serving(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """The warning is `serve`'s, once it listens (server.commands.serve): logged while the app was
    built, it came before a refusal of the start (a port in use), which was then two lines on
    stderr instead of one (tests/test_cli.py::test_a_port_in_use_is_one_line on an untested
    python-socketio: `make test-versions`' lowest set)."""
    real = installed_versions()
    low = TESTED["aiohttp"][0]
    monkeypatch.setattr(
        "server.transport.versions.installed_versions", lambda: {**real, "aiohttp": f"{low[0]}.{low[1] - 1}.0"}
    )
    settings = helpers.test_settings("redis://127.0.0.1:1", tmp_path, transport="auto")
    with caplog.at_level(logging.WARNING):
        sio = build_sio(settings)
    assert sio.lane == "stock"
    assert [r for r in caplog.records if r.levelno == logging.WARNING] == []
    lane, warning = choose_lane("auto")
    assert lane == "stock" and "aiohttp" in warning and "stock" in warning


def test_help_and_the_lane_choice_import_neither_aiohttp_nor_socketio() -> None:
    program = (
        "import sys\n"
        "from server.cli import _parser\n"
        "from server.transport import choose_lane\n"
        "choose_lane('auto')\n"
        "_parser([]).format_help()\n"
        "heavy = sorted(m for m in ('aiohttp', 'socketio', 'engineio') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
    helped = subprocess.run(
        [sys.executable, "-m", "server", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert helped.returncode == 0 and "serve" in helped.stdout


async def test_the_server_runs_on_the_lane_asked_for(server: ServerUnderTest) -> None:
    # `make test-stock` runs the socket tests with SESSIONHUB_TRANSPORT=stock: they run on it.
    asked = os.environ.get("SESSIONHUB_TRANSPORT", "auto")
    expected = "stock" if asked == "stock" or (asked == "auto" and untested()) else "fast"
    assert server.app[SIO_KEY].lane == expected
