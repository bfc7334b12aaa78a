"""Who am I: ``/api/auth/me``, the devices list, sign out everywhere, and device links."""

from __future__ import annotations

import io
from typing import Annotated
from urllib.parse import quote

import segno
from aiohttp import web
from pydantic import AfterValidator, BaseModel, Field

from auth.claims import Claims
from handlers import auth_cookie
from handlers.auth_http import grant_of
from handlers.context import Services
from handlers.http_common import bearer_claims, client_address, guarded, json_body
from handlers.openapi_registry import Operation, document
from handlers.payloads import PLAIN_PATTERN, Payload, validate
from handlers.query import QueryModel, parse_query
from handlers.rate_limit import within
from protocol.errors import CodedError, ErrorCode
from protocol.seen_text import seen_size, shows_anything
from storage.identity.repository import MAX_NAME_CHARS


# The largest name (MAX_NAME_CHARS characters of 20 bytes each) sent with every character
# \u-escaped (an astral one as a surrogate pair: 12 bytes for 4), and the JSON around it.
RENAME_BODY_BYTES = 4096


def _seen_name(value: str) -> str:
    # Ten zero-width joiners or a lone accent were a name: the streamer's review, dashboard and
    # exports then showed the viewer with no name at all, not "viewer <tag>" (audit "anonhostile").
    if not shows_anything(value):
        raise ValueError("a name needs a character that shows (not only invisible ones)")
    return value


class Rename(Payload):
    """``PATCH /api/auth/me``."""

    # One line of plain text, as every name: shown in the streamer's review and exports.
    # Characters as seen: 60 code points refused a 29-letter Hindi name (audit "localeworld").
    name: Annotated[
        str,
        Field(min_length=1, pattern=PLAIN_PATTERN),
        AfterValidator(seen_size(MAX_NAME_CHARS, "a name")),
        AfterValidator(_seen_name),
    ]


class DeviceView(BaseModel):
    """One signed-in device."""

    device_id: str
    label: str
    created_at: int  # unix ms
    last_used_at: int  # unix ms
    current: bool


class Me(BaseModel):
    """The caller's identity."""

    user_id: str
    name: str
    guest: bool
    saved: bool
    admin: bool
    device_id: str
    devices: list[DeviceView]
    # A guest not saved with a passkey: how long after its last visit it is forgotten, and what
    # it made with it (handlers/guest_retention.py); None for any other identity.
    forgotten_after_s: int | None


# Where a device link leads once used: a path of this server's pages (one leading slash, then
# the characters of its ids and names, never a second slash first). Nothing else: a link that
# could lead off the site ("//host", or "/\\host", which browsers read as "//host") would lend
# this server's name to another.
NEXT_PATTERN = r"^/([A-Za-z0-9._~-][A-Za-z0-9._~/-]{0,199})?$"


class LinkQuery(QueryModel):
    """``POST /api/auth/link``'s query."""

    # The page the other device opens once signed in (the page the link was asked on, say a
    # stream's dashboard); without it, /session.
    next: Annotated[str | None, Field(pattern=NEXT_PATTERN)] = None


class DeviceLink(BaseModel):
    """A one-time link signing another device in as the caller, and its QR code (SVG)."""

    url: str
    expires_in_s: int
    qr_svg: str


class Revoked(BaseModel):
    """Devices signed out."""

    revoked: int


TAG = "auth"
OPERATIONS = (
    Operation(
        "get", "/api/auth/me", "The caller's identity and signed-in devices", tag=TAG, statuses=(401, 503), response=Me
    ),
    Operation(
        "patch",
        "/api/auth/me",
        "Set the caller's display name (tokens carry it from their next refresh; the caller's"
        " connections that follow the active session or the user are sent user_renamed at once)",
        tag=TAG,
        body=Rename,
        statuses=(400, 401, 413, 503),
        response=Me,
    ),
    Operation(
        "delete",
        "/api/auth/devices/{device_id}",
        "Sign one of the caller's devices out",
        tag=TAG,
        statuses=(401, 404, 503),
        response=Revoked,
    ),
    Operation(
        "post",
        "/api/auth/logout_all",
        "Sign every device of the caller out (this one included)",
        tag=TAG,
        statuses=(401, 403, 503),
        response=Revoked,
    ),
    Operation(
        "post",
        "/api/auth/link",
        "A one-time link (and QR code) that signs another device in as the caller, and opens"
        " `next` (a path of this server's pages) there",
        tag=TAG,
        query=LinkQuery,
        statuses=(400, 401, 403, 429, 503),
        ok=(201,),
        response=DeviceLink,
    ),
)


