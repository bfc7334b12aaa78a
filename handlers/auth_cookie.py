"""The refresh cookie and the CSRF rule of the routes that read or set it.

The refresh credential lives in an HttpOnly cookie scoped to ``/api/auth``: scripts never read
it, and no other route ever receives it. A route that uses or replaces it must be called by a
page of this site: an ``Origin``, when the browser sends one, must be this server's, and the
request must be one a cross-site form cannot send (a JSON body or the ``X-Sessionhub-Client``
header, both of which a browser only sends cross-site after a CORS preflight this server never
grants on ``/api/auth``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from handlers.http_common import forwarded_https
from protocol.errors import CodedError, ErrorCode

COOKIE_NAME = "sessionhub_refresh"
COOKIE_PATH = "/api/auth"
CLIENT_HEADER = "X-Sessionhub-Client"


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def public_origin(request: web.Request, public_url: str) -> str:
    """``SESSIONHUB_PUBLIC_URL``'s origin, else the one this request was addressed to."""
    return _origin_of(public_url) or f"{request.scheme}://{request.host}".lower()


def public_base(request: web.Request, public_url: str) -> str:
    """Where links to this server start: ``SESSIONHUB_PUBLIC_URL``, else this request's origin."""
    return public_url.rstrip("/") or f"{request.scheme}://{request.host}"


def same_origin(request: web.Request, public_url: str) -> bool:
    """False when the browser says the request comes from a page of another site."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser's cross-site request: browsers send Origin on every POST
    allowed = {public_origin(request, public_url), f"{request.scheme}://{request.host}".lower()}
    # Behind a TLS-terminating proxy the scheme seen here is http: the host decides then.
    return origin.lower() in allowed or urlsplit(origin).netloc.lower() == request.host.lower()


def non_simple(request: web.Request) -> bool:
    """True when a cross-site page could not have sent this request without a preflight."""
    return request.content_type == "application/json" or CLIENT_HEADER in request.headers


def require_page_request(request: web.Request, public_url: str) -> None:
    """Refuse (``forbidden``) a request that may come from another site's page (CSRF)."""
    if not same_origin(request, public_url):
        raise CodedError(ErrorCode.FORBIDDEN, "this request comes from another site", reason="cross_origin")
    if not non_simple(request):
        raise CodedError(
            ErrorCode.FORBIDDEN,
            f"send a JSON body or the {CLIENT_HEADER} header with this request",
            reason="simple_request",
        )


def presented(request: web.Request) -> str | None:
    """The refresh credential the browser sent, if any."""
    value = request.cookies.get(COOKIE_NAME)
    return value if value else None


def _secure(request: web.Request, public_url: str, trust_forwarded_for: int) -> bool:
    # trust_forwarded_for: how many trusted proxies are in front (handlers.http_common.address_of).
    forwarded = trust_forwarded_for > 0 and forwarded_https(request.headers, trust_forwarded_for)
    return request.secure or public_url.startswith("https://") or forwarded


def set_credential(
    response: web.StreamResponse,
    request: web.Request,
    credential: str,
    *,
    max_age_s: int,
    public_url: str,
    trust_forwarded_for: int,
) -> None:
    """Hand the browser its (new) refresh credential."""
    response.set_cookie(
        COOKIE_NAME,
        credential,
        max_age=max_age_s,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=_secure(request, public_url, trust_forwarded_for),
    )


def clear_credential(response: web.StreamResponse) -> None:
    """Make the browser forget its refresh credential."""
    response.del_cookie(COOKIE_NAME, path=COOKIE_PATH)
