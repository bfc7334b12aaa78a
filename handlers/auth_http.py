"""Signing a browser in and keeping it signed in: ``/api/auth/guest``, ``refresh``, ``one_time``, ``logout``.

A browser's identity is its refresh cookie (``handlers.auth_cookie``): a device family in Redis
(``storage.identity``) that outlives every access token. Access tokens stay short-lived JWTs,
minted here from the family's grant and the user's profile (name, admin mark).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from auth.claims import GUEST_PERMISSIONS, Claims, Permission
from handlers import auth_cookie
from handlers.context import Services
from handlers.device_label import device_label
from handlers.http_common import bearer_claims, client_address, guarded, json_body
from handlers.openapi_registry import Auth, Operation, document
from handlers.payloads import ONE_TIME_TOKEN_CHARS, OneTimeLogin, validate
from handlers.rate_limit import within
from protocol.errors import CodedError, ErrorCode
from storage.identity.repository import Rotation, split_credential

log = logging.getLogger(__name__)

# The day's window of the guests' per-address limit (UTC days: windows are counted from the epoch).
DAY_S = 86_400


USED = "this link was used already or has expired"
ENDED = "this link was ended: the device that made it, or every device of its identity, was signed out"
# A device's label: its User-Agent, at most this long (PROTOCOL: "its first 120 characters").
DEVICE_LABEL_CHARS = 120


class TokenAnswer(BaseModel):
    """A token issued: its user and expiry (unix s), and the name it carries."""

    token: str
    user_id: str
    expires_at: int
    name: str = ""
    device_id: str = ""  # the device (refresh family) it was minted for; "" for a bare token
    guest: bool = False


class LinkOwner(BaseModel):
    """Whose identity a one-time link signs a browser in as, or why it no longer can."""

    usable: bool = True
    user_id: str = ""  # "" when not usable
    name: str = ""
    # Why not usable: "used" (used, expired or unknown), "signed_out" (ended by a sign-out) or
    # "expired" (a bot link whose asking token has expired since); "" when usable.
    reason: str = ""
    link: str = ""  # "device" (made by a device) or "bot" (a chat bot's /login); "" when unknown


class CredentialPresence(BaseModel):
    """Whether the request carried a refresh cookie (nothing about it is read or checked)."""

    present: bool


class SignedOut(BaseModel):
    """Devices signed out."""

    revoked: int


TAG = "auth"
OPERATIONS = (
    Operation(
        "post",
        "/api/auth/guest",
        "Issue a guest token; a page's request (JSON body or X-Sessionhub-Client) also gets the refresh cookie",
        tag=TAG,
        auth=Auth.NONE,
        statuses=(403, 429, 503),
        ok=(201,),
        response=TokenAnswer,
    ),
    Operation(
        "get",
        "/api/auth/credential",
        "Whether this browser holds a refresh cookie (a first visit learns it has no identity without a refusal)",
        tag=TAG,
        auth=Auth.NONE,
        response=CredentialPresence,
    ),
    Operation(
        "post",
        "/api/auth/refresh",
        "A new access token for the same user: from the refresh cookie (rotated), or a still valid guest token",
        tag=TAG,
        auth=Auth.NONE,
        statuses=(401, 403, 429, 503),
        response=TokenAnswer,
    ),
    Operation(
        "post",
        "/api/auth/one_time",
        "Exchange a device link's (or a /login link's) one-time token for a token and a refresh cookie",
        tag=TAG,
        auth=Auth.NONE,
        body=OneTimeLogin,
        statuses=(400, 401, 403, 413, 429, 503),
        response=TokenAnswer,
    ),
    Operation(
        "post",
        "/api/auth/one_time/peek",
        "Whose identity a one-time link signs a browser in as; the link stays unused",
        tag=TAG,
        auth=Auth.NONE,
        body=OneTimeLogin,
        statuses=(400, 401, 403, 413, 429, 503),
        response=LinkOwner,
    ),
    Operation(
        "post",
        "/api/auth/logout",
        "Sign this device out: revoke its refresh cookie's family and forget the cookie",
        tag=TAG,
        auth=Auth.NONE,
        statuses=(403, 503),
        response=SignedOut,
    ),
)


def grant_of(claims: Claims) -> dict[str, Any]:
    """What tokens minted for a new device of this caller may carry (never more than the caller)."""
    return {
        "perms": [p.value for p in claims.perms if p is not Permission.ADMIN],
        "guest": claims.guest,
        "telegram_user_id": claims.telegram_user_id,
    }


GUEST_GRANT: dict[str, Any] = {"perms": [p.value for p in GUEST_PERMISSIONS], "guest": True, "telegram_user_id": ""}


class AuthRoutes:
    """Guest issue, refresh rotation, link redemption and sign-out of this device."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_post("/api/auth/guest", guarded(self.guest))
        app.router.add_get("/api/auth/credential", guarded(self.credential))
        app.router.add_post("/api/auth/refresh", guarded(self.refresh))
        app.router.add_post("/api/auth/one_time", guarded(self.one_time))
        app.router.add_post("/api/auth/one_time/peek", guarded(self.peek))
        app.router.add_post("/api/auth/logout", guarded(self.logout))
        document(app, OPERATIONS)

    def _address(self, request: web.Request) -> str:
        return client_address(request, trust_forwarded_for=self._s.trust_forwarded_for)

    async def guest(self, request: web.Request) -> web.Response:
        """Issue a guest token (rate limited per client address); a page also gets its cookie."""
        if not auth_cookie.same_origin(request, self._s.public_url):
            raise CodedError(ErrorCode.FORBIDDEN, "this request comes from another site", reason="cross_origin")
        address = self._address(request)
        await self._s.storage_guard.admit("guest")
        await within(
            self._s.limiter,
            "guest",
            address,
            limit=self._s.limits.guests_per_min,
            window_s=60,
            message="too many guest tokens from this address; wait a minute",
        )
        # A guest is kept guest_idle_s without owning anything: the minute's limit alone let one
        # address keep 43,200 a day, each day of that time. The day's limit bounds what one
        # address holds to guests_per_day x the idle days; a client that waits is let in.
        await within(
            self._s.limiter,
            "guest_day",
            address,
            limit=self._s.limits.guests_per_day,
            window_s=DAY_S,
            message="too many guest identities from this address today; try again tomorrow",
        )
        user_id = f"guest-{uuid.uuid4().hex}"
        await self._s.identities.create_user(user_id)
        if not auth_cookie.non_simple(request):
            # A plain POST (a script, an old page) gets a token only: a cross-site form must not
            # be able to replace a browser's identity cookie.
            token, exp = self._mint(user_id, GUEST_GRANT, name="Guest", admin=False, fam="")
            return self._answer(token, user_id, exp, "Guest", status=201, guest=True)
        return await self.new_device(request, user_id, GUEST_GRANT, status=201)

    async def credential(self, request: web.Request) -> web.Response:
        """Whether a refresh cookie came with the request. The page cannot see its HttpOnly cookie:
        without this, a first visit learned that it has none only from a refused refresh, which
        the browser reports on its console as a failed request."""
        present = auth_cookie.presented(request) is not None
        return web.json_response(CredentialPresence(present=present).model_dump())

    async def refresh(self, request: web.Request) -> web.Response:
        """The same user's next access token: rotate the refresh cookie, or renew a guest token.

        A failing cookie is answered ``401`` with ``reason`` (``revoked``, ``reused``,
        ``expired``, ``invalid``) so that the page can say so instead of becoming someone else.
        """
        credential = auth_cookie.presented(request)
        if credential is None:
            return await self._refresh_bearer(request)
        auth_cookie.require_page_request(request, self._s.public_url)
        # Counted per device, so that the browsers behind one address do not share a limit; but
        # only a device that exists: a made-up family id was a counter of its own each time, and
        # one address could try (and store a counter for) as many as it could send.
        parts = split_credential(credential)
        known = parts is not None and bool(await self._s.identities.family_user(parts[0]))
        subject = parts[0] if parts is not None and known else self._address(request)
        await within(
            self._s.limiter,
            "refresh",
            subject,
            limit=self._s.limits.signins_per_min,
            window_s=60,
            message="too many refreshes; wait a minute",
        )
        rotation = await self._s.identities.rotate(credential)
        if rotation.outcome == "missing" and parts is not None and (lost := self._lost_device(request, parts[0])):
            return await self.new_device(request, lost.sub, grant_of(lost), status=200, family_id=parts[0])
        if rotation.outcome not in ("rotated", "concurrent"):
            self._s.tokens.revoked_families |= {rotation.family_id} if rotation.outcome == "reused" else set()
            raise _refusal(rotation)
        profile = await self._s.identities.profile(rotation.user_id)
        token, exp = self._mint(
            rotation.user_id, rotation.grant or {}, name=profile.name, admin=profile.admin, fam=rotation.family_id
        )
        guest = bool((rotation.grant or {}).get("guest", False))
        response = self._answer(
            token, rotation.user_id, exp, profile.name, status=200, device=rotation.family_id, guest=guest
        )
        if rotation.credential is not None:
            self._set_cookie(response, request, rotation.credential)
        return response

    def _lost_device(self, request: web.Request, family_id: str) -> Claims | None:
        """The claims of a valid access token of the device ``family_id`` that Redis no longer
        knows, when the refresh carries one, else None.

        A device opened in the last second a Redis lost (a machine crash under ``appendfsync
        everysec``, a restore from an older snapshot) kept working on its token, and its refresh
        was refused "expired" for good: an hour later the guest was locked out of everything it
        had made (audit "lastsecond"). A token this server signed for that very device, neither
        expired nor signed out (a sign-out revokes the device's tokens), proves the device: it is
        opened again under its id. A family that exists (a wrong secret) is never this case."""
        if "Authorization" not in request.headers:
            return None
        try:
            claims = bearer_claims(request, self._s.tokens, self._s.clock)
        except CodedError:
            return None
        if claims.fam != family_id:
            return None
        log.warning("device %s of %s not in Redis (writes lost?): opened again by its token", family_id, claims.sub)
        return claims

    async def _refresh_bearer(self, request: web.Request) -> web.Response:
        # A page from before refresh cookies renews its guest token here, and gets its cookie.
        if "Authorization" not in request.headers:
            raise CodedError(ErrorCode.UNAUTHORIZED, "this browser holds no identity", reason="no_credential")
        claims = bearer_claims(request, self._s.tokens, self._s.clock)
        if not claims.guest:
            raise CodedError(ErrorCode.FORBIDDEN, "only guest tokens are refreshed here")
        await within(
            self._s.limiter,
            "refresh",
            claims.sub,
            limit=self._s.limits.guests_per_min,
            window_s=60,
            message="too many refreshes; wait a minute",
        )
        presented = request.headers["Authorization"].partition(" ")[2].strip()
        ttl_s = int(claims.exp - self._s.clock.now_s())
        if (
            claims.fam
            or not auth_cookie.non_simple(request)
            or not await self._s.identities.first_opening_by(presented, ttl_s=ttl_s)
        ):
            # A token that opened its device already gets a token again, not another device.
            # A visit all the same: a guest renewing its token alone is not idle (its things stay).
            await self._s.identities.keep(claims.sub)
            token, exp = self._mint(claims.sub, grant_of(claims), name=claims.name, admin=False, fam=claims.fam)
            return self._answer(token, claims.sub, exp, claims.name, status=200, device=claims.fam, guest=claims.guest)
        return await self.new_device(request, claims.sub, grant_of(claims), status=200)

    async def _link_body(self, request: web.Request) -> OneTimeLogin:
        """The body of a one-time link's route, within the per-address limit."""
        auth_cookie.require_page_request(request, self._s.public_url)
        address = self._address(request)
        await within(
            self._s.limiter,
            "login",
            address,
            limit=self._s.limits.signins_per_min,
            window_s=60,
            message="too many login attempts; wait a minute",
        )
        return validate(OneTimeLogin, await json_body(request, max_bytes=1024))

    async def peek(self, request: web.Request) -> web.Response:
        """Whose identity a one-time link opens, leaving it unused: the page asks before a link
        replaces an identity of this browser that would leave its sessions behind. A link that
        cannot be used is an answer here (``usable: false`` and why), not a refusal: the page
        meets ended links as a matter of course, and a refusal is a console error in a browser."""
        body = await self._link_body(request)
        claims = await self._s.login_tokens.peek(body.token) if len(body.token) in ONE_TIME_TOKEN_CHARS else None
        if claims is None:
            return web.json_response(LinkOwner(usable=False, reason="used").model_dump())
        link = "device" if claims.get("device_link") else "bot"
        if link == "bot" and int(claims["exp"]) <= int(self._s.clock.now_s()):
            return web.json_response(LinkOwner(usable=False, reason="expired", link=link).model_dump())
        if await self._link_ended(claims):
            return web.json_response(LinkOwner(usable=False, reason="signed_out", link=link).model_dump())
        profile = await self._s.identities.profile(claims["sub"])
        return web.json_response(LinkOwner(user_id=claims["sub"], name=profile.name, link=link).model_dump())

    async def one_time(self, request: web.Request) -> web.Response:
        """Redeem a one-time link (a device link, or a chat bot's ``/login``): this browser becomes a
        new device of the link's user, with the asking token's permissions (never ``admin``, which
        comes from the user's profile). A bot link is refused once its asking token has expired.
        """
        body = await self._link_body(request)
        device = self._s.identities.new_family_id()
        known = len(body.token) in ONE_TIME_TOKEN_CHARS
        redeemed = await self._s.login_tokens.redeem(body.token, body.attempt or "", device=device) if known else None
        if redeemed is None:
            raise CodedError(ErrorCode.UNAUTHORIZED, USED, reason="used")
        claims = redeemed.claims
        # The maker is judged when the link is taken: the same redemption sent again finds it
        # signed out by that redemption when the link was opened in the maker's own browser.
        link = "device" if claims.get("device_link") else "bot"
        if await self._link_ended(claims, maker=not redeemed.again):
            raise CodedError(ErrorCode.UNAUTHORIZED, ENDED, reason="signed_out", link=link)
        if claims.get("device_link"):
            grant = claims["grant"]
        elif int(claims["exp"]) <= int(self._s.clock.now_s()):
            raise CodedError(ErrorCode.UNAUTHORIZED, "the token that asked for this login link has expired")
        else:
            grant = {
                "perms": [p for p in claims.get("perms", ()) if p != Permission.ADMIN.value],
                "guest": bool(claims.get("guest", False)),
                "telegram_user_id": claims.get("telegram_user_id", ""),
            }
        # The same page sending its redemption again (its answer lost, or sent while the first
        # was on its way) opens the device the first one chose, once: the same device, the same
        # cookie (Identities.open_family), however many race.
        await self._replace_own_device(request, claims["sub"], keep=redeemed.device)
        response = await self.new_device(request, claims["sub"], grant, status=200, family_id=redeemed.device)
        # Checked again once the device is listed: a sign-out everywhere that listed the devices
        # before this one was, came after the check above and set its time first, which this
        # sees (Identities.revoke_all). So no device a link opens outlives a sign-out it raced.
        # Not the maker again: a link made by this very browser signed its maker out just above.
        if await self._link_ended(claims, maker=False):
            if await self._s.identities.revoke(claims["sub"], redeemed.device):
                self._s.tokens.revoked_families |= {redeemed.device}
            raise CodedError(ErrorCode.UNAUTHORIZED, ENDED, reason="signed_out", link=link)
        return response

    async def _link_ended(self, claims: dict[str, Any], *, maker: bool = True) -> bool:
        """Whether a sign-out ended this link: its user signed out everywhere after it was made,
        or (``maker``) the device that made it (a device link's ``fam``) is signed out or gone. A
        link of the release before carries neither: any sign-out everywhere it may predate ends it."""
        user_id, made_ms = str(claims["sub"]), int(claims.get("made_ms") or 0)
        signed_out_ms = await self._s.identities.signed_out_at(user_id)
        if signed_out_ms and made_ms <= signed_out_ms:
            return True
        family = str(claims.get("fam") or "") if maker else ""
        return bool(family) and not await self._s.identities.family_live(user_id, family)

    async def _replace_own_device(self, request: web.Request, user_id: str, *, keep: str) -> None:
        """A browser that is already a device of ``user_id`` (its own device link opened in the
        same browser) is signed out as that device: the new device's cookie replaces its cookie,
        so no browser held it any more, and it stayed listed beside the new one for the refresh
        cookie's lifetime, a "Chrome on Linux" nobody could tell from a real second device. The
        browser's other tabs take up the new device's token (web/js/client.js)."""
        credential = auth_cookie.presented(request)
        family = credential.partition(".")[0] if credential else ""
        if not family or family == keep or await self._s.identities.family_user(family) != user_id:
            # No device, or another person's (theirs is not this link's to end), or the one this
            # redemption opens (the first answer of a redemption sent again did arrive).
            return
        if await self._s.identities.revoke(user_id, family):
            self._s.tokens.revoked_families |= {family}

    async def logout(self, request: web.Request) -> web.Response:
        """Sign this device out (its cookie's family, else the bearer token's device)."""
        auth_cookie.require_page_request(request, self._s.public_url)
        revoked = 0
        credential = auth_cookie.presented(request)
        cookie_family = credential.partition(".")[0] if credential else ""
        cookie_user = await self._s.identities.family_user(cookie_family) if cookie_family else ""
        user_id, family_id = cookie_user, cookie_family if cookie_user else ""
        if "Authorization" in request.headers:
            # An expired token still names nothing we trust: the cookie alone then decides. A
            # valid one names this device unless the cookie names another of the same person's:
            # a stale or corrupt cookie (a family unknown, or someone else's) must not turn
            # "sign this device out" into nothing signed out.
            with contextlib.suppress(CodedError):
                claims = bearer_claims(request, self._s.tokens, self._s.clock)
                if cookie_user != claims.sub:
                    user_id, family_id = claims.sub, claims.fam
        if family_id and user_id and await self._s.identities.revoke(user_id, family_id):
            self._s.tokens.revoked_families |= {family_id}
            revoked = 1
        response = web.json_response(SignedOut(revoked=revoked).model_dump())
        auth_cookie.clear_credential(response)
        return response

    # --- minting -----------------------------------------------------------------------
    async def new_device(
        self, request: web.Request, user_id: str, grant: dict[str, Any], *, status: int, family_id: str | None = None
    ) -> web.Response:
        """Open a device of ``user_id`` in this browser: its token, and its refresh cookie (under
        ``family_id`` when chosen beforehand: opened once, see Identities.open_family)."""
        label = device_label(request, DEVICE_LABEL_CHARS)
        family_id, credential = await self._s.identities.open_family(
            user_id, label=label, grant=grant, family_id=family_id
        )
        profile = await self._s.identities.profile(user_id)
        token, exp = self._mint(user_id, grant, name=profile.name, admin=profile.admin, fam=family_id)
        guest = bool(grant.get("guest", False))
        response = self._answer(token, user_id, exp, profile.name, status=status, device=family_id, guest=guest)
        # No credential: the device was opened before and has rotated its cookie since (a link's
        # redemption sent again by a page that did get the first answer): the browser keeps the
        # cookie it holds; the first one again would be refused as a copy, signing it out.
        if credential:
            self._set_cookie(response, request, credential)
        return response

    def _mint(self, user_id: str, grant: dict[str, Any], *, name: str, admin: bool, fam: str) -> tuple[str, int]:
        perms = tuple(Permission(p) for p in grant.get("perms", ()))
        if admin:  # granted by an operator (sessionhub admin grant), read at every refresh
            perms = (*perms, Permission.ADMIN)
        return self._s.tokens.mint(
            user_id=user_id,
            now_s=self._s.clock.now_s(),
            ttl_s=self._s.limits.guest_token_ttl_s,
            perms=perms,
            name=name,
            telegram_user_id=str(grant.get("telegram_user_id", "")),
            guest=bool(grant.get("guest", False)),
            fam=fam,
        )

    def _answer(
        self, token: str, user_id: str, exp: int, name: str, *, status: int, device: str = "", guest: bool = False
    ) -> web.Response:
        body = TokenAnswer(token=token, user_id=user_id, expires_at=exp, name=name, device_id=device, guest=guest)
        return web.json_response(body.model_dump(), status=status)

    def _set_cookie(self, response: web.Response, request: web.Request, credential: str) -> None:
        auth_cookie.set_credential(
            response,
            request,
            credential,
            max_age_s=self._s.identities.config.refresh_ttl_s,
            public_url=self._s.public_url,
            trust_forwarded_for=self._s.trust_forwarded_for,
        )


_REFUSALS = {
    "revoked": "this device was signed out",
    "reused": "this sign-in was used twice (copied?); every session of this device was signed out",
    "missing": "this sign-in has expired",
    "invalid": "this sign-in is not valid",
    "malformed": "this sign-in is not valid",
}


def _refusal(rotation: Rotation) -> CodedError:
    # An unknown secret of a device is "expired", as PROTOCOL says and the pages take as final:
    # as "invalid" (malformed) every page load asked again, and was refused again (audit "restore").
    reasons = {"missing": "expired", "invalid": "expired", "malformed": "invalid"}
    reason = reasons.get(rotation.outcome, rotation.outcome)
    return CodedError(ErrorCode.UNAUTHORIZED, _REFUSALS.get(rotation.outcome, "not valid"), reason=reason)
