"""X-Forwarded-* at the front door: the client address behind a chain of trusted proxies
(SESSIONHUB_TRUSTED_PROXY_HOPS), and the scheme and host Socket.IO's origin check takes from
X-Forwarded-Proto (only http or https) and X-Forwarded-Host (one valid host[:port]): only from
trusted proxies, at the same hop, and the same on both lanes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from pydantic import ValidationError

from handlers.http_common import address_of
from server.settings import Settings
from tests.conftest import start_server
from tests.helpers import BOTH_LANES, RedisProcess, ServerUnderTest
from tests.raw_wire import http_exchange, port_of
from tests.test_cli import one_line_refusal, run
from tests.transport.test_front import open_request


@pytest.mark.parametrize(
    ("header", "hops", "client"),
    [
        ("203.0.113.9", 1, "203.0.113.9"),
        ("6.6.6.6, 203.0.113.9", 1, "203.0.113.9"),  # the hop before the proxy's is the client's word
        ("6.6.6.6, 203.0.113.9, 10.0.0.2", 2, "203.0.113.9"),  # the last hop is the inner proxy
        ("203.0.113.9,10.0.0.2", 2, "203.0.113.9"),
        ("203.0.113.9", 2, "203.0.113.9"),  # fewer hops than proxies: the first
        ("", 2, "192.0.2.1"),  # none: the peer
        ("6.6.6.6, 203.0.113.9", 0, "192.0.2.1"),  # no trusted proxy: the header is ignored
    ],
)
def test_the_client_is_the_hop_the_outermost_trusted_proxy_wrote(header: str, hops: int, client: str) -> None:
    assert address_of("192.0.2.1", header, hops) == client


def test_the_number_of_hops_is_checked_at_start(tmp_path: Path) -> None:
    for wrong in (0, 17):
        with pytest.raises(ValidationError, match="trusted_proxy_hops"):
            Settings(trusted_proxy_hops=wrong)
    assert Settings(trust_forwarded_for=True, trusted_proxy_hops=3).forwarded_hops == 3
    assert Settings(trusted_proxy_hops=3).forwarded_hops == 0  # not trusted: no hop is read
    one_line_refusal(run("serve", data_dir=tmp_path, SESSIONHUB_TRUSTED_PROXY_HOPS="0"), "TRUSTED_PROXY_HOPS")


async def _caller_of_a_create(server: ServerUnderTest, forwarded_for: str) -> list[str]:
    """The address a pattern create was counted under (its Idempotency-Key belongs to it)."""
    headers = {"Idempotency-Key": str(uuid.uuid4()), "X-Forwarded-For": forwarded_for}
    async with aiohttp.ClientSession() as http, http.post(server.url + "/api/sessions", json={}, headers=headers) as r:
        assert r.status == 201
    redis = server.services.redis
    found = [
        key async for key in redis.scan_iter(match=f"{server.services.keys.prefix}:{{idem:a:*}}:pattern_create#keys")
    ]
    await redis.delete(*found)
    return [key.split("{idem:a:", 1)[1].split("}", 1)[0] for key in found]


async def test_behind_two_trusted_proxies_the_client_is_the_hop_before_the_inner_one(
    redis_process: RedisProcess, redis: object, tmp_path: Path
) -> None:
    server = await start_server(redis_process.url, tmp_path, trust_forwarded_for=True, trusted_proxy_hops=2)
    try:
        assert await _caller_of_a_create(server, "6.6.6.6, 203.0.113.9, 10.0.0.2") == ["203.0.113.9"]
        assert await _caller_of_a_create(server, "203.0.113.7") == ["203.0.113.7"]  # one hop: the first
    finally:
        await server.stop()


# Both lanes answer a WebSocket open the same (the stock lane is what serves on untested versions).
LANES = BOTH_LANES


@pytest_asyncio.fixture
async def proxied(
    redis_process: RedisProcess, redis: object, tmp_path: Path, lane: str
) -> AsyncIterator[ServerUnderTest]:
    server = await start_server(redis_process.url, tmp_path, trust_forwarded_for=True, transport=lane)
    yield server
    await server.stop()


@pytest_asyncio.fixture
async def unproxied(
    redis_process: RedisProcess, redis: object, tmp_path: Path, lane: str
) -> AsyncIterator[ServerUnderTest]:
    server = await start_server(redis_process.url, tmp_path, transport=lane)
    yield server
    await server.stop()


async def _opened(server: ServerUnderTest, origin: str, *proto: str, host: tuple[str, ...] = ()) -> int:
    """The status of a WebSocket open from ``origin`` to host ``x``, with these
    ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` headers (several go the aiohttp way: the
    front takes no repeated one)."""
    extra = f"Origin: {origin}\r\n" + "".join(f"X-Forwarded-Proto: {value}\r\n" for value in proto)
    extra += "".join(f"X-Forwarded-Host: {value}\r\n" for value in host)
    status, _ = await http_exchange(port_of(server.url), open_request(extra=extra))
    return status


@pytest.mark.parametrize(
    ("origin", "proto", "status"),
    [
        pytest.param("https://x", ("https",), 101, id="the-proxy-says-https"),
        pytest.param("http://x", ("http",), 101, id="the-proxy-says-http"),
        pytest.param("https://x", ("https, http",), 400, id="the-client-said-https-the-proxy-http"),
        pytest.param("https://x", ("https", "http"), 400, id="the-same-as-two-headers"),
        pytest.param("http://x", ("https", "http"), 101, id="two-headers-the-proxys-last"),
        pytest.param("javascript://x", ("javascript",), 400, id="not-a-scheme-of-this-server"),
        pytest.param("http://x", ("javascript",), 101, id="not-a-scheme-is-ignored"),
        pytest.param("https,http://x", ("https,http",), 400, id="the-raw-list-as-a-scheme"),
    ],
)
@LANES
async def test_the_origin_check_takes_only_http_or_https_from_the_proxys_hop(
    proxied: ServerUnderTest, origin: str, proto: tuple[str, ...], status: int
) -> None:
    assert await _opened(proxied, origin, *proto) == status


@LANES
async def test_without_a_trusted_proxy_the_hosts_origin_is_taken_over_either_scheme(unproxied: ServerUnderTest) -> None:
    """A TLS-terminating proxy nobody declared: the pages' ``https://<Host>`` origin still
    connects (it did before, and refusing it broke every such install); no other word is a
    scheme, and no other host passes, whatever ``X-Forwarded-Proto`` or ``X-Forwarded-Host`` says."""
    server = unproxied
    assert await _opened(server, "https://x", "https") == 101
    assert await _opened(server, "https://x") == 101
    assert await _opened(server, "http://x", "https") == 101
    assert await _opened(server, "javascript://x", "javascript") == 400
    assert await _opened(server, "https,http://x", "https,http") == 400
    assert await _opened(server, "https://elsewhere", "https") == 400
    assert await _opened(server, "http://elsewhere", host=("elsewhere",)) == 400  # the client's word
    assert await _opened(server, "https://elsewhere", "https", host=("elsewhere",)) == 400
    assert await _opened(server, "https://x", host=("elsewhere",)) == 101


@pytest.mark.parametrize(
    ("origin", "host", "status"),
    [
        pytest.param("https://public.example", ("public.example",), 101, id="the-proxy-names-the-public-host"),
        pytest.param("https://public.example:8443", ("public.example:8443",), 101, id="with-a-port"),
        pytest.param("https://public.example", ("Public.Example",), 101, id="hosts-are-case-blind"),
        pytest.param("https://[2001:db8::1]:8443", ("[2001:db8::1]:8443",), 101, id="an-ipv6-literal"),
        pytest.param("https://x", ("public.example",), 101, id="the-host-header-still-passes"),
        pytest.param("https://evil.example", ("evil.example, public.example",), 400, id="the-clients-word-first"),
        pytest.param("https://public.example", ("evil.example, public.example",), 101, id="the-proxys-last"),
        pytest.param("https://evil.example", ("evil.example", "public.example"), 400, id="the-same-as-two-headers"),
        pytest.param("https://evil.example/x", ("evil.example/x",), 400, id="a-path-is-not-a-host"),
        pytest.param("https://a@evil.example", ("a@evil.example",), 400, id="userinfo-is-not-a-host"),
        pytest.param("https://public.example:99999", ("public.example:99999",), 400, id="not-a-port"),
        pytest.param("https://pub lic.example", ("pub lic.example",), 400, id="a-blank-in-a-name"),
        pytest.param("https://[evil]", ("[evil]",), 400, id="not-an-ipv6-literal"),
        pytest.param("https://", ("",), 400, id="empty"),
    ],
)
@LANES
async def test_the_origin_check_takes_one_valid_host_from_the_proxys_hop(
    proxied: ServerUnderTest, origin: str, host: tuple[str, ...], status: int
) -> None:
    assert await _opened(proxied, origin, "https", host=host) == status


@LANES
async def test_behind_two_proxies_the_scheme_and_host_are_the_outer_ones(
    redis_process: RedisProcess, redis: object, tmp_path: Path, lane: str
) -> None:
    server = await start_server(
        redis_process.url, tmp_path, trust_forwarded_for=True, trusted_proxy_hops=2, transport=lane
    )
    try:
        assert await _opened(server, "https://x", "https, http") == 101  # TLS ended at the outer one
        assert await _opened(server, "http://x", "https, http") == 400
        assert await _opened(server, "https://x", "https") == 101  # one hop: the first
        outer = ("public.example, inner.local",)
        assert await _opened(server, "https://public.example", "https, http", host=outer) == 101
        assert await _opened(server, "https://inner.local", "https, http", host=outer) == 400
        evil = ("evil.example, public.example, inner.local",)
        assert await _opened(server, "https://evil.example", "https, http", host=evil) == 400
    finally:
        await server.stop()


async def test_behind_two_proxies_the_refresh_cookie_is_secure_by_the_outer_ones_word(
    redis_process: RedisProcess, redis: object, tmp_path: Path
) -> None:
    server = await start_server(redis_process.url, tmp_path, trust_forwarded_for=True, trusted_proxy_hops=2)
    try:
        for proto, secure in (("https, http", True), ("http, https", False), ("https", True), ("x, https, http", True)):
            headers = {"X-Sessionhub-Client": "1", "X-Forwarded-Proto": proto}
            async with aiohttp.ClientSession() as http, http.post(f"{server.url}/api/auth/guest", headers=headers) as r:
                assert r.status == 201, await r.text()
                assert bool(r.cookies["sessionhub_refresh"]["secure"]) is secure, proto
    finally:
        await server.stop()
