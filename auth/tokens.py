"""JWT issue and verification with a pinned algorithm."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from pydantic import ValidationError

from auth.claims import CLAIMS_ADAPTER, Claims, Permission
from auth.jwks import JwksKeys
from auth.hs256 import HS256Verifier
from auth.numeric_dates import check_dates, pyjwt_options
from auth.token_errors import Expired, Refused
from protocol.errors import CodedError, ErrorCode

SUPPORTED_ALGORITHMS = ("HS256", "RS256")


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """How tokens are signed and checked.

    ``verify_key`` is the HS256 secret or the RS256 public key (PEM); ``signing_key`` is the
    secret or the RS256 private key, None when this node may verify but not mint.
    ``clock_skew_s``: how far ``iat``/``nbf`` may lie in this node's future (another node's or the
    provider's clock ahead of this one's); ``exp`` is never stretched.
    """

    algorithm: str
    verify_key: str
    signing_key: str | None
    issuer: str | None = None
    audience: str | None = None
    clock_skew_s: int = 0

    def __post_init__(self) -> None:
        if self.algorithm not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"unsupported JWT algorithm {self.algorithm!r}; use one of {SUPPORTED_ALGORITHMS}")


class TokenService:
    """Mints and verifies tokens; only the configured algorithm is ever accepted."""

    def __init__(
        self, config: TokenConfig, *, jwks: JwksKeys | None = None, now_s: Callable[[], float] = time.time
    ) -> None:
        self._config = config
        # The clock a token's iat/nbf/exp are judged on: the node's one clock (storage.clock), set
        # by server.services.build_services, the one that mints tokens and runs guest retention.
        # Judged on the wall clock while the node's clock was moved (tests, an operator's shift),
        # a token minted "now" was "not valid yet" and an expired one was still accepted.
        self._now_s = now_s
        # An external provider's RS256 keys (SESSIONHUB_JWKS_URL): its tokens are accepted too.
        self.jwks = jwks
        # Family ids of signed-out devices, kept current by the node (handlers.revocation_watch).
        self.revoked_families: frozenset[str] = frozenset()
        # Users who signed out everywhere, while a guest token bound to no device issued before
        # may live: such tokens of theirs are refused (the same watch keeps it current).
        self.signed_out_users: frozenset[str] = frozenset()
        # Users whose admin permission was withdrawn -> when (s): their device tokens issued by
        # then are refused if they say admin (the same watch keeps it current).
        self.admin_withdrawn: dict[str, int] = {}
        self._required = ("exp", "sub", *(("iss",) if config.issuer else ()), *(("aud",) if config.audience else ()))
        # HS256, the common case, skips PyJWT's layers (auth.hs256); RS256 stays with PyJWT.
        self._hs256 = (
            HS256Verifier(
                config.verify_key,
                required=self._required,
                issuer=config.issuer,
                audience=config.audience,
                clock_skew_s=config.clock_skew_s,
            )
            if config.algorithm == "HS256"
            else None
        )

    def judge_on(self, now_s: Callable[[], float]) -> None:
        """Judge tokens' time claims on ``now_s`` (unix seconds): the clock that mints them."""
        self._now_s = now_s

    @property
    def config(self) -> TokenConfig:
        """How this service signs and verifies (auth.key_fingerprint compares nodes by it)."""
        return self._config

    def mint(
        self,
        *,
        user_id: str,
        now_s: float,
        ttl_s: int,
        perms: tuple[Permission, ...],
        name: str = "",
        telegram_user_id: str = "",
        guest: bool = False,
        fam: str = "",
    ) -> tuple[str, int]:
        """A signed token and its expiry (unix s); claims are validated before signing."""
        if self._config.signing_key is None:
            raise CodedError(ErrorCode.UNAUTHORIZED, "this server has no signing key")
        exp = int(now_s) + ttl_s
        fields = {"sub": user_id, "exp": exp, "name": name, "telegram_user_id": telegram_user_id}
        claims = CLAIMS_ADAPTER.validate_python({**fields, "perms": perms, "guest": guest, "fam": fam})
        payload: dict[str, Any] = claims.to_payload()
        payload["iat"] = int(now_s)
        if self._config.issuer:
            payload["iss"] = self._config.issuer
        if self._config.audience:
            payload["aud"] = self._config.audience
        token = jwt.encode(payload, self._config.signing_key, algorithm=self._config.algorithm)
        return token, exp

    def _external_kid(self, token: str) -> object | None:
        """The ``kid`` of an RS256 token that names one, when external tokens are accepted."""
        if self.jwks is None or not token.startswith("eyJ"):
            return None
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.InvalidTokenError, RecursionError):  # RecursionError: a header nested thousands deep
            return None
        if header.get("alg") != "RS256" or "kid" not in header:
            return None
        kid: object = header["kid"]
        return kid

    def derived_key(self, purpose: str) -> bytes | None:
        """A secret of this server's own for ``purpose``, the same on every node (derived from
        the signing key, which every node holds), or None for a server that signs nothing."""
        if self._config.signing_key is None:
            return None
        return hmac.new(self._config.signing_key.encode(), b"sessionhub:" + purpose.encode(), hashlib.sha256).digest()

    async def learn_key(self, token: object) -> None:
        """Before :meth:`verify`: an external token naming a ``kid`` this node does not know yet
        (the provider rotated its key) waits for a fresh JWKS document (single-flight, at most one
        fetch every ``JwksKeys.min_interval_s``), so its first token is accepted."""
        if self.jwks is None or not isinstance(token, str) or len(token) > 8192:
            return
        kid = self._external_kid(token)
        if kid is not None and not self.jwks.knows(kid):
            await self.jwks.refetch()

    def _external_key(self, token: str) -> Any | None:
        """The JWKS key of a token the external provider signed (RS256 with a known ``kid``), else None.

        A token of this server's own algorithm goes its usual way; an RS256 token whose ``kid`` is
        still unknown after :meth:`learn_key` is refused.
        """
        kid = self._external_kid(token)
        if kid is None or self.jwks is None:
            return None
        key = self.jwks.key(kid)
        if key is None and self._config.algorithm != "RS256":
            raise CodedError(ErrorCode.UNAUTHORIZED, "unknown signing key (kid)")
        return key

    def verify(self, token: object) -> Claims:
        """Verified claims, or ``unauthorized`` for anything wrong with the token."""
        if not isinstance(token, str) or not token or len(token) > 8192:
            raise CodedError(ErrorCode.UNAUTHORIZED, "a bearer token is required")
        now_s = self._now_s()
        try:
            external = self._external_key(token)
            if external is not None:
                payload = self.jwks.decode(token, external, ["exp", "sub"]) if self.jwks else {}
            elif self._hs256 is not None:
                payload = self._hs256.payload(token, now_s)
            else:
                payload = jwt.decode(
                    token,
                    self._config.verify_key,
                    algorithms=[self._config.algorithm],
                    issuer=self._config.issuer,
                    audience=self._config.audience,
                    options=pyjwt_options(required=list(self._required), verify_aud=self._config.audience is not None),
                )
            if external is not None or self._hs256 is None:  # PyJWT's paths: it left the dates to us
                check_dates(payload, now_s=now_s, skew_s=self._config.clock_skew_s)
            claims = CLAIMS_ADAPTER.validate_python(payload)
        except (jwt.ExpiredSignatureError, Expired) as exc:
            raise CodedError(ErrorCode.UNAUTHORIZED, "token expired") from exc
        except (jwt.InvalidTokenError, Refused, ValidationError, RecursionError) as exc:
            # RecursionError: PyJWT reads the unsigned JSON of a forged token as it comes.
            raise CodedError(ErrorCode.UNAUTHORIZED, "invalid token") from exc
        if claims.fam and claims.fam in self.revoked_families:
            raise CodedError(ErrorCode.UNAUTHORIZED, "this device was signed out")
        if claims.guest and not claims.fam and claims.sub in self.signed_out_users and external is None:
            # A guest token bound to no device ends when its user signs out everywhere. Every one
            # of that user's is refused, not only those whose iat is before: none is issued after
            # (one comes only from renewing another), but a node that has not heard of the
            # sign-out yet may still renew one, and the renewed one would carry a later iat. The
            # mark lasts until every token issued before it, or renewed meanwhile, has expired.
            # Tokens bound to a device end with it; the operator's (``sessionhub token``: no
            # device, not a guest) and an external provider's are not a browser's and are kept.
            raise CodedError(ErrorCode.UNAUTHORIZED, "this identity was signed out everywhere")
        if claims.fam and Permission.ADMIN in claims.perms and claims.iat <= self.admin_withdrawn.get(claims.sub, -1):
            # Refused, not read without the permission: the device's refresh cookie gives a token
            # as the user stands now, which a page asks for on this refusal. A token bound to no
            # device (``sessionhub token``) has no grant behind it and is kept. ``reason`` as the
            # admin routes' 403 says it, which this refusal answers first once the poll has it: a
            # pasted token's /admin said "Sign in" instead of "Admin permission withdrawn".
            raise CodedError(
                ErrorCode.UNAUTHORIZED, "the admin permission was withdrawn; get a new token", reason="withdrawn"
            )
        return claims
