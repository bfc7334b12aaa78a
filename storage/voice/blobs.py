"""The blob store: audio files on disk, one folder per session, named by their sha256.

A file is written to a temporary name while it streams in (hashed and size-capped as it goes)
and moved into place with one rename, so a reader never sees half a file. Removing a session's
folder removes every blob it owns (retention follows the session).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from pathlib import Path


class BlobTooLarge(Exception):
    """The stream went past the cap; nothing was kept."""


class BlobWriter:
    """One incoming blob: append pieces, then :meth:`commit` it or :meth:`discard` it."""

    def __init__(self, temp_path: Path, max_bytes: int) -> None:
        self.temp_path = temp_path
        self._max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0
        self._file = temp_path.open("wb")

    def write(self, piece: bytes) -> None:
        """Append ``piece``; raises :class:`BlobTooLarge` (and discards) past the cap."""
        self.size += len(piece)
        if self.size > self._max_bytes:
            self.discard()
            raise BlobTooLarge(f"the file is limited to {self._max_bytes} bytes")
        self._hash.update(piece)
        self._file.write(piece)

    @property
    def sha256(self) -> str:
        """Hex digest of what was written so far."""
        return self._hash.hexdigest()

    def close(self) -> None:
        """Flush the temporary file (it stays until commit or discard)."""
        if not self._file.closed:
            self._file.close()

    def discard(self) -> None:
        """Drop the temporary file."""
        self.close()
        self.temp_path.unlink(missing_ok=True)


class BlobStore:
    """Files under ``root/<session_id>/<sha256>``; temporary files under ``root/.incoming``."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def writer(self, max_bytes: int) -> BlobWriter:
        """A writer for a new blob of at most ``max_bytes``."""
        incoming = self._root / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        return BlobWriter(incoming / uuid.uuid4().hex, max_bytes)

    def path(self, session_id: str, sha256: str) -> Path:
        """Where the blob lives (ids are validated at the edge: a UUID and a hex digest)."""
        return self._root / session_id / sha256

    def commit(self, writer: BlobWriter, session_id: str) -> Path:
        """Move a finished blob into place (same content, same name: replacing is harmless)."""
        writer.close()
        target = self.path(session_id, writer.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(writer.temp_path, target)
        return target

    def remove(self, session_id: str, sha256: str) -> None:
        """Drop one blob."""
        self.path(session_id, sha256).unlink(missing_ok=True)

    def prune(self, session_id: str) -> None:
        """Drop the session's folder when it holds nothing (an upload that lost a race with the
        session's deletion created it anew)."""
        with contextlib.suppress(OSError):  # not empty, or already gone: nothing to do
            (self._root / session_id).rmdir()

    def remove_session(self, session_id: str) -> None:
        """Drop every blob of a session."""
        shutil.rmtree(self._root / session_id, ignore_errors=True)

    def session_bytes(self, session_id: str) -> int:
        """Bytes on disk for the session (what retention frees)."""
        folder = self._root / session_id
        if not folder.is_dir():
            return 0
        return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())
