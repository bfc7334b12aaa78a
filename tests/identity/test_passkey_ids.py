"""A credential id is registered once (WebAuthn section 7.1, step 22; audit "authsec", finding 3).

A second user registering a passkey under a credential id another user registered took it over:
the owner's sign-ins with it went to the second user, or to nobody once that one removed it. A
software authenticator (none attestation, ES256) against a real server and redis-server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import cbor2
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from redis.asyncio import Redis

from tests.helpers import RedisProcess, ServerUnderTest, free_port
from tests.identity.support import Browser
from tests.test_protocol_doc import PROTOCOL

pytestmark = pytest.mark.timeout(60)


@pytest_asyncio.fixture
async def pserver(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server whose public URL is http://localhost:<port> (a relying party browsers accept)."""
    from tests.conftest import start_server

    port = free_port()
    srv = await start_server(redis_process.url, tmp_path, listen_port=port, public_url=f"http://localhost:{port}")
    srv.url = f"http://localhost:{port}"
    yield srv
    await srv.stop()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


def _b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class SoftAuthenticator:
    """One credential (its id chosen by the test) on a P-256 key, as an authenticator makes it."""

    def __init__(self, origin: str, credential_id: bytes) -> None:
        self.origin, self.rp_id = origin, origin.split("//", 1)[1].split(":", 1)[0]
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id, self.count = credential_id, 0

    def _cose(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: x, -3: y})

    def _client_data(self, kind: str, options: dict[str, Any]) -> bytes:
        fields = {"type": kind, "challenge": options["challenge"], "origin": self.origin, "crossOrigin": False}
        return json.dumps(fields).encode()

    def create(self, options: dict[str, Any]) -> dict[str, Any]:
        rp_hash = hashlib.sha256(self.rp_id.encode()).digest()
        cid = self.credential_id
        auth_data = rp_hash + bytes([0x45]) + struct.pack(">I", 0) + bytes(16)
        auth_data += struct.pack(">H", len(cid)) + cid + self._cose()
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        response = {
            "clientDataJSON": _b64u(self._client_data("webauthn.create", options)),
            "attestationObject": _b64u(attestation),
            "transports": ["internal"],
        }
        return {
            "id": _b64u(cid),
            "rawId": _b64u(cid),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
        }

    def get(self, options: dict[str, Any]) -> dict[str, Any]:
        self.count += 1
        client_data = self._client_data("webauthn.get", options)
        auth_data = hashlib.sha256(self.rp_id.encode()).digest() + bytes([0x05]) + struct.pack(">I", self.count)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        response = {
            "clientDataJSON": _b64u(client_data),
            "authenticatorData": _b64u(auth_data),
            "signature": _b64u(signature),
            "userHandle": "",
        }
        cid = self.credential_id
        return {
            "id": _b64u(cid),
            "rawId": _b64u(cid),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
        }


async def _register(browser: Browser, authenticator: SoftAuthenticator) -> Any:
    options = await browser.call("POST", "/api/auth/passkeys/register/options")
    assert options.status == 200, options.body
    credential = authenticator.create(options.body["options"])
    body = {"challenge_id": options.body["challenge_id"], "credential": credential}
    return await browser.call("POST", "/api/auth/passkeys/register", json=body)


async def _sign_in(server: ServerUnderTest, http: aiohttp.ClientSession, authenticator: SoftAuthenticator) -> Any:
    page = Browser(http, server.url)
    options = await page.post("/api/auth/passkeys/login/options", json={})
    assert options.status == 200, options.body
    body = {"challenge_id": options.body["challenge_id"], "credential": authenticator.get(options.body["options"])}
    return await page.post("/api/auth/passkeys/login", json=body)


async def _passkeys(browser: Browser) -> list[str]:
    return [p["passkey_id"] for p in (await browser.call("GET", "/api/auth/passkeys")).body["passkeys"]]


async def test_a_credential_id_registered_by_one_user_is_refused_to_another(
    pserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    owner, other = Browser(http, pserver.url), Browser(http, pserver.url)
    owner_id = (await owner.guest()).body["user_id"]
    await other.guest()
    shared_id = b"credential-id-of-the-owner-0001"
    owners_key = SoftAuthenticator(pserver.url, shared_id)
    assert (await _register(owner, owners_key)).status == 201

    taken = await _register(other, SoftAuthenticator(pserver.url, shared_id))
    assert (taken.status, taken.body["error"], taken.body.get("reason")) == (409, "conflict", "registered"), taken.body
    assert await _passkeys(other) == [] and len(await _passkeys(owner)) == 1
    assert (await other.call("GET", "/api/auth/me")).body["saved"] is False
    # The owner keeps it: its sign-ins are its own, and another key under that id is refused.
    signed_in = await _sign_in(pserver, http, owners_key)
    assert signed_in.status == 200 and signed_in.body["user_id"] == owner_id, signed_in.body
    # The same user registering it again is refused too (it is registered already).
    assert (await _register(owner, SoftAuthenticator(pserver.url, shared_id))).status == 409


async def test_two_users_racing_for_one_credential_id_one_gets_it(
    pserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    browsers = [Browser(http, pserver.url) for _ in range(6)]
    for browser in browsers:
        await browser.guest()
    shared_id = b"credential-id-raced-for-0002"
    keys = [SoftAuthenticator(pserver.url, shared_id) for _ in browsers]
    answers = await asyncio.gather(*(_register(b, k) for b, k in zip(browsers, keys, strict=True)))
    assert sorted(a.status for a in answers) == [201] + [409] * (len(browsers) - 1), [a.body for a in answers]
    winner = next(i for i, a in enumerate(answers) if a.status == 201)
    owned = [len(await _passkeys(b)) for b in browsers]
    assert owned == [int(i == winner) for i in range(len(browsers))]
    signed_in = await _sign_in(pserver, http, keys[winner])
    winner_id = pserver.tokens.verify(browsers[winner].token).sub
    assert signed_in.status == 200 and signed_in.body["user_id"] == winner_id


async def test_one_user_finishing_ceremonies_for_one_credential_at_once_gets_one_201(
    pserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """A registration cut off between its two writes (a killed node) leaves the credential claimed
    for its user with no passkey; two tabs of that person registering the authenticator again at
    once then both answered 201, the second record over the first. It is made once; the other
    ceremonies are told it is registered."""
    from storage.identity.passkeys import passkey_id_of

    for attempt in range(3):
        browser = Browser(http, pserver.url)
        user_id = (await browser.guest()).body["user_id"]
        credential_id = f"credential-cut-off-{attempt}".encode()
        key = SoftAuthenticator(pserver.url, credential_id)
        owner_key = pserver.services.keys.passkey_owner(passkey_id_of(_b64u(credential_id)))
        await pserver.services.redis.set(owner_key, user_id)  # the first write of the cut-off one
        tries = [await browser.call("POST", "/api/auth/passkeys/register/options") for _ in range(4)]
        bodies = [{"challenge_id": t.body["challenge_id"], "credential": key.create(t.body["options"])} for t in tries]
        answers = await asyncio.gather(
            *(browser.call("POST", "/api/auth/passkeys/register", json=body) for body in bodies)
        )
        assert sorted(a.status for a in answers) == [201, 409, 409, 409], [a.body for a in answers]
        assert len(await _passkeys(browser)) == 1


def test_protocol_names_the_refusal() -> None:
    doc = " ".join(PROTOCOL.read_text(encoding="utf-8").split())
    assert '`409 conflict` with `reason: "registered"`' in doc
