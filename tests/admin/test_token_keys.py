"""Nodes that verify access tokens differently are said (audit "multinode").

A node started with another SESSIONHUB_JWT_SECRET (or none, on another data folder: its own
development secret) came up ready and said nothing; a browser moving between it and the others
was refused at every request and renewed its token each time, 16 times a second.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from redis.asyncio import Redis

from auth.jwks import JwksKeys
from auth.key_fingerprint import fingerprint
from auth.tokens import TokenConfig
from tests.admin.test_http import admin_token
from tests.conftest import start_server
from tests.helpers import SECRET, RedisProcess, ServerUnderTest


def test_the_fingerprint_changes_with_what_decides_a_tokens_validity() -> None:
    config = TokenConfig(algorithm="HS256", verify_key=SECRET, signing_key=SECRET)
    same = fingerprint(config)
    assert same == fingerprint(TokenConfig(algorithm="HS256", verify_key=SECRET, signing_key=None, clock_skew_s=30))
    for other in (
        TokenConfig(algorithm="HS256", verify_key=SECRET + "x", signing_key=None),
        TokenConfig(algorithm="HS256", verify_key=SECRET, signing_key=None, issuer="https://id.example"),
        TokenConfig(algorithm="HS256", verify_key=SECRET, signing_key=None, audience="sessionhub"),
    ):
        assert fingerprint(other) != same, other
    assert len(same) == 16 and SECRET[:8] not in same
    # A node that also takes an external provider's tokens verifies what the other refuses.
    provider = JwksKeys("https://id.example/jwks.json", issuer="https://id.example", audience=None, refresh_s=300)
    assert fingerprint(config, provider) != same


def test_one_rsa_key_in_either_pem_form_has_one_fingerprint() -> None:
    """SPKI on one node, PKCS#1 on another: the same key verifies the same tokens (the PEM text's
    hash raised a critical alert for it: audit verify39)."""

    def public_pem(key: rsa.RSAPrivateKey, form: serialization.PublicFormat) -> str:
        return key.public_key().public_bytes(serialization.Encoding.PEM, form).decode()

    def of(pem: str) -> str:
        return fingerprint(TokenConfig(algorithm="RS256", verify_key=pem, signing_key=None))

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spki = public_pem(key, serialization.PublicFormat.SubjectPublicKeyInfo)
    pkcs1 = public_pem(key, serialization.PublicFormat.PKCS1)
    assert spki != pkcs1 and of(spki) == of(pkcs1) == of(spki.replace("\n", "\r\n"))
    another = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert of(public_pem(another, serialization.PublicFormat.SubjectPublicKeyInfo)) != of(spki)


async def alerts_and_nodes(server: ServerUnderTest) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    headers = {"Authorization": f"Bearer {admin_token(server)}"}
    async with aiohttp.ClientSession(base_url=server.url) as http:
        async with http.get("/admin/alerts", headers=headers) as answer:
            assert answer.status == 200, await answer.text()
            alerts = (await answer.json())["alerts"]
        async with http.get("/admin/metrics", headers=headers) as answer:
            assert answer.status == 200, await answer.text()
            nodes = (await answer.json())["nodes"]
    return alerts, nodes


async def test_a_node_with_another_secret_is_an_error_at_its_start_and_a_critical_alert(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = await start_server(redis_process.url, tmp_path / "a", admin_node_heartbeat_s=0.1)
    second = None
    try:
        alerts, nodes = await alerts_and_nodes(first)
        assert not [a for a in alerts if a["alert"] == "token_keys_differ"], alerts
        caplog.set_level(logging.ERROR, logger="handlers.admin.nodes")
        second = await start_server(
            redis_process.url, tmp_path / "b", admin_node_heartbeat_s=0.1, jwt_secret=SECRET[::-1]
        )
        said: list[str] = []
        for _ in range(100):  # its first heartbeat, then its look at the others (bounded)
            said = [r.getMessage() for r in caplog.records if "with another key than" in r.getMessage()]
            if said:
                break
            await asyncio.sleep(0.05)
        assert len(said) == 1 and "1 live node(s)" in said[0], said
        alerts, nodes = await alerts_and_nodes(first)
        assert len({node["token_keys"] for node in nodes}) == 2, nodes
        [alert] = [a for a in alerts if a["alert"] == "token_keys_differ"]
        assert alert["severity"] == "critical" and "SESSIONHUB_JWT_SECRET" in str(alert["message"])
        assert sorted(len(group) for group in alert["nodes"]) == [1, 1], alert  # type: ignore[arg-type]
    finally:
        if second is not None:
            await second.stop()
        await first.stop()
    # The odd node gone (its entry removed as it stops): no alert.
    third = await start_server(redis_process.url, tmp_path / "c", admin_node_heartbeat_s=0.1)
    try:
        alerts, _ = await alerts_and_nodes(third)
        assert not [a for a in alerts if a["alert"] == "token_keys_differ"], alerts
    finally:
        await third.stop()
