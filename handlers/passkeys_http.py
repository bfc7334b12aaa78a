"""Passkeys: keep an identity with one, and sign in with it on any device (py_webauthn does the checks).

A ceremony is two requests: ``…/options`` answers WebAuthn options and a ``challenge_id``; the
second request brings the browser's credential (``PublicKeyCredential.toJSON()``) and that id.
The challenge is single-use and expires (``storage.identity.passkeys``).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import webauthn
from aiohttp import web
from pydantic import BaseModel, Field
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from auth.claims import Claims
from auth.relying_party import RelyingParty
from handlers import auth_cookie
from handlers.auth_http import AuthRoutes, TokenAnswer, grant_of
from handlers.context import Services
from handlers.device_label import device_label
from handlers.http_common import bearer_claims, client_address, guarded, json_body
from handlers.openapi_registry import Auth, Operation, document
from handlers.payloads import PLAIN_PATTERN, Payload, validate
from handlers.rate_limit import within
from protocol.errors import CodedError, ErrorCode
from storage.identity.passkeys import Passkey, passkey_id_of

MAX_CEREMONY_BYTES = 16 * 1024
# A passkey's label: the person's, or the User-Agent it was made in, one line of plain text.
PASSKEY_LABEL_CHARS = 60
_SPENT = "this passkey request was used already or has expired"
log = logging.getLogger(__name__)


class Ceremony(Payload):
    """The browser's answer to a ceremony's options."""

    challenge_id: Annotated[str, Field(min_length=16, max_length=64)]
    credential: dict[str, Any]
    label: Annotated[str, Field(max_length=PASSKEY_LABEL_CHARS, pattern=PLAIN_PATTERN)] = ""


class CeremonyOptions(BaseModel):
    """WebAuthn options (JSON form, for ``PublicKeyCredential.parse…OptionsFromJSON``) and their id."""

    challenge_id: str
    options: dict[str, Any]


class PasskeyView(BaseModel):
    """One of the caller's passkeys."""

    passkey_id: str
    label: str
    created_at: int
    last_used_at: int


class PasskeyList(BaseModel):
    """The caller's passkeys, and whether this server offers passkeys at all."""

    enabled: bool
    passkeys: list[PasskeyView]


class PasskeysOffered(BaseModel):
    """Whether this server offers passkeys at all: a page asks before offering a sign-in with one."""

    enabled: bool


class PasskeyRemoved(BaseModel):
    """A passkey forgotten."""

    removed: int


TAG = "auth"
_rate = (429, 503)
OPERATIONS = (
    Operation("get", "/api/auth/passkeys", "The caller's passkeys", tag=TAG, statuses=(401, 503), response=PasskeyList),
    Operation(
        "get",
        "/api/auth/passkeys/offered",
        "Whether this server offers passkeys (asked by anyone, signed in or not)",
        tag=TAG,
        auth=Auth.NONE,
        response=PasskeysOffered,
    ),
    Operation(
        "post",
        "/api/auth/passkeys/register/options",
        "Start adding a passkey to the caller's identity",
        tag=TAG,
        statuses=(401, 403, *_rate),
        response=CeremonyOptions,
    ),
    Operation(
        "post",
        "/api/auth/passkeys/register",
        "Finish adding a passkey",
        tag=TAG,
        body=Ceremony,
        statuses=(400, 401, 403, 409, 413, *_rate),
        ok=(201,),
        response=PasskeyView,
    ),
    Operation(
        "delete",
        "/api/auth/passkeys/{passkey_id}",
        "Remove one of the caller's passkeys",
        tag=TAG,
        statuses=(401, 404, 503),
        response=PasskeyRemoved,
    ),
    Operation(
        "post",
        "/api/auth/passkeys/login/options",
        "Start signing in with a passkey (page request)",
        tag=TAG,
        auth=Auth.NONE,
        statuses=(403, *_rate),
        response=CeremonyOptions,
    ),
    Operation(
        "post",
        "/api/auth/passkeys/login",
        "Sign this browser in as the passkey's user: a token and a refresh cookie (page request)",
        tag=TAG,
        auth=Auth.NONE,
        body=Ceremony,
        statuses=(400, 401, 403, 413, *_rate),
        response=TokenAnswer,
    ),
)


