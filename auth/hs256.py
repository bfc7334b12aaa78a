"""HS256 token verification without PyJWT's layers, with PyJWT's rules for what sessionhub uses.

Every connection verifies a token; with PyJWT (its option merging, key preparation and claim
dispatch) ``TokenService.verify`` took about 40 µs, with this about 19, claims model included.

It accepts a strict subset of what ``jwt.decode(token, key, algorithms=["HS256"], ...)``
accepts with sessionhub's options: a
header that is a JSON object with ``alg`` exactly ``HS256``, no ``crit`` or ``b64`` (RFC 7797
payloads are refused) and a string ``kid`` if any; an HMAC-SHA256 signature compared in
constant time; a payload that is a JSON object whose ``iat``, ``nbf`` and ``exp`` are
well-formed NumericDates (``auth.numeric_dates``: stricter than PyJWT's ``int(...)``, which
takes ``true``, ``"12"`` and ``-5``), with ``exp`` in the future and ``iat``/``nbf`` not (beyond
``clock_skew_s``, PyJWT's ``leeway`` for those two only); ``sub`` and ``jti`` strings when
present; the required claims, issuer and audience as configured. ``tests/test_hs256.py``
checks it against PyJWT on valid, expired, tampered and malformed tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from typing import Any

from auth.numeric_dates import check_dates
from auth.token_errors import Expired, Refused

__all__ = ["Expired", "HS256Verifier", "Refused"]

_SEGMENT = re.compile(r"^[A-Za-z0-9_-]*$")


def _segment(text: str) -> bytes:
    # base64url without padding, as RFC 7515 writes it; anything else is refused (the stdlib
    # decoder would skip characters outside the alphabet).
    if not _SEGMENT.match(text):
        raise Refused("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise Refused("not base64url") from exc


def _object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused("not JSON") from exc
    except RecursionError as exc:  # arrays nested thousands deep: read before the signature is
        raise Refused("nested too deeply") from exc
    if not isinstance(value, dict):
        raise Refused("not a JSON object")
    return value


class HS256Verifier:
    """Verifies HS256 tokens signed with one secret (see the module docstring)."""

    def __init__(
        self,
        secret: str,
        *,
        required: tuple[str, ...],
        issuer: str | None,
        audience: str | None,
        clock_skew_s: int = 0,
    ) -> None:
        self._secret = secret.encode()
        self._clock_skew_s = clock_skew_s
        self._required = required
        self._issuer = issuer
        self._audience = audience

    def payload(self, token: str, now_s: float | None = None) -> dict[str, Any]:
        """The verified payload; :class:`Expired` or :class:`Refused` otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            raise Refused("not three segments")
        header_b64, payload_b64, signature_b64 = parts
        # Every segment is checked to be base64url (so ASCII) before anything else reads it.
        header_raw, payload_raw, signature = _segment(header_b64), _segment(payload_b64), _segment(signature_b64)
        header = _object(header_raw)
        if header.get("alg") != "HS256" or "crit" in header or "b64" in header:
            raise Refused("not a plain HS256 token")
        if "kid" in header and not isinstance(header["kid"], str):
            raise Refused("kid is not a string")
        signed = f"{header_b64}.{payload_b64}".encode("ascii")
        expected = hmac.new(self._secret, signed, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            raise Refused("bad signature")
        payload = _object(payload_raw)
        self._check_claims(payload, time.time() if now_s is None else now_s)
        return payload

    def _check_claims(self, payload: dict[str, Any], now_s: float) -> None:
        for claim in self._required:
            if payload.get(claim) is None:
                raise Refused(f"{claim} is missing")
        # A token minted by another node (or provider) whose clock runs ahead is not refused as
        # "not valid yet" for a skew this small; its expiry is still read strictly. A malformed
        # date ("exp": true, "12", NaN) is refused before any of that, never read as expired.
        check_dates(payload, now_s=now_s, skew_s=self._clock_skew_s)
        if self._issuer is not None and payload.get("iss") != self._issuer:
            raise Refused("wrong issuer")
        if self._audience is not None:
            self._check_audience(payload.get("aud"))
        for claim in ("sub", "jti"):
            if claim in payload and not isinstance(payload[claim], str):
                raise Refused(f"{claim} is not a string")

    def _check_audience(self, claimed: Any) -> None:
        if not claimed:
            raise Refused("aud is missing")
        audiences = [claimed] if isinstance(claimed, str) else claimed
        if not isinstance(audiences, list) or any(not isinstance(a, str) for a in audiences):
            raise Refused("aud is malformed")
        if self._audience not in audiences:
            raise Refused("wrong audience")
