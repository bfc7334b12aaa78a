"""Telegram's Bot API, the parts of it the server calls: a file's download, and a message the
webhook's answer cannot carry (:meth:`BotFiles.tell`).

``getFile`` names the file's path on Telegram's file server, then
``<api>/file/bot<token>/<file_path>`` serves its bytes, which stream into the blob store's
writer, capped as they arrive (Telegram hands bots files of at most 20 MB). Every call is bounded
in time. An answer is sorted into :class:`FetchLater` (the network, a 429 with its
``retry_after``, a 5xx: the same call may work later) or :class:`FetchFailed` (a 400, 401, 403 or
404, a file too big, a body that is no file path: it never will).

The bot's token is part of both URLs: it never leaves this module in a message (every text made
here from a library's error has it replaced), since those messages reach the log and the job's
outcome.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from storage.voice.blobs import BlobTooLarge, BlobWriter

# What Telegram's cloud Bot API lets a bot download (a local Bot API server allows more; the
# chunk's own cap, and the quota, stay the bounds then).
TELEGRAM_FILE_MAX_BYTES = 20 * 1024 * 1024
# getFile answers a few hundred bytes: more is no Bot API.
MAX_ANSWER_BYTES = 64 * 1024
# A retry_after beyond this is waited this long (a flood-control answer of hours would otherwise
# hold the material for as long).
RETRY_AFTER_MAX_S = 3600
# A call that hangs holds the end of its worker batch, and the jobs of the next (a getFile hanging
# 20 s and a file trickling at 20 bytes a second held another person's voice note and /done 131 s
# when fetches ran one after another: audit "tgfetch"). getFile answers in well under a second.
CALL_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5, sock_read=10)
# 20 MB at a slow 200 KB/s, and no read silent for longer than sock_read (Telegram's file server
# answers at once: a body silent 15 s held the worker 15 s per stalled file: audit "verify50").
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10, sock_read=5)
# ... and a download slower than this on average, once it has had MIN_RATE_AFTER_S to start, is
# cut and tried again later (FetchLater): Telegram serves files at megabytes a second.
MIN_RATE_BYTES_S = 32 * 1024
MIN_RATE_AFTER_S = 5.0
PIECE_BYTES = 64 * 1024
# A file path as getFile gives it ("voice/file_12.oga"): no way out of the bot's folder.
_FILE_PATH = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_./-]{0,255}$")
_GIVE_UP = frozenset({400, 401, 403, 404})


class FetchFailed(Exception):
    """The file cannot be fetched, now or later (its words are for the person: no token in them).

    ``operators``: only the server's operator can change it (Telegram refused the bot's token, the
    API address answers a redirect or a 404): the job is dead-lettered, to be run again once that
    is fixed. Otherwise it is the file's or the person's (too big, gone, not audio, a quota): the
    job is declined, said on the material, and nothing is raised to the operator."""

    def __init__(self, message: str, *, operators: bool = False) -> None:
        super().__init__(message)
        self.operators = operators


class FetchLater(Exception):
    """The file could not be fetched now; the same call may work later (``retry_after_s``:
    Telegram's own wait, from a 429)."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class TelegramFile:
    """A file as ``getFile`` describes it."""

    file_path: str
    file_size: int | None


class BotFiles:
    """Downloads of the bot's files from ``api_url`` (Telegram, a local Bot API server, a fake)."""

    def __init__(self, *, api_url: str, token: str, max_bytes: int = TELEGRAM_FILE_MAX_BYTES) -> None:
        if not token:
            raise ValueError("a bot token is needed to fetch files")
        self._api_url = api_url.rstrip("/")
        self._token = token
        self.max_bytes = max_bytes

    def redact(self, text: str) -> str:
        """``text`` without the bot's token (a library's error may quote the URL)."""
        return text.replace(self._token, "<token>")

    def _failed(self, exc: BaseException, what: str) -> FetchLater:
        detail = self.redact(str(exc) or type(exc).__name__)[:200]
        return FetchLater(f"{what}: {type(exc).__name__}: {detail}")

    async def locate(self, http: aiohttp.ClientSession, file_id: str) -> TelegramFile:
        """``getFile`` for ``file_id``: where its bytes are, and their size when Telegram says it."""
        url = f"{self._api_url}/bot{self._token}/getFile"
        try:
            async with http.post(url, json={"file_id": file_id}, timeout=CALL_TIMEOUT, allow_redirects=False) as reply:
                body = await reply.content.read(MAX_ANSWER_BYTES + 1)
                status, headers = reply.status, reply.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed(exc, "getFile did not answer") from None
        answer = _json(body) if len(body) <= MAX_ANSWER_BYTES else None
        _raise_for(status, answer, headers.get("Retry-After"), "getFile", self.redact)
        result = answer.get("result") if isinstance(answer, dict) and answer.get("ok") is True else None
        if not isinstance(result, dict):
            raise FetchLater(f"getFile answered {status} with no file in it")
        return self._described(result)

    def _described(self, result: dict[str, Any]) -> TelegramFile:
        path, size = result.get("file_path"), result.get("file_size")
        size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
        if size is not None and size > self.max_bytes:
            raise FetchFailed(f"the file is {size} bytes: a bot may download at most {self.max_bytes}")
        if not isinstance(path, str) or not _FILE_PATH.match(path) or ".." in path.split("/"):
            # Telegram leaves the path out of a file too big for bots to download.
            raise FetchFailed("Telegram gave no path to download the file by (too big for a bot, or gone)")
        return TelegramFile(file_path=path, file_size=size)

    async def tell(self, http: aiohttp.ClientSession, chat_id: int, text: str) -> bool:
        """``sendMessage`` of ``text`` to ``chat_id`` (10 s at most); whether Telegram took it.
        Never raises: a word to the person that does not arrive changes nothing stored."""
        url = f"{self._api_url}/bot{self._token}/sendMessage"
        try:
            body = {"chat_id": chat_id, "text": text}
            async with http.post(url, json=body, timeout=CALL_TIMEOUT, allow_redirects=False) as reply:
                return reply.status == 200
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False

    async def download(self, http: aiohttp.ClientSession, file: TelegramFile, writer: BlobWriter) -> None:
        """Stream the file into ``writer`` (its cap is checked as the bytes come, not after)."""
        url = f"{self._api_url}/file/bot{self._token}/{file.file_path}"
        try:
            async with http.get(url, timeout=DOWNLOAD_TIMEOUT, allow_redirects=False) as reply:
                if reply.status != 200:
                    body = await reply.content.read(MAX_ANSWER_BYTES)
                    _raise_for(
                        reply.status, _json(body), reply.headers.get("Retry-After"), "the file download", self.redact
                    )
                    raise FetchLater(f"the file download answered {reply.status}")
                length = reply.content_length
                if length is not None and length > writer.max_bytes:
                    raise FetchFailed(f"the file is {length} bytes: at most {writer.max_bytes} are taken")
                started = time.monotonic()
                async for piece in reply.content.iter_chunked(PIECE_BYTES):
                    writer.write(piece)
                    took = time.monotonic() - started
                    if took > MIN_RATE_AFTER_S and writer.size < MIN_RATE_BYTES_S * took:
                        raise FetchLater(f"the file download was too slow ({writer.size} bytes in {took:.0f} s)")
        except BlobTooLarge:
            raise FetchFailed(f"the file is more than {writer.max_bytes} bytes: not taken") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed(exc, "the file download was cut off") from None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _raise_for(status: int, answer: Any, retry_after: str | None, what: str, redact: Callable[[str], str]) -> None:
    """Raise what a non-success answer means; nothing for a 200. Telegram's ``description`` is
    said without the token (a server that echoes it put it on the page, the log and the dead
    letters: audit "tgfetch"). A redirect is never followed: one is no file, now or later."""
    if status == 200:
        return
    description = redact(str(answer.get("description", "")))[:200] if isinstance(answer, dict) else ""
    said = f"{what} answered {status}" + (f" ({description})" if description else "")
    if status == 429:
        raise FetchLater(said, retry_after_s=_retry_after_s(answer, retry_after))
    if status == 400:  # "Bad Request: file is too big", "…: invalid file_id": the file's
        raise FetchFailed(said)
    if status in _GIVE_UP or 300 <= status < 400 or (400 <= status < 500 and status not in (408, 425)):
        raise FetchFailed(said, operators=True)  # the token refused, a wrong API address
    raise FetchLater(said)


def _retry_after_s(answer: Any, header: str | None) -> float | None:
    """Telegram's wait: ``parameters.retry_after`` in the body, else the ``Retry-After`` header."""
    parameters = answer.get("parameters") if isinstance(answer, dict) else None
    value: Any = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if value is None and header is not None and header.isascii() and header.isdigit():
        value = int(header)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(min(value, RETRY_AFTER_MAX_S))
    return None