class PasskeyRoutes:
    """Register, list, remove passkeys; sign in with one."""

    def __init__(self, services: Services, auth: AuthRoutes) -> None:
        self._s = services
        self._auth = auth  # opens the device a passkey sign-in creates

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/api/auth/passkeys", guarded(self.list))
        app.router.add_get("/api/auth/passkeys/offered", guarded(self.offered))
        app.router.add_post("/api/auth/passkeys/register/options", guarded(self.register_options))
        app.router.add_post("/api/auth/passkeys/register", guarded(self.register_finish))
        app.router.add_delete("/api/auth/passkeys/{passkey_id}", guarded(self.remove))
        app.router.add_post("/api/auth/passkeys/login/options", guarded(self.login_options))
        app.router.add_post("/api/auth/passkeys/login", guarded(self.login_finish))
        document(app, OPERATIONS)

    def _rp(self) -> RelyingParty:
        if self._s.passkey_rp is None:
            raise CodedError(ErrorCode.FORBIDDEN, "passkeys need SESSIONHUB_PUBLIC_URL on this server", reason="off")
        return self._s.passkey_rp

    async def _limit(self, bucket: str, subject: str) -> None:
        await within(
            self._s.limiter,
            bucket,
            subject,
            limit=self._s.limits.signins_per_min,
            window_s=60,
            message="too many passkey attempts; wait a minute",
        )

    def _claims(self, request: web.Request) -> Claims:
        return bearer_claims(request, self._s.tokens, self._s.clock)

    async def list(self, request: web.Request) -> web.Response:
        """The caller's passkeys."""
        claims = self._claims(request)
        views = [
            PasskeyView(passkey_id=p.passkey_id, label=p.label, created_at=p.created_ms, last_used_at=p.last_used_ms)
            for p in await self._s.passkeys.of_user(claims.sub)
        ]
        return web.json_response(PasskeyList(enabled=self._s.passkey_rp is not None, passkeys=views).model_dump())

    async def offered(self, request: web.Request) -> web.Response:
        """Whether passkeys are on here: a person signed out (nobody) is offered a sign-in with one
        only where it can work (before, the button showed on a server without them, and its press
        said only then that the way was closed)."""
        return web.json_response(PasskeysOffered(enabled=self._s.passkey_rp is not None).model_dump())

    async def register_options(self, request: web.Request) -> web.Response:
        """Options for ``navigator.credentials.create``: a discoverable credential for this user."""
        claims, rp = self._claims(request), self._rp()
        await self._limit("passkey-register", claims.sub)
        profile = await self._s.identities.profile(claims.sub)
        existing = [
            PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(p.credential_id))
            for p in await self._s.passkeys.of_user(claims.sub)
        ]
        options = webauthn.generate_registration_options(
            rp_id=rp.rp_id,
            rp_name=rp.name,
            user_id=claims.sub.encode(),
            # What the browser lists when it asks which passkey to use: two of one browser's
            # identities must read apart (both "Guest", named by their ids, they did not).
            user_name=passkey_user_name(claims.sub, profile.name or claims.name),
            user_display_name=passkey_user_name(claims.sub, profile.name or claims.name),
            exclude_credentials=existing,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED, user_verification=UserVerificationRequirement.PREFERRED
            ),
        )
        challenge_id = await self._s.passkeys.challenge(
            challenge=options.challenge, purpose="register", user_id=claims.sub
        )
        return _options(challenge_id, options)

    async def register_finish(self, request: web.Request) -> web.Response:
        """Verify the new credential and keep it; the identity is then saved (never expires idle)."""
        claims, rp = self._claims(request), self._rp()
        await self._limit("passkey-register", claims.sub)
        body = validate(Ceremony, await json_body(request, max_bytes=MAX_CEREMONY_BYTES))
        taken = await self._s.passkeys.take_challenge(body.challenge_id, purpose="register")
        if taken is None or taken[1] != claims.sub:
            raise CodedError(ErrorCode.UNAUTHORIZED, _SPENT, reason="challenge")
        try:
            verified = webauthn.verify_registration_response(
                credential=body.credential,
                expected_challenge=taken[0],
                expected_rp_id=rp.rp_id,
                expected_origin=rp.origin,
            )
        except WebAuthnException as exc:
            # py_webauthn's words are for the operator, not for the person (nor a prober).
            log.info("passkey registration refused for %s: %s", claims.sub, exc)
            raise CodedError(ErrorCode.INVALID_PAYLOAD, "the passkey was not accepted") from None
        credential_id = bytes_to_base64url(verified.credential_id)
        now_ms = self._s.clock.now_ms()
        passkey = Passkey(
            passkey_id=passkey_id_of(credential_id),
            user_id=claims.sub,
            credential_id=credential_id,
            public_key=bytes_to_base64url(verified.credential_public_key),
            sign_count=verified.sign_count,
            created_ms=now_ms,
            last_used_ms=now_ms,
            label=body.label or device_label(request, PASSKEY_LABEL_CHARS),
            grant=grant_of(claims),
        )
        if not await self._s.passkeys.add(passkey):
            raise CodedError(ErrorCode.CONFLICT, "this passkey is registered already", reason="registered")
        await self._s.identities.mark_saved(claims.sub, True)
        view = PasskeyView(passkey_id=passkey.passkey_id, label=passkey.label, created_at=now_ms, last_used_at=now_ms)
        return web.json_response(view.model_dump(), status=201)

    async def remove(self, request: web.Request) -> web.Response:
        """Forget one of the caller's passkeys."""
        claims = self._claims(request)
        # Hex, taken in any case as every id is (handlers.ids).
        if not await self._s.passkeys.remove(claims.sub, request.match_info["passkey_id"].lower()):
            raise CodedError(ErrorCode.NOT_FOUND, "no such passkey of yours")
        if not await self._s.passkeys.of_user(claims.sub):
            await self._s.identities.mark_saved(claims.sub, False)
        return web.json_response(PasskeyRemoved(removed=1).model_dump())

    async def login_options(self, request: web.Request) -> web.Response:
        """Options for ``navigator.credentials.get``: any passkey of this site (discoverable)."""
        auth_cookie.require_page_request(request, self._s.public_url)
        rp = self._rp()
        await self._limit("passkey-login", self._address(request))
        options = webauthn.generate_authentication_options(
            rp_id=rp.rp_id, user_verification=UserVerificationRequirement.PREFERRED
        )
        challenge_id = await self._s.passkeys.challenge(challenge=options.challenge, purpose="login")
        return _options(challenge_id, options)

    async def login_finish(self, request: web.Request) -> web.Response:
        """Verify the assertion, then open a device of the passkey's user in this browser."""
        auth_cookie.require_page_request(request, self._s.public_url)
        rp = self._rp()
        await self._limit("passkey-login", self._address(request))
        body = validate(Ceremony, await json_body(request, max_bytes=MAX_CEREMONY_BYTES))
        taken = await self._s.passkeys.take_challenge(body.challenge_id, purpose="login")
        if taken is None:
            raise CodedError(ErrorCode.UNAUTHORIZED, _SPENT, reason="challenge")
        credential_id = body.credential.get("id")
        passkey = await self._s.passkeys.find(credential_id) if isinstance(credential_id, str) else None
        if passkey is None:
            raise CodedError(ErrorCode.UNAUTHORIZED, "this passkey is not known here (removed?)", reason="unknown")
        try:
            verified = webauthn.verify_authentication_response(
                credential=body.credential,
                expected_challenge=taken[0],
                expected_rp_id=rp.rp_id,
                expected_origin=rp.origin,
                credential_public_key=webauthn.base64url_to_bytes(passkey.public_key),
                credential_current_sign_count=passkey.sign_count,
            )
        except WebAuthnException as exc:
            log.info("passkey sign-in refused (passkey %s): %s", passkey.passkey_id, exc)
            raise CodedError(ErrorCode.UNAUTHORIZED, "this passkey was refused", reason="refused") from None
        await self._s.passkeys.used(passkey, verified.new_sign_count)
        return await self._auth.new_device(request, passkey.user_id, passkey.grant, status=200)

    def _address(self, request: web.Request) -> str:
        return client_address(request, trust_forwarded_for=self._s.trust_forwarded_for)


def passkey_user_name(user_id: str, name: str) -> str:
    """The name a passkey of ``user_id`` is listed by in the browser: the identity's chosen name,
    else, for a guest, "Guest · " and the first 6 characters of its id after ``guest-`` (which a
    person can tell apart, and find in the identity panel, which shows the id); else the id."""
    if name and name != "Guest":
        return name
    if user_id.startswith("guest-"):
        return f"Guest · {user_id.removeprefix('guest-')[:6]}"
    return user_id


def _options(challenge_id: str, options: Any) -> web.Response:
    body = CeremonyOptions(challenge_id=challenge_id, options=json.loads(webauthn.options_to_json(options)))
    return web.json_response(body.model_dump())
