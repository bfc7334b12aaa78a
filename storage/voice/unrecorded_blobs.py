"""Files in the blob folder that no record names: removed, a bounded batch of folders a pass.

An upload stores its chunk's file first and then its record (``handlers.voice.chunks``), so a
process killed in between (``kill -9``, a crash, the machine's power) leaves a file no chunk
names: counted in neither the session's ``storage_bytes`` nor anyone's quota, and kept until the
session is deleted (an audit: 3 such files in 14 kill rounds). A folder of a session that does
not exist (a deletion whose follow-up was lost with its note, an operator's copy, a restore)
stayed for good. :class:`UnrecordedBlobs` removes both, for the local store only (with S3 the
folder holds nothing but uploads' temporary files, which ``BlobStore.sweep_incoming`` sweeps):

- a chunk file (``<session_id>/<sha256>``) that the session's chunk digests do not name, once
  it is :data:`NO_SESSION_GRACE_S` old (a week: a Redis restored from an older backup names
  neither the files recorded since, and the operator may restore a later one);
- a session folder (``<session_id>``) whose session does not exist: its files, then the folder,
  only once its newest file is :data:`NO_SESSION_GRACE_S` old (a week), and never while the store
  holds no session at all. Such a folder is what a Redis that lost its data leaves (an emptied
  or truncated append-only file, a server pointed at a new Redis by mistake): the operator may
  yet restore that Redis from a backup, whose records name these files. Each pass that finds
  such folders says so in the log, once a pass.

Only files last written more than ``grace_s`` ago are taken, ``grace_s`` being an upload's body
deadline plus :data:`~storage.voice.blobs.INCOMING_GRACE_S`: an upload in flight (on any node
sharing the folder) has written its file within the deadline and records it within the grace
after, and a session being created right now has no folder yet (its first upload makes it, after
its record exists). Only names the server gives (a UUID v4 folder, a sha256 file) are touched.
Age is by the file's modification time on the real clock (the one the file system writes), as
for ``.incoming``, not the server's injectable one.

Every node runs it, possibly on one shared folder at once, so no step relies on having looked
before: a file is first *taken* -- renamed, atomically, to a fresh name in ``.incoming`` -- and
only the node whose rename succeeded goes on; the taken file's age is read again (an upload of the
same audio may have put a fresh copy in place since it was judged: that one is put back), and so
is its record, just before it is deleted. A process killed with a file taken leaves it in
``.incoming`` under a temporary file's name, old already: the ``.incoming`` sweep removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from storage.keys import Keys

log = logging.getLogger(__name__)

# The names the server gives (handlers.ids: a canonical UUID v4; a blob: its sha256 in hex).
_SESSION_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_BLOB_NAME = re.compile(r"^[0-9a-f]{64}$")
# Work of one pass: session folders looked into, and files whose record is read (a pass stops
# after the folder that reaches it), so a pass stays short on a disk of a million chunks.
FOLDERS_PER_PASS = 200
FILES_PER_PASS = 2000
# Why a file was removed (the label of sessionhub_blob_files_removed_total).
NO_SESSION = "no_session"
NO_RECORD = "no_record"
# How long a folder whose session does not exist is kept after its newest file was written: time
# for an operator to restore a Redis that lost data (see the module's doc).
NO_SESSION_GRACE_S = 7 * 86_400.0


@dataclass(slots=True)
class Swept:
    """What one pass removed: files by why, and session folders."""

    no_session: int = 0
    no_record: int = 0
    folders: int = 0


class BlobFolder:
    """The blocking file-system steps of the sweep, on ``root`` (run them in a thread)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def session_folders(self) -> list[str]:
        """The session folders there are now (names the server gives only)."""
        try:
            entries = list(os.scandir(self._root))
        except FileNotFoundError:
            return []
        return [e.name for e in entries if _SESSION_NAME.match(e.name) and e.is_dir(follow_symlinks=False)]

    def old_blobs(self, session_id: str, cutoff: float) -> list[str]:
        """The blob files of the folder last written before ``cutoff`` (a ``time.time()``)."""
        try:
            entries = list(os.scandir(self._root / session_id))
        except (FileNotFoundError, NotADirectoryError):
            return []
        old = []
        for entry in entries:
            if not _BLOB_NAME.match(entry.name):
                continue
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    old.append(entry.name)
        return old

    def take(self, session_id: str, sha256: str, cutoff: float) -> Path | None:
        """Move the file out of its place when it is still old; where it went, or None (gone,
        taken by another node, or a fresh copy an upload put there, which is put back)."""
        incoming = self._root / ".incoming"
        incoming.mkdir(exist_ok=True)
        taken = incoming / uuid.uuid4().hex  # a temporary file's name: a killed sweep's is swept
        try:
            os.rename(self._root / session_id / sha256, taken)
        except FileNotFoundError:
            return None
        if taken.stat().st_mtime >= cutoff:  # an upload's copy since it was judged old: its own
            self.put_back(taken, session_id, sha256)
            return None
        return taken

    def put_back(self, taken: Path, session_id: str, sha256: str) -> None:
        """Return a taken file to its place (a copy put there meanwhile has the same bytes)."""
        try:
            os.replace(taken, self._root / session_id / sha256)
        except FileNotFoundError:  # its folder went with its session meanwhile
            taken.unlink(missing_ok=True)

    def newest_write(self, session_id: str) -> float:
        """When the folder's newest file was last written (``time.time()``), 0 when it has none."""
        newest = 0.0
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(self._root / session_id):
                with contextlib.suppress(FileNotFoundError):
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
        return newest

    def remove_folder(self, session_id: str) -> bool:
        """Remove the folder when it holds nothing (a file younger than the grace keeps it)."""
        try:
            (self._root / session_id).rmdir()
        except OSError:  # not empty, or gone already
            return False
        return True


