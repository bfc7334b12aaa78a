"""The disk's reserve: no new audio while the blob folder's filesystem is nearly full.

Audio chunks are the only thing a client writes to this node's disk (the blob folder, or its
temporary files with the S3 store; chat-bot materials are kept in Redis). Each payer has a daily
quota, but guests are cheap and their addresses many: together they could fill the disk, and on a full
disk Redis's append-only file (the embedded one lives on the same disk, under ``DATA_DIR``) and
the logs fail with it, and every session with them. An upload is therefore refused before a
byte of its body is read when the filesystem would keep less than
``SESSIONHUB_VOICE_DISK_RESERVE_BYTES`` free after it: ``503 unavailable`` with ``reason:
"storage_full"`` and ``retry_after_s``, as when the disk itself refuses a file. Everything else
(events, edits, reads, deletions, which free room) goes on.

The free space is read (``statvfs``, a few microseconds) at most once per :data:`REFRESH_S`;
the uploads admitted since are subtracted from it, so a burst within one reading cannot pass
the reserve together.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from handlers.disk_room import existing
from handlers.errors import STORAGE_FULL
from protocol.errors import CodedError, ErrorCode

# How long one reading of the free space stands (uploads admitted meanwhile are subtracted).
REFRESH_S = 1.0
# What a refused client is told to wait: room is made by an operator or a deletion, not at once.
RETRY_AFTER_S = 60
MESSAGE = "the server's disk is nearly full; nothing was stored, try again later"


class Usage(Protocol):
    """What ``shutil.disk_usage`` answers, as far as this reads it."""

    @property
    def free(self) -> int: ...


class DiskReserve:
    """Whether an upload of ``incoming_bytes`` leaves ``reserve_bytes`` free on ``folder``'s disk."""

    def __init__(
        self,
        folder: Path,
        reserve_bytes: int,
        *,
        usage: Callable[[Path], Usage] = shutil.disk_usage,
        monotonic: Callable[[], float] = time.monotonic,
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self._folder = folder
        self.reserve_bytes = reserve_bytes
        self._usage = usage
        self._monotonic = monotonic
        self._on_refused = on_refused  # counted (sessionhub_disk_refusals_total{cause="reserve"})
        self._free = 0
        self._read_at = float("-inf")

    def _free_now(self) -> int:
        now = self._monotonic()
        if now - self._read_at >= REFRESH_S:
            try:
                self._free = self._usage(existing(self._folder)).free
            except OSError:
                return self.reserve_bytes + (1 << 62)  # unreadable: the write itself will tell
            self._read_at = now
        return self._free

    def admit(self, incoming_bytes: int) -> None:
        """Count ``incoming_bytes`` against the free space; ``unavailable`` (``storage_full``) when
        it would leave less than the reserve. A reserve of 0 admits everything."""
        if self.reserve_bytes <= 0:
            return
        free = self._free_now()
        if free - incoming_bytes < self.reserve_bytes:
            self._on_refused()
            raise CodedError(ErrorCode.UNAVAILABLE, MESSAGE, reason=STORAGE_FULL, retry_after_s=RETRY_AFTER_S)
        self._free = free - incoming_bytes  # until the next reading, which sees what was written
