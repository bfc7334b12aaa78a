"""The pattern API's routes as documented in /openapi.json (see handlers.openapi_registry).

Its errors are the origin app's shape (``PatternError``); its writes take ``If-Match`` with the
ETag of a read, answered with 412 and the current session when the session moved on.
"""

from __future__ import annotations

from functools import partial

from handlers.openapi_registry import Auth, ErrorShape, Header, Operation
from handlers.patterns.answers import PatternSession
from handlers.patterns.requests import CreateBody, PatchBody, PutBody
from handlers.patterns.views import Created, Health, Published, Remixed, Renamed, Replaced

TAG = "patterns"
IF_MATCH = Header("If-Match", 'the ETag of a read ("<epoch>:<offset>"); a stale one is refused with 412')
# The session's version: the log position of its last change of state or name, quotes included.
ETAG = Header(
    "ETag", 'the version this answer shows, "<epoch>:<offset>": send it back as If-Match', pattern='^"[^"]+:[0-9]+"$'
)
# Every route but /api/health reads or writes Redis: 503 when it does not answer.
WRITE = (400, 403, 404, 412, 413, 429, 503)

# The API takes no token: a valid one only names the author of what it creates or changes.
_pattern = partial(Operation, tag=TAG, auth=Auth.OPTIONAL, errors=ErrorShape.PATTERNS)

OPERATIONS: tuple[Operation, ...] = (
    _pattern("get", "/api/health", "The origin app's health probe", auth=Auth.NONE, response=Health),
    _pattern(
        "post",
        "/api/sessions",
        "Create a session from {name?, state?} or the state's fields beside name (other keys ignored);"
        " no JSON body (or JSON null) gives the default session",
        body=CreateBody,
        body_required=False,
        body_nullable=True,
        statuses=(400, 413, 429, 503),
        ok=(201,),
        response=Created,
        idempotent=True,
    ),
    _pattern(
        "get",
        "/api/sessions/{session_id}",
        "The whole session, with its ETag",
        auth=Auth.NONE,
        statuses=(400, 404, 503),
        ok_headers=(ETAG,),
        response=PatternSession,
    ),
    _pattern(
        "put",
        "/api/sessions/{session_id}",
        "Replace the state (effects, scale and loopRegion left out keep the stored ones; name is ignored)",
        body=PutBody,
        headers=(IF_MATCH,),
        statuses=WRITE,
        ok_headers=(ETAG,),
        response=Replaced,
        idempotent=True,
    ),
    _pattern(
        "patch",
        "/api/sessions/{session_id}",
        "Rename and/or replace the state (merged as for PUT)",
        body=PatchBody,
        headers=(IF_MATCH,),
        statuses=WRITE,
        ok_headers=(ETAG,),
        response=Renamed,
        idempotent=True,
    ),
    _pattern(
        "delete",
        "/api/sessions/{session_id}",
        "Delete a session (a published one cannot be)",
        auth=Auth.NONE,
        statuses=(400, 403, 404, 503),
        ok=(204,),
    ),
    _pattern(
        "post",
        "/api/sessions/{session_id}/remix",
        "A new editable, unnamed copy whose lineage names this one",
        statuses=(400, 404, 429, 503),
        ok=(201,),
        response=Remixed,
        idempotent=True,
    ),
    _pattern(
        "post",
        "/api/sessions/{session_id}/publish",
        "A new read-only copy; the source stays editable",
        statuses=(400, 404, 429, 503),
        ok=(201,),
        response=Published,
        idempotent=True,
    ),
)
