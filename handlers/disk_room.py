"""The room left on this node's disks: the audio folder's and the data folder's, against the
reserve an audio upload must leave free (``SESSIONHUB_VOICE_DISK_RESERVE_BYTES``).

With less free than the reserve every chunk upload is refused ``503 storage_full``
(handlers/voice/disk_reserve.py), and with none at all the embedded Redis's append-only file
(under the data folder) fails and every write with it: an operator must hear of it before the
users do. Said at start (a WARNING per disk short of room), in ``GET /admin/alerts`` and the
``/admin`` page (the ``disk`` alert), and counted in ``sessionhub_disk_refusals_total{cause}``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import Counter

log = logging.getLogger(__name__)

RESERVE_SETTING = "SESSIONHUB_VOICE_DISK_RESERVE_BYTES"
# Causes of a refused upload: under the reserve (refused before a byte was read), or the disk
# itself refused the file (full, a quota, a file-size limit).
RESERVE = "reserve"
DISK_FULL = "disk_full"


def existing(folder: Path) -> Path:
    """The folder, or its nearest existing parent (the audio folder is made at the first upload)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return folder


def _size(n: int) -> str:
    """``n`` bytes as an operator reads them (``119.0 KiB``)."""
    value, unit = float(n), "bytes"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


@dataclass(frozen=True, slots=True)
class Shortfall:
    """One disk with less free than the reserve: the folders on it and its figures."""

    folders: tuple[str, ...]  # "audio", "data"
    path: str
    free_bytes: int
    total_bytes: int
    reserve_bytes: int

    def message(self) -> str:
        """What an operator reads (the alert's message, the start-up warning)."""
        where = f"the {' and '.join(self.folders)} folder{'s' if len(self.folders) > 1 else ''} ({self.path})"
        if self.reserve_bytes > self.total_bytes:
            return (
                f"Storage approaching limit: the reserve of {_size(self.reserve_bytes)} ({RESERVE_SETTING}) is larger"
                f" than the whole disk of {where}, {_size(self.total_bytes)}: every audio upload is refused"
                f" (503 storage_full) however much is freed; lower {RESERVE_SETTING}"
            )
        return (
            f"Storage approaching limit: the disk of {where} has {_size(self.free_bytes)} free of"
            f" {_size(self.total_bytes)}, under the reserve of {_size(self.reserve_bytes)} ({RESERVE_SETTING}):"
            " audio uploads are refused (503 storage_full) until room is made"
        )

    def values(self) -> dict[str, Any]:
        """The alert's figures."""
        return {
            "folders": list(self.folders),
            "path": self.path,
            "free_bytes": self.free_bytes,
            "total_bytes": self.total_bytes,
            "reserve_bytes": self.reserve_bytes,
        }


class DiskRoom:
    """The disks of ``folders`` (by name) against ``reserve_bytes``; counts refused uploads."""

    def __init__(
        self,
        folders: Mapping[str, Path],
        reserve_bytes: int,
        *,
        refusals: Counter,
        usage: Callable[[Path], Any] = shutil.disk_usage,
    ) -> None:
        self._folders = dict(folders)
        self.reserve_bytes = reserve_bytes
        self._refusals = refusals
        self._usage = usage

    def refuse(self, cause: str) -> None:
        """Count one upload refused for want of room (``reserve`` or ``disk_full``)."""
        self._refusals.labels(cause).inc()

    def shortfalls(self) -> list[Shortfall]:
        """Each disk (one per filesystem, naming every folder on it) with less free than the
        reserve; none with a reserve of 0 or when a disk cannot be read."""
        if self.reserve_bytes <= 0:
            return []
        disks: dict[int, tuple[list[str], Path]] = {}
        for name, folder in self._folders.items():
            found = existing(folder)
            try:
                device = os.stat(found).st_dev
            except OSError:
                continue
            disks.setdefault(device, ([], found))[0].append(name)
        short: list[Shortfall] = []
        for names, path in disks.values():
            try:
                usage = self._usage(path)
            except OSError:
                continue
            if usage.free < self.reserve_bytes:
                short.append(Shortfall(tuple(names), str(path), usage.free, usage.total, self.reserve_bytes))
        return short

    def register(self, app: web.Application) -> None:
        """Say at start, once per disk, when it already has less free than the reserve."""

        async def warn(_: web.Application) -> None:
            for shortfall in self.shortfalls():
                log.warning("%s", shortfall.message())

        app.on_startup.append(warn)
