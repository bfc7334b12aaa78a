"""The blob store: a session's audio chunks, named by their sha256, behind one interface.

Two backends (``SESSIONHUB_VOICE_BLOB_STORE``):

- ``local`` (:class:`BlobStore`, the default): files on this node's disk, one folder per
  session. Enough for one node; with several, only the node that took an upload has the file.
- ``s3`` (:class:`S3BlobStore`): objects in an S3-compatible bucket every node reaches, so any
  node serves the audio and any worker transcribes it (issue 24, item 4).

Either way a file is first written to a local temporary name while it streams in (hashed and
size-capped as it goes; the format probe reads it there) and only then committed: renamed into
place, or uploaded. A reader never sees half a blob. Removing a session's blobs removes every
blob it owns (retention follows the session). Content-addressed blobs never change, so a copy
of one is as good as the original.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from storage.voice.s3_calls import S3Calls, client_config, describe


# How long past its body's deadline (SESSIONHUB_VOICE_UPLOAD_DEADLINE_S) an upload may still use
# its temporary file: probed, then moved into place or sent to the bucket (at most
# S3_CALL_DEADLINE_S). A file unwritten for longer is no upload's.
INCOMING_GRACE_S = 300.0
# The temporary files' names (BlobStore.writer): only these are ever swept.
_INCOMING_NAME = re.compile(r"^[0-9a-f]{32}$")


class BlobTooLarge(Exception):
    """The stream went past the cap; nothing was kept."""


class BlobWriter:
    """One incoming blob: append pieces, then :meth:`commit` it or :meth:`discard` it."""

    def __init__(self, temp_path: Path, max_bytes: int) -> None:
        self.temp_path = temp_path
        self.max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0
        self._file = temp_path.open("wb")

    def write(self, piece: bytes) -> None:
        """Append ``piece``; raises :class:`BlobTooLarge` (and discards) past the cap."""
        self.size += len(piece)
        if self.size > self.max_bytes:
            self.discard()
            raise BlobTooLarge(f"the file is limited to {self.max_bytes} bytes")
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


@dataclass(frozen=True, slots=True)
class Fetched:
    """A blob (or the asked range of it) to serve: a local ``path``, or the bytes in ``body``."""

    path: Path | None = None
    body: bytes = b""
    status: int = 200  # 206 for a range
    size: int = 0  # the whole blob's size
    content_range: str = ""  # "bytes a-b/size" for a range


class Blobs(Protocol):
    """What the voice handlers and jobs use, whichever backend holds the audio."""

    def writer(self, max_bytes: int) -> BlobWriter:
        """A local writer for a new blob of at most ``max_bytes`` (committed with :meth:`commit`)."""
        ...

    async def commit(self, writer: BlobWriter, session_id: str, *, content_type: str = "") -> None:
        """Put a finished blob in place (same content, same name: replacing is harmless);
        ``content_type``: what the file was sniffed to be, kept where the backend keeps one."""
        ...

    async def remove(self, session_id: str, sha256: str) -> None:
        """Drop one blob."""
        ...

    async def remove_session(self, session_id: str) -> None:
        """Drop every blob of a session."""
        ...

    async def prune(self, session_id: str) -> None:
        """Drop what an upload that lost a race with its session's deletion left of the session
        (an empty folder); the blob itself is dropped with :meth:`remove`."""
        ...

    async def fetch(self, session_id: str, sha256: str, byte_range: str | None) -> Fetched | None:
        """The blob to serve (``byte_range``: the request's ``Range`` header), None when missing."""
        ...

    def as_file(self, session_id: str, sha256: str) -> Any:
        """``async with`` a local path of the blob (for a command that reads files), None when missing."""
        ...

    def sweep_incoming(self, older_than_s: float) -> int:
        """Remove the temporary files of uploads cut short (blocking: run it in a thread)."""
        ...

    async def check(self) -> str | None:
        """A warning line when the store cannot be used as configured (said at start), else None."""
        ...

    def trouble(self) -> str | None:
        """Why this process's last call to the store failed, while none went through since (the
        operator's ``blob_store`` alert), else None."""
        ...

    def close(self) -> None:
        """Let go of what the store holds (its threads), once the process is done with it."""
        ...


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

    async def commit(self, writer: BlobWriter, session_id: str, *, content_type: str = "") -> None:
        """Move a finished blob into place (same content, same name: replacing is harmless; a
        file keeps no type: the chunk's record says it)."""
        await asyncio.to_thread(self._commit, writer, session_id)

    def _commit(self, writer: BlobWriter, session_id: str) -> None:
        writer.close()
        target = self.path(session_id, writer.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(writer.temp_path, target)

    async def remove(self, session_id: str, sha256: str) -> None:
        """Drop one blob."""
        self.path(session_id, sha256).unlink(missing_ok=True)

    async def prune(self, session_id: str) -> None:
        """Drop the session's folder when it holds nothing (an upload that lost a race with the
        session's deletion created it anew)."""
        with contextlib.suppress(OSError):  # not empty, or already gone: nothing to do
            (self._root / session_id).rmdir()

    async def remove_session(self, session_id: str) -> None:
        """Drop every blob of a session."""
        await asyncio.to_thread(shutil.rmtree, self._root / session_id, True)

    async def fetch(self, session_id: str, sha256: str, byte_range: str | None) -> Fetched | None:
        """The file itself (the web server answers ranges of a file)."""
        path = self.path(session_id, sha256)
        return Fetched(path=path) if path.is_file() else None

    @asynccontextmanager
    async def as_file(self, session_id: str, sha256: str) -> AsyncIterator[Path | None]:
        """The file where it lies."""
        path = self.path(session_id, sha256)
        yield path if path.is_file() else None

    def sweep_incoming(self, older_than_s: float) -> int:
        """Remove the temporary files last written more than ``older_than_s`` ago; how many.

        An upload cut short by its own failure removes its file, but one whose process was killed
        (``kill -9``, a crash, the machine's power) leaves it for good, counted in no quota. An
        upload in progress, on this node or another sharing the folder, wrote its file within
        its body's deadline and uses it for at most :data:`INCOMING_GRACE_S` more: ``older_than_s``
        is at least their sum, so its file is never taken. Age is by the file's modification time
        on the real clock (the one the file system writes), not the server's injectable one.
        """
        removed = 0
        cutoff = time.time() - older_than_s
        try:
            entries = list(os.scandir(self._root / ".incoming"))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if not _INCOMING_NAME.match(entry.name):
                continue
            with contextlib.suppress(FileNotFoundError):  # committed or swept meanwhile
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    async def check(self) -> str | None:
        """Nothing to say: the folder is made as needed, and a full disk is said elsewhere."""
        return None

    def trouble(self) -> str | None:
        """Nothing to say: a full disk is the ``disk`` alert's."""
        return None

    def close(self) -> None:
        """Nothing to let go of: files are read and written on the callers' threads."""

    def session_bytes(self, session_id: str) -> int:
        """Bytes on disk for the session (what retention frees)."""
        folder = self._root / session_id
        if not folder.is_dir():
            return 0
        return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Where the S3 backend keeps blobs: ``<prefix><session_id>/<sha256>`` in ``bucket``."""

    bucket: str
    endpoint_url: str = ""  # empty: AWS itself; else any S3-compatible service (MinIO, Ceph, R2...)
    region: str = "us-east-1"
    prefix: str = "voice/"
    access_key_id: str = ""  # empty: boto3's own chain (AWS_* variables, instance roles...)
    secret_access_key: str = ""


# What S3 says of a key that is not there (get_object, and head_object under download_file).
_MISSING = ("NoSuchKey", "404", "NotFound")
# How long the start-up look at the bucket waits (the node starts meanwhile, it never waits).
CHECK_DEADLINE_S = 5.0
# head_bucket has no body: only its status says why.
_HEAD_FAULTS = {
    "404": "no such bucket",
    "NoSuchBucket": "no such bucket",
    "403": "access refused (check the credentials and the bucket's policy)",
    "301": "the bucket is in another region (SESSIONHUB_VOICE_S3_REGION)",
    "400": "the request was refused (check the region and the endpoint)",
}


class S3BlobStore:
    """Blobs in an S3-compatible bucket, through boto3 (the maintained AWS SDK) in threads.

    boto3 blocks, so each call runs on a thread of the store's own bounded pool
    (:class:`~storage.voice.s3_calls.S3Calls`: a bucket that hangs holds those threads, never
    the ones pages are served from), with a deadline; its client is thread-safe and shared.
    """

    def __init__(self, local_root: Path, settings: S3Settings, *, calls: S3Calls | None = None) -> None:
        import boto3  # only a node configured for S3 needs the library (extra "s3")

        self._local = BlobStore(local_root)  # temporary files while an upload streams in
        self._settings = settings
        self._calls = calls or S3Calls()
        self._client = boto3.client(
            "s3",
            endpoint_url=settings.endpoint_url or None,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id or None,
            aws_secret_access_key=settings.secret_access_key or None,
            config=client_config(),
        )

    def _key(self, session_id: str, sha256: str = "") -> str:
        return f"{self._settings.prefix}{session_id}/{sha256}"

    def writer(self, max_bytes: int) -> BlobWriter:
        return self._local.writer(max_bytes)

    def sweep_incoming(self, older_than_s: float) -> int:
        """The temporary files are local (the upload streams there before going to the bucket)."""
        return self._local.sweep_incoming(older_than_s)

    async def commit(self, writer: BlobWriter, session_id: str, *, content_type: str = "") -> None:
        """Upload the finished blob in one PUT, then drop its temporary file."""
        from boto3.s3.transfer import TransferConfig

        writer.close()
        # One PUT whatever the size up to the cap: boto3 sends a multipart upload from 8 MiB, whose
        # parts a cut-off upload leaves in the bucket, billed, until a lifecycle rule aborts them.
        # In the calling thread (no threads of s3transfer's own): the store's pool is the bound.
        one_put = TransferConfig(multipart_threshold=writer.max_bytes + 1, use_threads=False)
        extra = {"ContentType": content_type} if content_type else None
        try:
            key = self._key(session_id, writer.sha256)
            await self._calls.run(
                self._client.upload_file,
                str(writer.temp_path),
                self._settings.bucket,
                key,
                ExtraArgs=extra,
                Config=one_put,
            )
        finally:
            writer.discard()

    async def remove(self, session_id: str, sha256: str) -> None:
        key = self._key(session_id, sha256)
        await self._calls.run(self._client.delete_object, Bucket=self._settings.bucket, Key=key)

    async def prune(self, session_id: str) -> None:
        """Nothing to do: a bucket has no folders, and the racing blob was removed."""

    async def remove_session(self, session_id: str) -> None:
        """Delete every object under the session's prefix, a listing page (<= 1000) at a time."""
        await self._calls.run(self._remove_session, session_id)

    def _remove_session(self, session_id: str) -> None:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._settings.bucket, Prefix=self._key(session_id)):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:
                self._client.delete_objects(Bucket=self._settings.bucket, Delete={"Objects": objects, "Quiet": True})

    async def fetch(self, session_id: str, sha256: str, byte_range: str | None) -> Fetched | None:
        """The object, or the range asked for (S3 answers ranges itself: players seek)."""
        return await self._calls.run(self._fetch, session_id, sha256, byte_range)

    def _fetch(self, session_id: str, sha256: str, byte_range: str | None) -> Fetched | None:
        from botocore.exceptions import ClientError

        options: dict[str, Any] = {"Bucket": self._settings.bucket, "Key": self._key(session_id, sha256)}
        if byte_range:
            options["Range"] = byte_range
        try:
            found = self._client.get_object(**options)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _MISSING:
                return None
            if code == "InvalidRange":
                return Fetched(status=416)
            raise
        body = found["Body"].read()
        content_range = str(found.get("ContentRange") or "")
        size = int(content_range.rpartition("/")[2]) if content_range else len(body)
        return Fetched(body=body, status=206 if content_range else 200, size=size, content_range=content_range)

    @asynccontextmanager
    async def as_file(self, session_id: str, sha256: str) -> AsyncIterator[Path | None]:
        """A temporary local copy for the length of the ``async with`` (None when missing)."""
        folder = Path(tempfile.mkdtemp(prefix="sessionhub-blob-"))
        path = folder / sha256
        try:
            found = await self._calls.run(self._download, self._key(session_id, sha256), path)
            yield path if found else None
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _download(self, key: str, path: Path) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.download_file(self._settings.bucket, key, str(path))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") not in _MISSING:
                raise
            return False
        return True

    async def check(self) -> str | None:
        """Whether the bucket answers (one ``head_bucket``, bounded): a warning line, or None."""
        fault = await self._calls.probe(
            CHECK_DEADLINE_S, partial(self._client.head_bucket, Bucket=self._settings.bucket), _head_fault
        )
        return None if fault is None else self._said(fault)

    def trouble(self) -> str | None:
        """The bucket's last refusal or silence on this process, while no call went through since."""
        fault = self._calls.trouble
        return None if fault is None else self._said(fault)

    def _said(self, fault: str) -> str:
        where = f"the S3 audio bucket {self._settings.bucket!r} at {self._settings.endpoint_url or 'AWS'}"
        return f"{where}: {fault}; chunk uploads and plays are refused (503) until it answers"

    def close(self) -> None:
        """Stop the store's threads (calls still running end on their own)."""
        self._calls.close()


def _head_fault(exc: BaseException) -> str:
    """Why ``head_bucket`` failed, in words (it has no body: only its status says)."""
    response = getattr(exc, "response", None)
    code = str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    return _HEAD_FAULTS.get(code) or describe(exc)


def open_blobs(local_root: Path, s3: S3Settings | None) -> Blobs:
    """The configured backend: S3 when ``s3`` is given, else the local folder."""
    return S3BlobStore(local_root, s3) if s3 is not None else BlobStore(local_root)