class UnrecordedBlobs:
    """Removes the blob folder's files no record names, :data:`FOLDERS_PER_PASS` folders a pass."""

    def __init__(self, *, root: Path, redis: Redis, keys: Keys, grace_s: float) -> None:
        self._folder = BlobFolder(root)
        self._redis = redis
        self._keys = keys
        self.grace_s = grace_s
        self.no_session_grace_s = max(grace_s, NO_SESSION_GRACE_S)
        self._due: list[str] = []  # folders not yet looked into in this round over the folder
        self.kept_without_session = 0  # folders of sessions that do not exist, kept in the last round
        self._kept_round = 0  # ... so far in this round over the folder
        self._store_empty = False

    async def sweep(self) -> Swept:
        """One pass: the next folders of the round (a new listing once the last round is done)."""
        swept = Swept()
        if not self._due:
            self._due = await asyncio.to_thread(self._folder.session_folders)
        # A store with no session at all is a Redis that lost its data, or a new one: the files
        # are all that is left of those sessions, and none is removed as sessionless.
        self._store_empty = not await self._redis.exists(self._keys.all_sessions())
        checked = 0
        for _ in range(FOLDERS_PER_PASS):
            if not self._due or checked >= FILES_PER_PASS:
                break
            checked += await self._sweep_folder(self._due.pop(), swept)
        if not self._due:  # a round over the whole folder ended: said when its count changed
            kept, self._kept_round = self._kept_round, 0
            if kept and kept != self.kept_without_session:
                log.warning(
                    "%d audio folder(s) of sessions that do not exist are kept: removed once their newest file "
                    "is a week old, never while the store holds no session (a Redis that lost its data: "
                    "restore it from a backup)",
                    kept,
                )
            self.kept_without_session = kept
        return swept

    async def _sweep_folder(self, session_id: str, swept: Swept) -> int:
        """Remove the folder's unrecorded old files (and the folder, with no session); how many
        files were looked at."""
        exists = bool(await self._redis.exists(self._keys.session(session_id)))
        # A file no record names in a session that exists is a killed upload's, or one recorded
        # after the backup a Redis was restored from: kept a week, as a folder without a session
        # is. Taken after the upload's grace, such audio was gone eight minutes after a restore of
        # the wrong backup (audit "restore"); a killed upload's file costs its disk that week.
        cutoff = time.time() - (self.no_session_grace_s if exists else self.grace_s)
        if not exists and (
            self._store_empty
            or await asyncio.to_thread(self._folder.newest_write, session_id) > time.time() - self.no_session_grace_s
        ):
            self._kept_round += 1
            return 1
        old = await asyncio.to_thread(self._folder.old_blobs, session_id, cutoff)
        for sha256 in await self._unrecorded(session_id, old) if exists else old:
            if await self._remove(session_id, sha256, cutoff):
                if exists:
                    swept.no_record += 1
                else:
                    swept.no_session += 1
        if not exists and await asyncio.to_thread(self._folder.remove_folder, session_id):
            swept.folders += 1
        return len(old)

    async def _unrecorded(self, session_id: str, shas: list[str]) -> list[str]:
        if not shas:
            return []
        named: Any = await self._redis.hmget(self._keys.voice_chunk_digests(session_id), shas)
        return [sha for sha, chunk_id in zip(shas, named, strict=True) if chunk_id is None]

    async def _remove(self, session_id: str, sha256: str, cutoff: float) -> bool:
        taken = await asyncio.to_thread(self._folder.take, session_id, sha256, cutoff)
        if taken is None:
            return False
        # Read again once the file is out of reach: a chunk recorded since keeps it.
        recorded: Any = await self._redis.hexists(self._keys.voice_chunk_digests(session_id), sha256)
        if recorded:
            await asyncio.to_thread(self._folder.put_back, taken, session_id, sha256)
            return False
        taken.unlink(missing_ok=True)
        return True
