"""auth.hs256 against PyJWT: the same verdict on valid, expired, tampered and malformed tokens.

The lean verifier may refuse more than PyJWT (``crit`` and ``b64`` headers, malformed dates: ``true``,
``"12"``, a negative or fractional ``exp``), never accept more.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auth.hs256 import Expired, HS256Verifier, Refused
from auth.numeric_dates import numeric_date
from auth.tokens import TokenConfig, TokenService
from protocol.errors import CodedError

SECRET = "test-secret-for-hs256-0123456789-0123456789-0123456789"
NOW = 1_800_000_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: Any, payload: Any, secret: str = SECRET) -> str:
    """A token with any header and payload JSON, signed with ``secret``."""
    import hashlib
    import hmac

    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def pyjwt_verdict(token: str, *, issuer: str | None, audience: str | None) -> str:
    required = ["exp", "sub", *(["iss"] if issuer else []), *(["aud"] if audience else [])]
    try:
        jwt.decode(
            token, SECRET, algorithms=["HS256"], issuer=issuer, audience=audience,
            options={"require": required, "verify_aud": audience is not None},
        )  # fmt: skip
    except jwt.ExpiredSignatureError:
        return "expired"
    except jwt.InvalidTokenError:
        return "refused"
    return "ok"


def lean_verdict(token: str, *, issuer: str | None, audience: str | None) -> str:
    required = ("exp", "sub", *(("iss",) if issuer else ()), *(("aud",) if audience else ()))
    verifier = HS256Verifier(SECRET, required=required, issuer=issuer, audience=audience)
    try:
        verifier.payload(token, now_s=time.time())
    except Expired:
        return "expired"
    except Refused:
        return "refused"
    return "ok"


CLAIM_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10), st.integers(NOW - 5, NOW + 5),
    st.integers(int(time.time()) - 100, int(time.time()) + 100), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5), st.just(str(int(time.time()) + 100)), st.lists(st.text(max_size=3), max_size=2),
)  # fmt: skip
PAYLOADS = st.dictionaries(st.sampled_from(["exp", "sub", "iat", "nbf", "iss", "aud", "jti", "x"]), CLAIM_VALUES)
HEADERS = st.one_of(
    st.just({"alg": "HS256", "typ": "JWT"}),
    st.dictionaries(st.sampled_from(["alg", "typ", "kid", "crit", "b64"]), st.one_of(st.just("HS256"), CLAIM_VALUES)),
)


def _malformed_date(payload: dict[str, Any]) -> bool:
    """Whether a date claim is one auth.numeric_dates refuses (PyJWT's int() reads some of them)."""
    try:
        for claim in ("iat", "nbf", "exp"):
            if claim in payload:
                numeric_date(payload, claim)
    except Refused:
        return True
    return False


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=HEADERS, payload=PAYLOADS, issuer=st.sampled_from([None, "me"]), audience=st.sampled_from([None, "us"]))
def test_the_verdict_is_pyjwts_or_stricter(header: Any, payload: Any, issuer: str | None, audience: str | None) -> None:
    token = forged(header, payload)
    lean = lean_verdict(token, issuer=issuer, audience=audience)
    reference = pyjwt_verdict(token, issuer=issuer, audience=audience)
    if isinstance(header, dict) and ("crit" in header or "b64" in header):
        assert lean == "refused" or lean == reference
    elif isinstance(payload, dict) and _malformed_date(payload):
        assert lean == "refused", (header, payload)  # PyJWT reads true as 1, "12" as 12
    else:
        assert lean == reference, (header, payload)


