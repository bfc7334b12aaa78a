"""gzip copies of the pages' text files (HTML, JS, CSS), made once per version of a file, in memory.

A phone on a slow network pays for every byte: measured on 'Slow 3G' (50 kB/s), ``/`` took
197,057 bytes of scripts and stylesheet, 62,940 once gzipped. Compressing on every request would
spend the CPU again for the same bytes, and files written beside the originals (what
``web.FileResponse`` can serve) would change the checkout or the installed package at run time:
so each file is compressed the first time it is asked for and kept here, under the version it
was read at (its modification time and size, as its ETag), until the file changes.

The store is bounded (:data:`MAX_TOTAL_BYTES` of compressed copies, least recently used first
out, and no file over :data:`MAX_FILE_BYTES`): ``web/`` is about 450 KB, so every copy fits
many times over, and a folder that grows past that costs a compression now and then, never memory.
"""

from __future__ import annotations

import asyncio
import gzip
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

# What is worth compressing: text. Images, audio and fonts are compressed already.
COMPRESSIBLE_SUFFIXES = frozenset({".html", ".js", ".css", ".json", ".svg", ".txt", ".map"})
MAX_FILE_BYTES = 1024 * 1024
MAX_TOTAL_BYTES = 8 * 1024 * 1024
# Once per version of a file, so the smallest output is worth the CPU; mtime=0 keeps it
# byte-for-byte the same for the same input.
GZIP_LEVEL = 9


@dataclass(frozen=True)
class Version:
    """Which content of a file a copy was made from: what its identity ETag is built of."""

    mtime_ns: int
    size: int

    @property
    def mtime_s(self) -> float:
        """The modification time in seconds (a ``Last-Modified``)."""
        return self.mtime_ns / 1e9


@dataclass(frozen=True)
class Compressed:
    """A file's gzip copy and the version of the file it was made from; an empty body when the
    copy was no smaller than the file (kept all the same, so it is not compressed again)."""

    body: bytes
    version: Version


def compressible(path: Path) -> bool:
    """Whether ``path`` names a kind of file this store compresses (by its suffix)."""
    return path.suffix.lower() in COMPRESSIBLE_SUFFIXES


def _version(st: os.stat_result) -> Version:
    return Version(mtime_ns=st.st_mtime_ns, size=st.st_size)


def _current(path: Path) -> Version | None:
    """The version of ``path`` now, or None when it is no regular file small enough to compress,
    or is reached through a symlink (``path`` is resolved: whatever a link points at is not ours
    to judge, the file route does)."""
    try:
        if path.resolve(strict=True) != path:
            return None
        st = path.stat()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, before Python 3.13
        return None
    if not S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
        return None
    return _version(st)


def _compress(path: Path) -> Compressed | None:
    """Read and compress ``path``; the version is the one read (fstat of the open file), so a
    file replaced meanwhile is recorded as what was compressed, never as what was stat'ed."""
    try:
        with path.open("rb") as fobj:
            st = os.fstat(fobj.fileno())
            if not S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
                return None
            data = fobj.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(data) != st.st_size:
        return None  # written to while read: the next request reads it again
    body = gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
    return Compressed(body if len(body) < len(data) else b"", _version(st))


class CompressedFiles:
    """The gzip copies, each made once per version of its file (module docstring)."""

    def __init__(self, *, max_total_bytes: int = MAX_TOTAL_BYTES) -> None:
        self._max_total_bytes = max_total_bytes
        self._copies: OrderedDict[Path, Compressed] = OrderedDict()
        self._total_bytes = 0
        # One compression per file at a time: the first request of a cold page asks for the
        # same script from many tabs at once.
        self._making: dict[Path, asyncio.Future[Compressed | None]] = {}
        self.compressions = 0  # how many files were compressed (tests check 'once')

    async def get(self, path: Path) -> Compressed | None:
        """The gzip copy of ``path`` as it is now; None when it is not to be compressed (not a
        regular file, too large, or its copy would be no smaller): the caller sends the file."""
        loop = asyncio.get_running_loop()
        version = await loop.run_in_executor(None, _current, path)
        if version is None:
            return None
        kept = self._copies.get(path)
        if kept is None or kept.version != version:
            kept = await self._make(path)
        else:
            self._copies.move_to_end(path)
        return kept if kept is not None and kept.body else None

    async def _make(self, path: Path) -> Compressed | None:
        making = self._making.get(path)
        if making is None:
            making = asyncio.get_running_loop().run_in_executor(None, _compress, path)
            self._making[path] = making
            making.add_done_callback(lambda _: self._making.pop(path, None))
            self.compressions += 1
        made = await asyncio.shield(making)
        if made is not None:
            # The version read, which may be newer than the one stat'ed: still what is sent.
            self._keep(path, made)
        return made

    def _keep(self, path: Path, made: Compressed) -> None:
        old = self._copies.pop(path, None)
        if old is not None:
            self._total_bytes -= len(old.body)
        if len(made.body) > self._max_total_bytes:
            return
        self._copies[path] = made
        self._total_bytes += len(made.body)
        while self._total_bytes > self._max_total_bytes:
            _, dropped = self._copies.popitem(last=False)
            self._total_bytes -= len(dropped.body)

    @property
    def total_bytes(self) -> int:
        """The bytes the kept copies hold."""
        return self._total_bytes
