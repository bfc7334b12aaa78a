"""Identity: pinned algorithms, required claims, refused connections, guest tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from auth.claims import Permission
from auth.tokens import TokenConfig, TokenService
from protocol.errors import CodedError
from tests.helpers import SECRET, Client, ServerUnderTest, to_window_start

HS = TokenService(TokenConfig(algorithm="HS256", verify_key=SECRET, signing_key=SECRET))


def _rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def _hs256_by_hand(claims: dict[str, object], key: bytes) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


def test_round_trip_keeps_claims() -> None:
    token, exp = HS.mint(user_id="u1", now_s=time.time(), ttl_s=60, perms=(Permission.READ_OWN,), telegram_user_id="42")
    claims = HS.verify(token)
    assert (claims.sub, claims.exp, claims.perms, claims.telegram_user_id) == ("u1", exp, (Permission.READ_OWN,), "42")


def _fresh() -> int:
    """An expiry a minute ahead of *now*: computed when the case runs, not when the module is imported
    (a payload built at import time is expired once the run passes the one-minute mark, and then
    every case "passes" for the wrong reason)."""
    return int(time.time()) + 60


@pytest.mark.parametrize(
    "payload, why, message",
    [
        (lambda: {"sub": "u1"}, "no exp", "invalid token"),
        (lambda: {"exp": _fresh()}, "no sub", "invalid token"),
        (lambda: {"sub": "u1", "exp": int(time.time()) - 1}, "expired", "token expired"),
        (lambda: {"sub": "bad{id}", "exp": _fresh()}, "sub unsafe for keys", "invalid token"),
        (lambda: {"sub": "u1", "exp": _fresh(), "perms": ["root"]}, "unknown permission", "invalid token"),
        (lambda: {"sub": "u1", "exp": str(_fresh())}, "exp as a numeric string", "invalid token"),
        (lambda: {"sub": "u1", "exp": _fresh(), "guest": "yes"}, "guest not a boolean", "invalid token"),
    ],
)
def test_bad_claims_are_unauthorized(payload: Any, why: str, message: str) -> None:
    token = jwt.encode(payload(), SECRET, algorithm="HS256")
    with pytest.raises(CodedError) as info:
        HS.verify(token)
    assert (info.value.code, info.value.message) == ("unauthorized", message), why


def test_algorithm_is_pinned() -> None:
    claims = {"sub": "u1", "exp": int(time.time()) + 60}
    unsigned = jwt.encode(claims, None, algorithm="none")
    other_alg = jwt.encode(claims, SECRET, algorithm="HS512")
    for token in (unsigned, other_alg, "not-a-token", "", None, 42):
        with pytest.raises(CodedError):
            HS.verify(token)


def test_rs256_verifies_and_refuses_hs256_made_with_the_public_key() -> None:
    private, public = _rsa_pair()
    rs = TokenService(TokenConfig(algorithm="RS256", verify_key=public, signing_key=private))
    token, _ = rs.mint(user_id="u1", now_s=time.time(), ttl_s=60, perms=())
    assert rs.verify(token).sub == "u1"
    # The classic key-confusion attack: an HS256 token "signed" with the public key.
    forged = _hs256_by_hand({"sub": "admin", "exp": int(time.time()) + 60, "perms": ["admin"]}, public.encode())
    with pytest.raises(CodedError):
        rs.verify(forged)


def test_rs256_refuses_a_header_nested_thousands_deep_as_an_invalid_token() -> None:
    # PyJWT reads the unsigned header's JSON as it comes: a RecursionError, not a 500.
    private, public = _rsa_pair()
    rs = TokenService(TokenConfig(algorithm="RS256", verify_key=public, signing_key=private))
    token, _ = rs.mint(user_id="u1", now_s=time.time(), ttl_s=60, perms=())
    head = base64.urlsafe_b64encode(b"[" * 4000).rstrip(b"=").decode()
    with pytest.raises(CodedError, match="invalid token"):
        rs.verify(head + token[token.index(".") :])


def test_issuer_and_audience_are_checked_when_configured() -> None:
    strict = TokenService(
        TokenConfig(algorithm="HS256", verify_key=SECRET, signing_key=SECRET, issuer="me", audience="us")
    )
    good, _ = strict.mint(user_id="u1", now_s=time.time(), ttl_s=60, perms=())
    assert strict.verify(good).sub == "u1"
    plain, _ = HS.mint(user_id="u1", now_s=time.time(), ttl_s=60, perms=())
    with pytest.raises(CodedError):
        strict.verify(plain)  # no iss / aud
    wrong = jwt.encode(
        {"sub": "u1", "exp": int(time.time()) + 60, "iss": "me", "aud": "them"}, SECRET, algorithm="HS256"
    )
    with pytest.raises(CodedError):
        strict.verify(wrong)


@pytest.mark.parametrize("algorithm", ["HS256", "RS256"])
def test_a_token_from_a_clock_a_little_ahead_is_accepted_and_its_expiry_is_still_strict(algorithm: str) -> None:
    # Another node (or the provider) minted it with its clock 20 s ahead of this one's.
    private, public = _rsa_pair() if algorithm == "RS256" else (SECRET, SECRET)
    skewed = TokenService(TokenConfig(algorithm=algorithm, verify_key=public, signing_key=private, clock_skew_s=30))
    strict = TokenService(TokenConfig(algorithm=algorithm, verify_key=public, signing_key=private))
    now = time.time()
    ahead, _ = skewed.mint(user_id="u1", now_s=now + 20, ttl_s=60, perms=())
    assert skewed.verify(ahead).sub == "u1"
    with pytest.raises(CodedError, match="invalid token"):
        strict.verify(ahead)  # "not valid yet (iat)" with no skew allowed
    too_far, _ = skewed.mint(user_id="u1", now_s=now + 60, ttl_s=600, perms=())
    with pytest.raises(CodedError, match="invalid token"):
        skewed.verify(too_far)
    nbf = jwt.encode({"sub": "u1", "exp": int(now) + 60, "nbf": int(now) + 20}, private, algorithm=algorithm)
    assert skewed.verify(nbf).sub == "u1"
    # The skew never stretches an expiry: a token 5 s past its exp is expired on every path.
    late = jwt.encode({"sub": "u1", "exp": int(now) - 5, "iat": int(now) - 65}, private, algorithm=algorithm)
    with pytest.raises(CodedError, match="token expired"):
        skewed.verify(late)


async def test_the_server_accepts_a_token_another_nodes_clock_minted_seconds_ahead(server: ServerUnderTest) -> None:
    # SESSIONHUB_JWT_CLOCK_SKEW_S defaults to 30: a node whose clock is 10 s ahead minted this.
    token, _ = server.tokens.mint(user_id="alice", now_s=time.time() + 10, ttl_s=600, perms=(Permission.READ_OWN,))
    client = Client(server.url, token)
    try:
        await client.connect()
        assert client.sio.connected
    finally:
        await client.sio.disconnect()


def _nested_header_token() -> str:
    """A forged token whose unsigned header is arrays nested thousands deep."""
    part = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
    return f"{part(b'[' * 4000)}.{part(b'{}')}.{part(b'x' * 32)}"


@pytest.mark.parametrize("token", [None, "garbage", "expired", "nested-header"])
async def test_connection_without_a_valid_token_is_refused(server: ServerUnderTest, token: str | None) -> None:
    if token == "expired":
        token = jwt.encode({"sub": "alice", "exp": int(time.time()) - 5}, SECRET, algorithm="HS256")
    elif token == "nested-header":
        token = _nested_header_token()
    client = Client(server.url, token)
    refused: list[object] = []
    client.sio.on("connect_error", lambda data: refused.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect()
    assert len(refused) == 1
    assert refused[0]["message"] == "unauthorized"  # type: ignore[index]
    assert refused[0]["data"]["error"] == "unauthorized"  # type: ignore[index]


async def test_guest_token_works_for_its_own_sessions(server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/api/auth/guest") as resp:
            assert resp.status == 201
            body = await resp.json()
        claims = server.tokens.verify(body["token"])
        assert claims.guest and claims.sub == body["user_id"] and claims.sub.startswith("guest-")
        assert set(claims.perms) == {Permission.READ_OWN, Permission.CREATE, Permission.UPDATE}
        assert body["expires_at"] - time.time() <= 3600 + 5
        headers = {"Authorization": f"Bearer {body['token']}"}
        async with http.post(f"{server.url}/voicebot/create_session", headers=headers, json={}) as resp:
            assert resp.status == 201


async def test_guest_tokens_are_rate_limited_per_address(
    redis_process: object, redis: object, tmp_path: object
) -> None:
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path, guests_per_min=2)  # type: ignore[attr-defined]
    try:
        to_window_start(srv.services.clock)
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(3):
                async with http.post(f"{srv.url}/api/auth/guest") as resp:
                    statuses.append(resp.status)
                    last = await resp.json()
        assert statuses == [201, 201, 429] and last["error"] == "rate_limited"
    finally:
        await srv.stop()


async def test_refresh_keeps_the_guest_and_refuses_others(server: ServerUnderTest) -> None:
    guest, _ = server.tokens.mint(
        user_id="guest-1", now_s=time.time(), ttl_s=120, perms=(Permission.READ_OWN,), guest=True
    )
    async with aiohttp.ClientSession() as http:

        async def refresh(token: str) -> tuple[int, dict[str, object]]:
            async with http.post(
                f"{server.url}/api/auth/refresh", headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                return resp.status, await resp.json()

        status, body = await refresh(guest)
        assert status == 200 and body["user_id"] == "guest-1"
        claims = server.tokens.verify(body["token"])
        assert claims.sub == "guest-1" and claims.guest and claims.exp > time.time() + 3000
        assert (await refresh(server.token("alice")))[1]["error"] == "forbidden"  # not a guest token
        expired = jwt.encode({"sub": "guest-1", "exp": int(time.time()) - 1, "guest": True}, SECRET, algorithm="HS256")
        assert (await refresh(expired))[0] == 401


async def test_forwarded_for_is_used_only_when_trusted(redis_process: object, redis: object, tmp_path: object) -> None:
    from tests.conftest import start_server

    # The address is the hop the trusted proxy wrote, the last: what came before it the client
    # chose (a proxy that appends passes it on), so a new first hop per request is no new address.
    cases = (
        (False, "10.0.0.{i}", [201, 201, 429]),
        (True, "10.0.0.{i}", [201, 201, 201]),
        (True, "192.0.2.1, 10.0.0.{i}", [201, 201, 201]),
        (True, "10.0.0.{i}, 192.0.2.1", [201, 201, 429]),
    )
    for trusted, forwarded, expected in cases:
        await redis.flushall()  # type: ignore[attr-defined]
        srv = await start_server(redis_process.url, tmp_path, guests_per_min=2, trust_forwarded_for=trusted)  # type: ignore[attr-defined]
        try:
            to_window_start(srv.services.clock)
            async with aiohttp.ClientSession() as http:
                statuses = []
                for i in range(3):
                    headers = {"X-Forwarded-For": forwarded.format(i=i)}
                    async with http.post(f"{srv.url}/api/auth/guest", headers=headers) as resp:
                        statuses.append(resp.status)
            assert statuses == expected, (trusted, forwarded)
        finally:
            await srv.stop()


async def test_forwarded_proto_is_the_value_the_trusted_proxy_wrote(
    redis_process: object, redis: object, tmp_path: object
) -> None:
    """The refresh cookie is Secure when the trusted proxy's own X-Forwarded-Proto value, the
    last (every header one list, as X-Forwarded-For), says https: a value before it came with
    the request, the client's word."""
    from multidict import CIMultiDict

    from tests.conftest import start_server

    cases: tuple[tuple[bool, list[str], bool], ...] = (
        (False, ["https"], False),  # no trusted proxy: the header is anyone's
        (True, ["https"], True),
        (True, ["HTTPS"], True),
        (True, ["http"], False),
        (True, ["http, https"], True),  # the proxy appended its value to the client's
        (True, ["http", "https"], True),  # ... or added a header of its own after it
        (True, ["https, http"], False),  # the client claimed https; the proxy saw http
        (True, ["https", "http"], False),
    )
    for trusted, values, secure in cases:
        srv = await start_server(redis_process.url, tmp_path, trust_forwarded_for=trusted)  # type: ignore[attr-defined]
        try:
            async with aiohttp.ClientSession() as http:
                # A page's request (the client header) is the one that gets the refresh cookie.
                headers = CIMultiDict([("X-Sessionhub-Client", "1")])
                headers.extend(("X-Forwarded-Proto", value) for value in values)
                async with http.post(f"{srv.url}/api/auth/guest", headers=headers) as resp:
                    assert resp.status == 201, await resp.text()
                    cookie = resp.cookies["sessionhub_refresh"]
            assert bool(cookie["secure"]) is secure, (trusted, values)
        finally:
            await srv.stop()