def good_payload(**extra: Any) -> dict[str, Any]:
    return {"sub": "u1", "exp": int(time.time()) + 60, **extra}


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + "x",  # signature changed
        lambda t: t[:-2],
        lambda t: t.replace(".", "..", 1),
        lambda t: t + ".",
        lambda t: t.split(".")[0] + "." + b64(json.dumps(good_payload(sub="admin")).encode()) + "." + t.split(".")[2],
        lambda t: t.replace(t.split(".")[2], t.split(".")[2] + "=="),  # padding is not base64url
        lambda t: t.replace(t.split(".")[2], "*" + t.split(".")[2][1:]),
        lambda t: "",
        lambda t: "a.b.c",
        lambda t: t.split(".")[0] + ".é." + t.split(".")[2],  # not ASCII: refused, not an internal error
        lambda t: t.split(".")[0] + "." + t.split(".")[1] + ".\u00e9",
        lambda t: "é" + t,
    ],
)
def test_tampered_tokens_are_refused_by_both(mangle: Any) -> None:
    token = mangle(jwt.encode(good_payload(), SECRET, algorithm="HS256"))
    assert lean_verdict(token, issuer=None, audience=None) == "refused"
    assert pyjwt_verdict(token, issuer=None, audience=None) == "refused"


@pytest.mark.parametrize(
    "token",
    [
        forged({"alg": "none"}, good_payload()),
        forged({"alg": "HS512"}, good_payload()),
        forged({"alg": "hs256"}, good_payload()),
        forged({"alg": "HS256"}, good_payload(), secret="another-secret-0123456789-0123456789-0123456789"),
        forged(["HS256"], good_payload()),
        forged({"alg": "HS256"}, [good_payload()]),
        forged({"alg": "HS256", "crit": ["b64"], "b64": False}, good_payload()),
        jwt.encode(good_payload(), "x" * 64, algorithm="HS256"),
    ],
    # Named: a token's text holds its expiry (the clock at import), and pytest-xdist refuses a run
    # whose workers collected different test names (one worker crossed a second).
    ids=[
        "alg-none",
        "alg-HS512",
        "alg-lowercase",
        "another-secret",
        "header-a-list",
        "payload-a-list",
        "crit-b64",
        "another-key",
    ],
)
def test_other_algorithms_keys_and_shapes_are_refused(token: str) -> None:
    assert lean_verdict(token, issuer=None, audience=None) == "refused"


def test_the_service_answers_the_same_errors_as_before() -> None:
    service = TokenService(TokenConfig(algorithm="HS256", verify_key=SECRET, signing_key=SECRET))
    token, _ = service.mint(user_id="u1", now_s=time.time(), ttl_s=60, perms=())
    assert service.verify(token).sub == "u1"
    old, _ = service.mint(user_id="u1", now_s=time.time() - 120, ttl_s=60, perms=())
    with pytest.raises(CodedError, match="token expired"):
        service.verify(old)
    with pytest.raises(CodedError, match="invalid token"):
        service.verify(forged({"alg": "HS256"}, good_payload(sub="has space")))  # the claims' own rules
    with pytest.raises(CodedError, match="invalid token"):
        service.verify(token[:-1])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("aA0_-.=+/é\u2028\x00 eyJ"), max_size=60))
def test_any_text_is_refused_with_a_coded_error(text: str) -> None:
    service = TokenService(TokenConfig(algorithm="HS256", verify_key=SECRET, signing_key=SECRET))
    with pytest.raises(CodedError):
        service.verify(text)
    assert lean_verdict(text, issuer=None, audience=None) == "refused"


def nested_header_token() -> str:
    """A forged token whose unsigned header is arrays nested thousands deep (read before any check)."""
    return f"{b64(b'[' * 4000)}.{b64(json.dumps(good_payload()).encode())}.{b64(b'x' * 32)}"


def test_a_header_nested_thousands_deep_is_an_invalid_token_on_every_path() -> None:
    token = nested_header_token()
    assert lean_verdict(token, issuer=None, audience=None) == "refused"
    hs = TokenService(TokenConfig(algorithm="HS256", verify_key=SECRET, signing_key=SECRET))
    with pytest.raises(CodedError, match="invalid token"):
        hs.verify(token)
