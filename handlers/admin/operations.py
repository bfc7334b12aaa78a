"""The admin and operations routes as documented in /openapi.json (see handlers.openapi_registry)."""

from __future__ import annotations

from functools import partial

from handlers.admin.answers import (
    AlertList,
    AuditLog,
    DeadLetterPage,
    DeadLettersDiscarded,
    DeadLetterSettled,
    Metrics,
    OrphanCount,
    Recalculated,
    SessionDeleted,
    SessionDetail,
    SessionPage,
)
from handlers.admin.requests import (
    AuditQuery,
    DeadLettersClear,
    DeadLettersQuery,
    DeleteSession,
    DetailQuery,
    ExportQuery,
    NoFields,
    OrphanDelete,
    SessionsQuery,
)
from handlers.openapi_registry import JSON, NDJSON, TEXT, Auth, Header, Operation, attachment

TAG = "admin"
# Every admin route validates its query or body (400) and reads Redis (503 when it does not answer).
BASE = (400, 503)
ACTION = (*BASE, 413, 429)


_admin = partial(Operation, tag=TAG, auth=Auth.ADMIN)


OPERATIONS: tuple[Operation, ...] = (
    _admin(
        "get",
        "/admin/metrics",
        "Counts per kind and in total, cost, nodes, alerts",
        query=NoFields,
        statuses=BASE,
        response=Metrics,
    ),
    _admin(
        "get",
        "/admin/sessions",
        "Sessions, sorted, filtered, by cursor",
        query=SessionsQuery,
        statuses=BASE,
        response=SessionPage,
    ),
    _admin(
        "get",
        "/admin/sessions/{session_id}",
        "One session: record, events, lineage",
        query=DetailQuery,
        statuses=(*BASE, 404),
        response=SessionDetail,
    ),
    _admin(
        "delete",
        "/admin/sessions/{session_id}",
        "Delete a session (confirm repeats its id)",
        body=DeleteSession,
        statuses=(*ACTION, 404, 412),
        response=SessionDeleted,
    ),
    _admin(
        "post",
        "/admin/recalculate",
        "Rebuild the counters; report the drift",
        body=NoFields,
        body_required=False,
        statuses=ACTION,
        response=Recalculated,
    ),
    _admin("get", "/admin/audit", "The audit log, newest first", query=AuditQuery, statuses=BASE, response=AuditLog),
    _admin("get", "/admin/alerts", "The alerts raised now", query=NoFields, statuses=BASE, response=AlertList),
    _admin(
        "get",
        "/admin/export",
        "Stream sessions (all or orphans) as JSON lines",
        query=ExportQuery,
        statuses=BASE,
        ok_types=(NDJSON,),
        ok_headers=(
            attachment("sessionhub-<scope>.jsonl"),
            Header("X-Total-Count", "how many sessions the export holds", required=True, pattern="^[0-9]+$"),
        ),
    ),
    _admin(
        "post",
        "/admin/orphans/delete",
        "Count orphans (dry run) or delete them (confirmed count)",
        body=OrphanDelete,
        statuses=(*ACTION, 409),
        ok_types=(JSON, NDJSON),
        response=OrphanCount,
    ),
    _admin(
        "get",
        "/admin/jobs/dead",
        "Dead-lettered jobs, newest first, by offset",
        query=DeadLettersQuery,
        statuses=BASE,
        response=DeadLetterPage,
    ),
    _admin(
        "post",
        "/admin/jobs/dead/{job_id}/retry",
        "Queue a dead letter's job again (a repeat answers again: true)",
        body=NoFields,
        body_required=False,
        statuses=(*ACTION, 404, 409),
        response=DeadLetterSettled,
    ),
    _admin(
        "delete",
        "/admin/jobs/dead/{job_id}",
        "Discard one dead letter (a repeat answers again: true)",
        statuses=(*BASE, 404, 429),
        response=DeadLetterSettled,
    ),
    _admin(
        "delete",
        "/admin/jobs/dead",
        "Discard every dead letter (confirm repeats their count)",
        query=DeadLettersClear,
        statuses=(*BASE, 409, 429),
        response=DeadLettersDiscarded,
    ),
    _admin(
        "get",
        "/metrics",
        "Prometheus text format (no token needed when SESSIONHUB_ADMIN_METRICS_PUBLIC)",
        query=NoFields,
        statuses=BASE,
        ok_types=(TEXT,),
    ),
    Operation(
        "get",
        "/openapi.json",
        "This document",
        tag=TAG,
        auth=Auth.NONE,
        headers=(Header("If-None-Match", "the ETag of a copy held: 304, no body, while it is still this document"),),
        ok=(200, 304),
        ok_headers=(
            Header("ETag", "this document's version (it changes with the code and the settings)", required=True),
        ),
    ),
)
