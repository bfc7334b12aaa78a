"""Keys of an external identity provider (RS256 tokens, JWKS URL): the node's cached copy.

Sites with their own accounts sign their users' tokens; sessionhub verifies them with the keys
published at ``SESSIONHUB_JWKS_URL``. Verification stays synchronous and local: this cache holds
the keys, ``handlers.jwks_watch`` refreshes it every ``refresh_s`` and at once when a token names a
key id it does not know yet (a rotation), no more often than ``min_interval_s``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import jwt


class JwksKeys:
    """The provider's current public keys by ``kid``, and which unknown kids were asked for."""

    def __init__(
        self, url: str, *, issuer: str | None, audience: str | None, refresh_s: float, min_interval_s: float = 5.0
    ) -> None:
        self.url = url
        self.issuer = issuer
        self.audience = audience
        self.refresh_s = refresh_s
        self.min_interval_s = min_interval_s
        self._keys: dict[str, Any] = {}
        self.wanted = asyncio.Event()  # set when a token names an unknown kid

    def key(self, kid: object) -> Any | None:
        """The verification key of ``kid``; an unknown one wakes the refresher."""
        if not isinstance(kid, str) or len(kid) > 256:
            return None
        found = self._keys.get(kid)
        if found is None:
            self.wanted.set()
        return found

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
        """The verified payload of an RS256 token signed with ``key`` (PyJWT's checks)."""
        return jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            issuer=self.issuer,
            audience=self.audience,
            options={"require": required, "verify_aud": self.audience is not None},
        )