class AccountRoutes:
    """The identity a page shows, its devices, and links for more devices."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/api/auth/me", guarded(self.me))
        app.router.add_patch("/api/auth/me", guarded(self.rename))
        app.router.add_delete("/api/auth/devices/{device_id}", guarded(self.revoke))
        app.router.add_post("/api/auth/logout_all", guarded(self.logout_all))
        app.router.add_post("/api/auth/link", guarded(self.link))
        document(app, OPERATIONS)

    def _claims(self, request: web.Request) -> Claims:
        return bearer_claims(request, self._s.tokens, self._s.clock)

    async def me(self, request: web.Request) -> web.Response:
        """The caller's profile and devices; every page asks at load, which keeps the device.

        A visit: the identity and what it owns are kept from now (a guest's for its idle time).
        """
        claims = self._claims(request)
        if claims.fam:
            await self._s.identities.touch(claims.sub, claims.fam, self._s.clock.now_ms())
        return web.json_response((await self._me(claims)).model_dump())

    async def _me(self, claims: Claims) -> Me:
        profile = await self._s.identities.profile(claims.sub)
        devices = [
            DeviceView(
                device_id=d.family_id,
                label=d.label,
                created_at=d.created_ms,
                last_used_at=d.last_used_ms,
                current=d.family_id == claims.fam,
            )
            for d in await self._s.identities.devices(claims.sub)
        ]
        idle_s = self._s.identities.config.guest_idle_s
        return Me(
            user_id=claims.sub,
            name=profile.name or claims.name,
            guest=claims.guest,
            saved=profile.saved,
            admin=profile.admin,
            device_id=claims.fam,
            devices=devices,
            forgotten_after_s=None if profile.saved or profile.admin or not claims.guest else idle_s,
        )

    async def rename(self, request: web.Request) -> web.Response:
        """Set the display name; the user's following connections, on every node, are told at
        once (``user_renamed``, announced by the store's rename script)."""
        claims = self._claims(request)
        # A name's 1,200 bytes of UTF-8 (60 characters as seen), sent \u-escaped as JSON may be.
        body = validate(Rename, await json_body(request, max_bytes=RENAME_BODY_BYTES))
        await self._s.identities.rename(claims.sub, body.name.strip() or "Guest")
        return web.json_response((await self._me(claims)).model_dump())

    async def revoke(self, request: web.Request) -> web.Response:
        """Sign one device out."""
        claims = self._claims(request)
        family_id = request.match_info["device_id"].lower()  # hex, taken in any case as every id
        if not await self._s.identities.revoke(claims.sub, family_id):
            raise CodedError(ErrorCode.NOT_FOUND, "no such device of yours")
        self._s.tokens.revoked_families |= {family_id}
        return web.json_response(Revoked(revoked=1).model_dump())

    async def logout_all(self, request: web.Request) -> web.Response:
        """Sign every device out, end the links made before, and the guest tokens bound to no
        device; other nodes refuse their tokens within the revocation poll."""
        auth_cookie.require_page_request(request, self._s.public_url)
        claims = self._claims(request)
        # A token that outlives it (the operator's, an external provider's) could sign out again
        # and again: each call writes the revocation log every node reads, and flooded it (3,000
        # calls in 6 s pushed real devices' sign-outs out of its window).
        await within(
            self._s.limiter,
            "logout-all",
            claims.sub,
            limit=self._s.limits.signins_per_min,
            window_s=60,
            message="too many sign-outs everywhere; wait a minute",
        )
        _, revoked = await self._s.identities.revoke_all(claims.sub)
        self._s.tokens.revoked_families |= set(revoked)
        self._s.tokens.signed_out_users |= {claims.sub}
        response = web.json_response(Revoked(revoked=len(revoked)).model_dump())
        auth_cookie.clear_credential(response)
        return response

    async def link(self, request: web.Request) -> web.Response:
        """A single-use link for another device, valid ``SESSIONHUB_LOGIN_LINK_TTL_S``."""
        claims = self._claims(request)
        target = parse_query(LinkQuery, request).next
        if not claims.fam:
            raise CodedError(ErrorCode.FORBIDDEN, "only a signed-in browser can link another device")
        address = client_address(request, trust_forwarded_for=self._s.trust_forwarded_for)
        await within(
            self._s.limiter,
            "link",
            claims.sub,
            limit=self._s.limits.signins_per_min,
            window_s=60,
            message="too many device links; wait a minute",
        )
        await within(
            self._s.limiter,
            "link-addr",
            address,
            limit=self._s.limits.signins_per_min,
            window_s=60,
            message="too many device links; wait a minute",
        )
        ttl_s = self._s.limits.login_link_ttl_s
        exp = int(self._s.clock.now_s()) + ttl_s
        # The device that made it (``fam``) and when (``made_ms``): signing that device out, or
        # signing out everywhere, ends the link (handlers/auth_http.py, link_ended).
        made_ms = self._s.clock.now_ms()
        record = {
            "sub": claims.sub,
            "exp": exp,
            "device_link": True,
            "grant": grant_of(claims),
            "fam": claims.fam,
            "made_ms": made_ms,
        }
        token = await self._s.login_tokens.issue(record, ttl_s=ttl_s)
        url = f"{auth_cookie.public_base(request, self._s.public_url)}/tg_auth?token={token}"
        if target is not None:
            url += f"&next={quote(target, safe='')}"
        answer = DeviceLink(url=url, expires_in_s=ttl_s, qr_svg=qr_svg(url))
        return web.json_response(answer.model_dump(), status=201)


def qr_svg(url: str) -> str:
    """The QR code of ``url`` as an inline SVG document."""
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=4, border=2, xmldecl=False, svgns=True)
    return out.getvalue().decode()
