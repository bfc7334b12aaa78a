"""Keys of an external identity provider (RS256 tokens, JWKS URL): the node's cached copy.

Sites with their own accounts sign their users' tokens; sessionhub verifies them with the keys
published at ``SESSIONHUB_JWKS_URL``. Verification stays synchronous and local: this cache holds
the keys, ``handlers.jwks_watch`` refreshes it every ``refresh_s``. A token naming a key id the
cache does not know (the provider rotated its key) makes the request await :meth:`JwksKeys.refetch`
before it is verified, so the first token signed with a new key is accepted. Made-up kids cost
nothing: one fetch at a time, and at most one every ``min_interval_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt

from auth.numeric_dates import pyjwt_options

# A forger may send tokens with made-up kids at any rate: each could otherwise be one fetch of the
# provider's JWKS URL. A genuine rotation waits at most this long behind such a flood.
REFETCH_MIN_INTERVAL_S = 30.0


class JwksKeys:
    """The provider's current public keys by ``kid``, and which unknown kids were asked for."""

    def __init__(
        self,
        url: str,
        *,
        issuer: str | None,
        audience: str | None,
        refresh_s: float,
        min_interval_s: float = REFETCH_MIN_INTERVAL_S,
    ) -> None:
        self.url = url
        self.issuer = issuer
        self.audience = audience
        self.refresh_s = refresh_s
        self.min_interval_s = min_interval_s
        self._keys: dict[str, Any] = {}
        # Set by handlers.jwks_watch while the app runs: one fetch of the document.
        self.fetcher: Callable[[], Awaitable[None]] | None = None
        self._inflight: asyncio.Future[None] | None = None
        self._last_refetch_s = -float("inf")  # time.monotonic() of the last refetch for an unknown kid

    def key(self, kid: object) -> Any | None:
        """The verification key of ``kid``, None when unknown."""
        if not isinstance(kid, str) or len(kid) > 256:
            return None
        return self._keys.get(kid)

    def knows(self, kid: object) -> bool:
        """Whether ``kid`` names a key of the cached document (a malformed kid counts as known:
        fetching again would not make it verify)."""
        return not isinstance(kid, str) or len(kid) > 256 or kid in self._keys

    async def refetch(self) -> None:
        """Fetch the document again now, for a token naming an unknown kid.

        Single-flight: callers arriving while a fetch runs wait for that one. Rate-limited: within
        ``min_interval_s`` of the last refetch nothing is fetched (the cache answers as it is).
        """
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
            return
        if self.fetcher is None or time.monotonic() - self._last_refetch_s < self.min_interval_s:
            return
        self._last_refetch_s = time.monotonic()
        task = asyncio.ensure_future(self.fetcher())
        self._inflight = task
        try:
            # Shielded: a client that hangs up must not cancel the fetch the others wait for.
            await asyncio.shield(task)
        finally:
            if task.done():
                self._inflight = None
            else:
                task.add_done_callback(lambda _: setattr(self, "_inflight", None))

    def replace(self, document: Any) -> int:
        """Adopt a fetched JWKS document (RSA signing keys with a ``kid``); how many keys."""
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWKS document")
        keys: dict[str, Any] = {}
        for entry in document["keys"]:
            if not isinstance(entry, dict) or entry.get("kty") != "RSA" or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") != "RS256":
                continue
            try:
                keys[entry["kid"]] = jwt.PyJWK.from_dict(entry, algorithm="RS256").key
            except jwt.PyJWKError:
                continue  # one malformed key does not cost the others
        self._keys = keys
        return len(keys)

    def decode(self, token: str, key: Any, required: list[str]) -> dict[str, Any]:
        """The payload of an RS256 token signed with ``key``: signature, issuer, audience and
        required claims checked by PyJWT; its dates are left to the caller (auth.numeric_dates,
        which reads them strictly and allows the provider's clock its skew for iat/nbf only)."""
        options = pyjwt_options(required=required, verify_aud=self.audience is not None)
        return jwt.decode(token, key, algorithms=["RS256"], issuer=self.issuer, audience=self.audience, options=options)
