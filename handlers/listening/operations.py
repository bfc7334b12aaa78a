"""Listening histories' HTTP routes as documented in /openapi.json (see handlers.openapi_registry).

Every route needs a bearer token (``read_own`` or ``read_all``) and serves the caller's own history.
"""

from __future__ import annotations

from functools import partial

from handlers.listening.answers import (
    HistoryCleared,
    ListeningDeleted,
    ListeningExport,
    ListeningHistory,
    ListeningPage,
    ListeningStats,
    ReportAck,
    UploadAck,
)
from handlers.listening.payloads import ClearBody, ExportQuery, PageQuery, ReportBody, StatsQuery, UploadBody
from handlers.openapi_registry import CSV, JSON, Operation, attachment

TAG = "listening"
READ = (400, 403, 503)
WRITE = (400, 403, 404, 409, 413, 429, 503)

_listening = partial(Operation, tag=TAG)

OPERATIONS: tuple[Operation, ...] = (
    _listening(
        "get",
        "/api/listening",
        "The caller's history session (made on first use), totals, open sessions",
        statuses=READ,
        response=ListeningHistory,
    ),
    _listening(
        "post",
        "/api/listening/report",
        "A player's status report",
        body=ReportBody,
        statuses=WRITE,
        response=ReportAck,
    ),
    _listening(
        "post",
        "/api/listening/upload",
        "An offline player's finished session (200 for a repeat)",
        body=UploadBody,
        statuses=WRITE,
        ok=(200, 201),
        response=UploadAck,
    ),
    _listening(
        "get",
        "/api/listening/sessions",
        "Sessions, newest first, by cursor",
        query=PageQuery,
        statuses=READ,
        response=ListeningPage,
    ),
    _listening(
        "delete",
        "/api/listening/sessions/{id}",
        "Delete one listening session",
        statuses=(400, 403, 404, 409, 503),
        response=ListeningDeleted,
    ),
    _listening(
        "post",
        "/api/listening/clear",
        "Delete the whole history ({confirm: true}; a request_id makes a resend that press)",
        body=ClearBody,
        statuses=WRITE,
        response=HistoryCleared,
    ),
    _listening(
        "get",
        "/api/listening/stats",
        "Totals, per item, per local day, streaks",
        query=StatsQuery,
        statuses=READ,
        response=ListeningStats,
    ),
    _listening(
        "get",
        "/api/listening/export",
        "The whole history as a JSON or CSV download",
        query=ExportQuery,
        statuses=READ,
        ok_types=(JSON, CSV),
        response=ListeningExport,
        ok_headers=(attachment("listening-history.<format>"),),
    ),
)
