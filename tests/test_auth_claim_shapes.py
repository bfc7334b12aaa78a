"""A token's time claims (exp, iat, nbf) of the wrong JSON shape: refused as malformed everywhere.

Python's bool is an int and PyJWT reads dates with ``int(...)``: ``"exp": true`` used to be read as
1970 and answered "token expired", ``"iat": true`` or ``"nbf": "12"`` passed, and ``exp`` 10**30
made a token that never expires. Every verification path (lean HS256, PyJWT's RS256, an external
provider's JWKS token) and both doors (Socket.IO CONNECT, HTTP) answer ``unauthorized`` with
"invalid token" for them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from auth.jwks import JwksKeys
from auth.tokens import TokenConfig, TokenService
from protocol.errors import CodedError
from tests.helpers import SECRET, Client, ServerUnderTest

PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _fresh() -> int:
    return int(time.time()) + 600


def _past() -> int:
    return int(time.time()) - 600


# Each builds a payload when the case runs (a payload built at import could expire mid-run).
BAD_SHAPES: dict[str, Callable[[], dict[str, Any]]] = {
    "exp-true": lambda: {"exp": True},
    "exp-false": lambda: {"exp": False},
    "exp-string": lambda: {"exp": str(_fresh())},
    "exp-float": lambda: {"exp": _fresh() + 0.5},
    "exp-nan": lambda: {"exp": float("nan")},
    "exp-infinity": lambda: {"exp": float("inf")},
    "exp-huge": lambda: {"exp": 10**30},
    "exp-past-year-9999": lambda: {"exp": 253_402_300_800},
    "exp-negative": lambda: {"exp": -1},
    "exp-null": lambda: {"exp": None},
    "exp-list": lambda: {"exp": [_fresh()]},
    "iat-true": lambda: {"iat": True},
    "iat-string": lambda: {"iat": str(_past())},
    "iat-nan": lambda: {"iat": float("nan")},
    "iat-minus-infinity": lambda: {"iat": float("-inf")},
    "iat-huge": lambda: {"iat": 10**30},
    "iat-object": lambda: {"iat": {}},
    "nbf-true": lambda: {"nbf": True},
    "nbf-false": lambda: {"nbf": False},
    "nbf-string": lambda: {"nbf": str(_past())},
    "nbf-nan": lambda: {"nbf": float("nan")},
    "nbf-negative": lambda: {"nbf": -5},
}


def _payload(shape: str) -> dict[str, Any]:
    return {"sub": "alice", "exp": _fresh(), **BAD_SHAPES[shape]()}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(payload: dict[str, Any]) -> str:
    # By hand: json.dumps writes NaN/Infinity (which Python's json reads back), PyJWT refuses to.
    signing_input = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(payload).encode())
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def _rs256(payload: dict[str, Any], kid: str | None = None) -> str:
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())
    signature = jwt.get_algorithm_by_name("RS256").sign(signing_input.encode(), PRIVATE_KEY)
    return signing_input + "." + _b64(signature)


def _hs256_service() -> tuple[TokenService, Callable[[dict[str, Any]], str]]:
    return TokenService(TokenConfig(algorithm="HS256", verify_key=SECRET, signing_key=SECRET)), _hs256


def _rs256_service() -> tuple[TokenService, Callable[[dict[str, Any]], str]]:
    public_pem = PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return TokenService(TokenConfig(algorithm="RS256", verify_key=public_pem.decode(), signing_key=None)), _rs256


def _jwks_service() -> tuple[TokenService, Callable[[dict[str, Any]], str]]:
    keys = JwksKeys("https://idp.example/jwks", issuer=None, audience=None, refresh_s=3600)
    public = jwt.get_algorithm_by_name("RS256").to_jwk(PRIVATE_KEY.public_key(), as_dict=True)
    assert keys.replace({"keys": [{**public, "kid": "k1", "use": "sig"}]}) == 1
    service = TokenService(TokenConfig(algorithm="HS256", verify_key=SECRET, signing_key=SECRET), jwks=keys)
    return service, lambda payload: _rs256(payload, kid="k1")


PATHS = {"hs256": _hs256_service, "rs256": _rs256_service, "jwks": _jwks_service}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_well_formed_dates_are_accepted_on_every_path(path: str) -> None:
    service, sign = PATHS[path]()
    now = int(time.time())
    assert service.verify(sign({"sub": "alice", "exp": now + 600, "iat": now - 5, "nbf": now - 5})).sub == "alice"
    # RFC 7519 allows a fraction in a NumericDate; exp stays an integer (PROTOCOL.md).
    assert service.verify(sign({"sub": "alice", "exp": now + 600, "iat": now - 5.5})).sub == "alice"
    with pytest.raises(CodedError, match="token expired"):
        service.verify(sign({"sub": "alice", "exp": now - 5}))


@pytest.mark.parametrize("shape", sorted(BAD_SHAPES))
@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_malformed_date_is_an_invalid_token_on_every_path(path: str, shape: str) -> None:
    service, sign = PATHS[path]()
    with pytest.raises(CodedError) as info:
        service.verify(sign(_payload(shape)))
    assert (info.value.code, info.value.message) == ("unauthorized", "invalid token")


@pytest.mark.parametrize("shape", ["exp-true", "iat-true", "nbf-string", "exp-nan", "exp-huge"])
async def test_the_socket_connect_refuses_a_malformed_date(server: ServerUnderTest, shape: str) -> None:
    client = Client(server.url, _hs256(_payload(shape)))
    refused: list[Any] = []
    client.sio.on("connect_error", lambda data: refused.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect()
    assert [(r["message"], r["data"]["error"], r["data"]["message"]) for r in refused] == [
        ("unauthorized", "unauthorized", "invalid token")
    ]


@pytest.mark.parametrize("shape", ["exp-true", "iat-true", "nbf-string", "exp-nan", "exp-huge"])
async def test_http_refuses_a_malformed_date(server: ServerUnderTest, shape: str) -> None:
    headers = {"Authorization": f"Bearer {_hs256(_payload(shape))}"}
    async with aiohttp.ClientSession() as http:
        for method, path in [("GET", "/api/auth/me"), ("GET", "/voicebot/sessions"), ("GET", "/api/streams")]:
            async with http.request(method, server.url + path, headers=headers) as response:
                assert response.status == 401, (path, await response.text())
                body = await response.json()
                assert (body["error"], body["message"]) == ("unauthorized", "invalid token"), path
