"""Which HTTP operations a server serves: each capability declares its own, next to its routes.

A capability's ``install`` (and each shared route class's ``register``) hands its tuple of
:class:`Operation` to :func:`document` on the app it registers routes on, so the OpenAPI
document (``handlers/openapi_document.py``) holds exactly the routes that are installed. An
operation names the pydantic models its route validates with; the document is generated from
them, never written by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web
from pydantic import BaseModel

from storage.idempotency import MAX_ANSWERS_PER_CALLER

JSON = "application/json"
NDJSON = "application/x-ndjson"
HTML = "text/html"
CSV = "text/csv"
TEXT = "text/plain"
MULTIPART = "multipart/form-data"
BINARY = "application/octet-stream"


class Auth(StrEnum):
    """How a route identifies its caller."""

    NONE = "none"
    BEARER = "bearer"  # Authorization: Bearer <JWT>, any permission the route then checks
    ADMIN = "admin"  # a bearer token with the admin permission
    OPTIONAL = "optional"  # a valid token only names the author; none is refused


class ErrorShape(StrEnum):
    """The body of an error answer."""

    CODED = "Error"  # {error: <ErrorCode>, message}
    PATTERNS = "PatternError"  # the Keyboardia-compatible API's {error: "<text>", ...}


@dataclass(frozen=True, slots=True)
class Header:
    """A request header a route reads (``pattern``: the values it takes, when it checks them)."""

    name: str
    description: str
    required: bool = False
    pattern: str = ""


# docs/PROTOCOL.md "Retries": the header of a create or upload a client may repeat. The routes
# that take it (handlers.idempotency.idempotent) declare it with ``idempotent=True``: the document
# then lists the header, the 409 of a repeat while the first still runs, and the replay's mark.
IDEMPOTENCY_KEY = Header(
    "Idempotency-Key",
    "a fresh UUID per logical request: a repeat by the same caller within 24 h gets the first 2xx answer"
    " (marked Idempotent-Replayed: true) without running again; 409 while the first still runs;"
    f" a caller's {MAX_ANSWERS_PER_CALLER} most recent keys per route are kept",
    pattern=r"^[A-Za-z0-9_\-:.]{8,128}$",
)
REPLAYED = "Idempotent-Replayed"


def attachment(names: str) -> Header:
    """``Content-Disposition`` of a download, whose file is named as ``names`` says."""
    return Header(
        "Content-Disposition",
        f'attachment; filename="…": a download, named {names} in ASCII; a name with other letters'
        " (a title's) is also given in full as filename*=UTF-8''… (RFC 6266), percent-encoded",
        required=True,
        pattern=r'^attachment; filename="[A-Za-z0-9._-]+"(; filename\*=UTF-8\'\'[A-Za-z0-9%._-]+)?$',
    )


@dataclass(frozen=True, slots=True)
class Operation:
    """One route as documented: the models it validates with, what it answers, who may call it.

    ``statuses`` are the error statuses its code can answer (the shape is ``errors``); ``ok``
    its success statuses, whose body is ``response``'s schema (any JSON object when None) in
    each of ``ok_types``. ``files`` names the binary parts of a multipart ``body`` with the
    media types they may carry. ``idempotent``: the route takes ``Idempotency-Key``.
    """

    method: str
    path: str
    summary: str
    tag: str = ""
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    # A JSON ``null`` body is taken as no body (the pattern API's create, as the origin app's).
    body_nullable: bool = False
    body_type: str = JSON
    files: tuple[tuple[str, tuple[str, ...]], ...] = ()
    headers: tuple[Header, ...] = ()
    auth: Auth = Auth.BEARER
    statuses: tuple[int, ...] = ()
    errors: ErrorShape = ErrorShape.CODED
    ok: tuple[int, ...] = (200,)
    ok_types: tuple[str, ...] = (JSON,)
    response: type[BaseModel] | None = None
    idempotent: bool = False
    # Response headers of its success answers (and of its 412, which names the current version).
    ok_headers: tuple[Header, ...] = ()


OPERATIONS_KEY = web.AppKey("openapi_operations", list[Operation])


def document(app: web.Application, operations: Iterable[Operation]) -> None:
    """Declare ``operations`` as served by ``app`` (call it where the routes are added)."""
    if OPERATIONS_KEY not in app:
        app[OPERATIONS_KEY] = []
    app[OPERATIONS_KEY].extend(operations)


def installed(app: web.Application) -> tuple[Operation, ...]:
    """Every operation declared on ``app``, in declaration order."""
    if OPERATIONS_KEY not in app:
        return ()
    declared: list[Operation] = app[OPERATIONS_KEY]
    return tuple(declared)
