"""Listening export: a whole history streamed page by page, as one JSON document or CSV.

Only one page of sessions is in memory at a time; each page is written (waiting while the
client is slow to read) before the next is read, so a large export never holds the loop or
the whole history, and a client that goes away stops the reading.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from handlers.listening.payloads import MAX_MS
from handlers.per_user_slots import PerUserSlots
from storage.listening.repository import ListeningHistories

log = logging.getLogger(__name__)

EXPORT_CAP = 100_000
# Sessions read and written per step: a few hundred KB of output at the item metadata's largest.
EXPORT_PAGE = 200
# Exports one user may run at once on one server process (a third is refused with 429).
EXPORTS_PER_USER = 2
EXPORT_RETRY_AFTER_S = 10
CSV_COLUMNS = (
    "id",
    "item_id",
    "title",
    "artist",
    "album",
    "device_id",
    "started_at",
    "ended_at",
    "duration_ms",
    "started_at_utc",
    "ended_at_utc",
    "start_position_s",
    "end_position_s",
    "source",
    "client_id",
    # Last, so older readers' columns keep their places: ``true`` for a session still playing,
    # whose ``ended_at`` / ``duration_ms`` are its last report so far (JSON's ``open``).
    "open",
)
_JSON_SEPARATORS = (",", ":")


class ListeningExports:
    """Streams users' exports, at most ``EXPORTS_PER_USER`` per user at once."""

    def __init__(self, histories: ListeningHistories) -> None:
        self._h = histories
        self._slots = PerUserSlots("exports", EXPORTS_PER_USER, EXPORT_RETRY_AFTER_S)

    async def respond(
        self, request: web.Request, *, user_id: str, history_id: str | None, fmt: str, bom: bool = False
    ) -> web.StreamResponse:
        """Stream ``history_id`` (None: an empty export) to ``request`` as ``fmt`` (json or csv; a
        CSV first with a UTF-8 BOM when ``bom``, for Excel)."""
        with self._slots.slot(user_id):
            response = web.StreamResponse(
                headers={"Content-Disposition": f'attachment; filename="listening-history.{fmt}"'}
            )
            response.content_type = "application/json" if fmt == "json" else "text/csv"
            response.charset = "utf-8"
            await response.prepare(request)
            chunks = (
                _json_chunks(user_id, self._rows(history_id))
                if fmt == "json"
                else _csv_chunks(self._rows(history_id), bom=bom)
            )
            try:
                await _send(request, response, chunks)
            except ConnectionResetError:
                pass  # the client went away: nothing more to read or write
            except Exception:
                # Headers are out: no error answer fits any more; a cut-off body tells the client.
                log.exception("listening export of %s failed midway", history_id)
                if request.transport is not None:
                    request.transport.close()
            return response

    async def _rows(self, history_id: str | None) -> AsyncIterator[list[dict[str, Any]]]:
        if history_id is None:
            return
        pages = self._h.newest_first(history_id, from_ms=0, to_ms=MAX_MS, page_size=EXPORT_PAGE, cap=EXPORT_CAP)
        async for page in pages:
            meta = await self._h.metadata(history_id, [s.item_id for s in page])
            yield [s.public(meta.get(s.item_id)) for s in page]


async def _send(request: web.Request, response: web.StreamResponse, chunks: AsyncGenerator[str, None]) -> None:
    async with aclosing(chunks):
        async for chunk in chunks:
            if request.transport is None or request.transport.is_closing():
                return
            await response.write(chunk.encode())
            await asyncio.sleep(0)  # a page's worth of work per turn, however fast the client reads
    await response.write_eof()


async def _json_chunks(user_id: str, pages: AsyncIterator[list[dict[str, Any]]]) -> AsyncGenerator[str, None]:
    """The bytes ``json.dumps({"user_id", "sessions": [...]}, separators=(",", ":"))`` would give."""
    yield '{"user_id":' + json.dumps(user_id) + ',"sessions":['
    first = True
    async for rows in pages:
        if not rows:
            continue
        body = ",".join(json.dumps(row, separators=_JSON_SEPARATORS) for row in rows)
        yield body if first else "," + body
        first = False
    yield "]}"


async def _csv_chunks(pages: AsyncIterator[list[dict[str, Any]]], *, bom: bool) -> AsyncGenerator[str, None]:
    yield ("\ufeff" if bom else "") + _csv_text([CSV_COLUMNS])
    async for rows in pages:
        yield _csv_text([_csv_row(row) for row in rows])


def _csv_text(rows: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def _csv_row(row: dict[str, Any]) -> list[str]:
    extended = {**row, "started_at_utc": _iso(row["started_at"]), "ended_at_utc": _iso(row["ended_at"])}
    return [_cell(extended.get(column)) for column in CSV_COLUMNS]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as in the JSON export, not Python's True/False
    text = "" if value is None else str(value)
    # A cell starting like a formula would run in a spreadsheet: keep it text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