async def test_an_ipv6_client_is_one_address_per_64(redis_process: object, redis: object, tmp_path: object) -> None:
    from tests.conftest import start_server

    # A host may use any address of its /64: one per request was a new address for every cap.
    cases = (
        ("2001:db8:1:2::{i}", [201, 201, 429]),
        ("2001:db8:1:2:{i}:a:b:c", [201, 201, 429]),
        ("2001:db8:1:{i}::1", [201, 201, 201]),  # three networks
        ("::ffff:10.0.0.{i}", [201, 201, 201]),  # IPv4 addresses, mapped
    )
    for forwarded, expected in cases:
        await redis.flushall()  # type: ignore[attr-defined]
        srv = await start_server(redis_process.url, tmp_path, guests_per_min=2, trust_forwarded_for=True)  # type: ignore[attr-defined]
        try:
            to_window_start(srv.services.clock)
            async with aiohttp.ClientSession() as http:
                statuses = []
                for i in range(1, 4):
                    headers = {"X-Forwarded-For": forwarded.format(i=i)}
                    async with http.post(f"{srv.url}/api/auth/guest", headers=headers) as resp:
                        statuses.append(resp.status)
            assert statuses == expected, forwarded
        finally:
            await srv.stop()


async def test_a_token_nested_thousands_deep_is_401_on_every_route_not_500(server: ServerUnderTest) -> None:
    headers = {"Authorization": f"Bearer {_nested_header_token()}"}
    async with aiohttp.ClientSession() as http:
        for method, path in [
            ("GET", "/api/auth/me"),
            ("GET", "/voicebot/sessions"),
            ("POST", "/voicebot/create_session"),
            ("GET", "/api/streams"),
            ("GET", "/api/me/sessions"),
            ("GET", "/admin/sessions"),
        ]:
            async with http.request(method, server.url + path, headers=headers, json={}) as response:
                assert response.status == 401, (path, await response.text())
                assert (await response.json())["error"] == "unauthorized"
        # The pattern API takes no token: a bad one names nobody and refuses nothing.
        async with http.post(server.url + "/api/sessions", headers=headers, json={}) as response:
            assert response.status == 201, await response.text()
