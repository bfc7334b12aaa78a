"""Listening statistics know the IANA time zones on a machine that has none of its own.

zoneinfo reads the system's /usr/share/zoneinfo first and then the ``tzdata`` package. A slim
image (python:3.11-slim, distroless) has no system database: without the package every ``tz``
was refused as not a time zone, "UTC" and "Europe/Berlin" included, so /history could show no
statistics at all. Run in a process whose zoneinfo search path is empty (``PYTHONTZPATH=``),
as on such an image.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import zoneinfo
assert zoneinfo.TZPATH == (), zoneinfo.TZPATH  # no system database, as on a slim image
from handlers.listening.stats import local_day, time_zone
from protocol.errors import CodedError
for name in ("UTC", "Europe/Berlin", "America/New_York", "Pacific/Kiritimati", "Etc/GMT+12"):
    time_zone(name)
# 2026-03-29 01:30 UTC is 03:30 in Berlin (clocks went forward at 02:00): the rules are there.
assert str(local_day(1_774_747_800_000, time_zone("Europe/Berlin"))) == "2026-03-29"
try:
    time_zone("Mars/Olympus_Mons")
except CodedError:
    pass
else:
    raise AssertionError("a made-up zone was taken")
print("ok")
"""


def test_time_zones_are_known_without_the_systems_database() -> None:
    env = {**os.environ, "PYTHONTZPATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
