"""A text file answered gzipped when the client takes gzip, else as it is on disk.

The gzip copy is a representation of its own (RFC 9110 8.8.3): its ETag is the file's with
``-gzip`` after it, so a cache holding one never revalidates it as the other, and every answer
of a compressible file, either coding, says ``Vary: Accept-Encoding``. A request the gzip copy
cannot answer as the file would is left to ``web.FileResponse`` on the file itself: a ``Range``
(its offsets count the file's bytes) and the preconditions of a write (``If-Match``,
``If-Unmodified-Since``, which name the file's ETag and date).

The pages' routes (``handlers.web_pages.page``) answer through :func:`gzip_answer`; the
``/static/`` route is aiohttp's own (it keeps its checks of the path: no ``..``, no symlink
out of the folder), and :func:`static_coding` answers for it when a gzip copy applies.
"""

from __future__ import annotations

from mimetypes import MimeTypes
from pathlib import Path, PurePosixPath

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from handlers.compressed_files import Compressed, CompressedFiles, Version, compressible

GZIP = "gzip"
GZIP_NAMES = frozenset({"gzip", "x-gzip"})
# Conditions only the file itself can be judged by (module docstring).
IDENTITY_ONLY = (hdrs.RANGE, hdrs.IF_MATCH, hdrs.IF_UNMODIFIED_SINCE)
# The same table web.FileResponse guesses from, so both codings say the same Content-Type.
_TYPES = MimeTypes()

COMPRESSED_FILES_KEY = web.AppKey("compressed_files", CompressedFiles)


def _quality(params: str) -> float:
    """The ``q`` of one Accept-Encoding item's parameters (1 when absent; 0 when unreadable)."""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value takes gzip: named, or ``*``, with a q above 0."""
    named: float | None = None
    star: float | None = None
    for item in accept_encoding.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if name in GZIP_NAMES:
            named = _quality(params)
        elif name == "*":
            star = _quality(params)
    chosen = named if named is not None else star
    return chosen is not None and chosen > 0


def identity_etag(version: Version) -> str:
    """The ETag ``web.FileResponse`` gives the file itself."""
    return f"{version.mtime_ns:x}-{version.size:x}"


def gzip_etag(version: Version) -> str:
    """The ETag of the file's gzip copy: the file's, marked, so the two never match each other."""
    return f"{identity_etag(version)}-{GZIP}"


def _takes_gzip(request: web.Request) -> bool:
    if any(name in request.headers for name in IDENTITY_ONLY):
        return False
    return accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, ""))


def _not_modified(request: web.Request, etag: str, version: Version) -> bool:
    """RFC 9110 13.2.2: If-None-Match (weak comparison) first; If-Modified-Since only without it."""
    if_none_match = request.if_none_match
    if if_none_match is not None:
        return any(tag.value in (etag, "*") for tag in if_none_match)
    since = request.if_modified_since
    return since is not None and int(version.mtime_s) <= since.timestamp()


def _response(request: web.Request, path: Path, copy: Compressed) -> web.Response:
    etag = gzip_etag(copy.version)
    headers: dict[str, str] = {hdrs.VARY: hdrs.ACCEPT_ENCODING}
    if _not_modified(request, etag, copy.version):
        response = web.Response(status=web.HTTPNotModified.status_code, headers=headers)
    else:
        headers[hdrs.CONTENT_ENCODING] = GZIP
        content_type = _TYPES.guess_type(path.name)[0] or "application/octet-stream"
        response = web.Response(body=copy.body, content_type=content_type, headers=headers)
    response.etag = etag
    response.last_modified = copy.version.mtime_s
    return response


async def gzip_answer(request: web.Request, path: Path) -> web.Response | None:
    """The gzip answer for ``path`` (a resolved path: one through a symlink is never compressed),
    or None when the file itself is to be sent (not taken, not compressible, not worth it)."""
    files = request.app.get(COMPRESSED_FILES_KEY)
    if files is None or not compressible(path) or not _takes_gzip(request):
        return None
    copy = await files.get(path)
    return None if copy is None else _response(request, path, copy)


def file_answer(path: Path) -> web.FileResponse:
    """The file itself, saying its answer depends on Accept-Encoding when it has a gzip copy."""
    headers: dict[str, str] | None = {hdrs.VARY: hdrs.ACCEPT_ENCODING} if compressible(path) else None
    return web.FileResponse(path, headers=headers)


def _inside(root: Path, filename: str) -> Path | None:
    """``filename`` under ``root`` (resolved), judged by its text alone; None for anything aiohttp's
    static route must judge itself (absolute, ``..``, empty). Symlinks are refused by the store."""
    relative = PurePosixPath(filename)
    if not filename or relative.is_absolute() or ".." in relative.parts or "\\" in filename:
        return None
    return root.joinpath(*relative.parts)


def static_coding(resource: web.AbstractResource, root: Path) -> Middleware:
    """A middleware answering ``resource`` (an ``add_static`` route on ``root``) with the gzip
    copy of the file it names, when one applies; its own answer, marked ``Vary``, otherwise."""
    resolved_root = root.resolve()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route.resource is not resource:
            return await handler(request)
        path = _inside(resolved_root, request.match_info.get("filename", ""))
        answer = None if path is None else await gzip_answer(request, path)
        if answer is not None:
            return answer
        response = await handler(request)
        if isinstance(response, web.FileResponse) and path is not None and compressible(path):
            response.headers.setdefault(hdrs.VARY, hdrs.ACCEPT_ENCODING)
        return response

    return middleware
