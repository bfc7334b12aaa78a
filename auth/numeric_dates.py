"""A token's time claims (``iat``, ``nbf``, ``exp``): their shape first, then the clock.

RFC 7519 says a NumericDate is a JSON number. PyJWT reads these claims with ``int(...)``, which
takes ``true`` as 1 (so ``"exp": true`` read as *expired*, not as malformed), ``"12"`` as 12 and
``NaN`` as an error; and Python's ``json`` reads ``NaN`` and ``Infinity``. Every verification path
(the lean HS256 verifier, PyJWT's RS256, an external provider's JWKS tokens) checks the shape here,
before any expiry, so a malformed date is refused the same way everywhere: ``invalid token``.
"""

from __future__ import annotations

import math
from typing import Any

from jwt.types import Options

from auth.token_errors import Expired, Refused

# 9999-12-31T23:59:59Z: past it a "date" is no date any issuer writes (nor datetime can read); an
# exp of 10**30 would otherwise be a token that never expires.
MAX_NUMERIC_DATE_S = 253_402_300_799

DATE_CLAIMS = ("iat", "nbf", "exp")


def numeric_date(payload: dict[str, Any], claim: str) -> float:
    """The value of ``claim`` when it is a well-formed NumericDate; :class:`Refused` otherwise.

    ``exp`` must be an integer (as the claims model says); ``iat`` and ``nbf`` may carry a
    fraction, as RFC 7519 allows. ``bool`` is refused although Python counts it as an ``int``.
    """
    value = payload[claim]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Refused(f"{claim} is not a number")
    if claim == "exp" and not isinstance(value, int):
        raise Refused("exp is not an integer")
    if isinstance(value, float) and not math.isfinite(value):
        raise Refused(f"{claim} is not a finite number")
    if not 0 <= value <= MAX_NUMERIC_DATE_S:
        raise Refused(f"{claim} is out of range")
    return value


def check_dates(payload: dict[str, Any], *, now_s: float, skew_s: int) -> None:
    """:class:`Refused` for a malformed or not-yet-valid date, :class:`Expired` for a passed ``exp``.

    ``skew_s`` lets ``iat``/``nbf`` lie that far in this node's future (another node's clock
    ahead); ``exp`` is never stretched.
    """
    dates = {claim: numeric_date(payload, claim) for claim in DATE_CLAIMS if claim in payload}
    for claim in ("iat", "nbf"):
        if claim in dates and dates[claim] > now_s + skew_s:
            raise Refused(f"not valid yet ({claim})")
    if "exp" in dates and dates["exp"] <= now_s:
        raise Expired("expired")


def pyjwt_options(*, required: list[str], verify_aud: bool) -> Options:
    """Options for ``jwt.decode`` that leave the dates to :func:`check_dates` (PyJWT would read
    ``"exp": true`` as an expired token, and its leeway stretches ``exp`` as well)."""
    dates_off: Options = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}
    return {"require": required, "verify_aud": verify_aud, **dates_off}
