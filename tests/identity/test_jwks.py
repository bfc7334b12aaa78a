"""External RS256 tokens verified with a JWKS URL: cached, refreshed, ``kid`` rotation."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from redis.asyncio import Redis

from protocol.errors import CodedError
from tests.helpers import Client, RedisProcess, ServerUnderTest

ISSUER = "https://accounts.example.org"


class Provider:
    """A site with its own accounts: RSA keys, and a JWKS document served on loopback."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []
        self.fetches = 0

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def document(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def token(self, kid: str, *, sub: str = "site-user-1", iss: str = ISSUER, ttl_s: int = 600) -> str:
        claims = {
            "sub": sub,
            "exp": int(time.time()) + ttl_s,
            "iss": iss,
            "name": "Site User",
            "perms": ["read_own", "create"],
        }
        return jwt.encode(claims, self.keys[kid], algorithm="RS256", headers={"kid": kid})

    async def serve(self, request: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response(self.document())


@pytest_asyncio.fixture
async def provider() -> AsyncIterator[tuple[Provider, str]]:
    site = Provider()
    site.add_key("k1")
    site.published = ["k1"]
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", site.serve)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    yield site, f"http://127.0.0.1:{port}/.well-known/jwks.json"
    await runner.cleanup()


@pytest_asyncio.fixture
async def jserver(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, provider: tuple[Provider, str]
) -> AsyncIterator[ServerUnderTest]:
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path, jwks_url=provider[1], jwks_issuer=ISSUER)
    yield srv
    await srv.stop()


def _accepted(server: ServerUnderTest, token: str) -> bool:
    try:
        server.tokens.verify(token)
    except CodedError:
        return False
    return True


async def test_external_tokens_are_accepted_like_ours_and_kid_rotation_is_followed(
    jserver: ServerUnderTest, provider: tuple[Provider, str], clients: list[Client]
) -> None:
    site, _ = provider
    token = site.token("k1")
    claims = jserver.tokens.verify(token)  # the keys were fetched before the server served
    assert (claims.sub, claims.name) == ("site-user-1", "Site User")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{jserver.url}/api/me/sessions", headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200
    socket = Client(jserver.url, token)
    clients.append(socket)
    await socket.connect()
    assert jserver.tokens.verify(jserver.token("alice")).sub == "alice"  # our own tokens still work

    # Rotation: the site publishes k2 and drops k1. The very first token signed with k2 is
    # accepted: its request fetches the document again before it is verified.
    site.add_key("k2")
    site.published = ["k2"]
    fetched = site.fetches
    rotated = site.token("k2")
    assert not _accepted(jserver, rotated)  # not known yet: nothing was fetched behind our back
    async with aiohttp.ClientSession() as http:
        assert await _status(http, jserver, rotated) == 200
    assert site.fetches == fetched + 1
    assert _accepted(jserver, rotated)
    assert not _accepted(jserver, site.token("k1"))  # the dropped key signs nothing any more


async def test_a_socket_connect_with_a_rotated_key_is_accepted_at_once(
    jserver: ServerUnderTest, provider: tuple[Provider, str], clients: list[Client]
) -> None:
    site, _ = provider
    site.add_key("k2")
    site.published = ["k1", "k2"]
    socket = Client(jserver.url, site.token("k2"))
    clients.append(socket)
    await socket.connect()  # refused (connect_error) before the fetch moved into the request
    assert site.fetches == 2


async def test_made_up_kids_cost_at_most_one_fetch(jserver: ServerUnderTest, provider: tuple[Provider, str]) -> None:
    site, _ = provider
    fetched = site.fetches
    site.add_key("k2")  # signs, but never published: every kid below is unknown to the provider
    # One made-up kid sent 25 times at once, then 25 more made-up kids one after another.
    forged = [_with_kid(site, "k2", secrets.token_hex(8))] * 25 + [
        _with_kid(site, "k2", secrets.token_hex(8)) for _ in range(25)
    ]
    async with aiohttp.ClientSession() as http:
        statuses = await asyncio.gather(*(_status(http, jserver, token) for token in forged[:25]))
        statuses += [await _status(http, jserver, token) for token in forged[25:]]
    assert statuses == [401] * 50
    assert site.fetches <= fetched + 1, site.fetches - fetched
    assert jserver.tokens.verify(site.token("k1")).sub == "site-user-1"  # the known key still works


def _with_kid(site: Provider, signer: str, kid: str) -> str:
    claims = {"sub": "site-user-1", "exp": int(time.time()) + 600, "iss": ISSUER}
    return jwt.encode(claims, site.keys[signer], algorithm="RS256", headers={"kid": kid})


async def _status(http: aiohttp.ClientSession, server: ServerUnderTest, token: str) -> int:
    async with http.get(f"{server.url}/api/me/sessions", headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status


async def test_external_tokens_are_checked_as_strictly_as_ours(
    jserver: ServerUnderTest, provider: tuple[Provider, str]
) -> None:
    site, _ = provider
    assert not _accepted(jserver, site.token("k1", iss="https://evil.example"))
    assert not _accepted(jserver, site.token("k1", ttl_s=-10))
    assert not _accepted(jserver, site.token("k1", sub="{bad id}"))
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"sub": "site-user-1", "exp": int(time.time()) + 60, "iss": ISSUER}
    assert not _accepted(jserver, jwt.encode(claims, forged, algorithm="RS256", headers={"kid": "k1"}))
    assert not _accepted(jserver, jwt.encode(claims, "", algorithm="none", headers={"kid": "k1"}))
