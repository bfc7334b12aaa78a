"""A device's label is its User-Agent as one line of plain text, whatever bytes the browser sent:
a header that is not UTF-8 made a sign-in a 500, and spent the device link it redeemed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from tests.helpers import ServerUnderTest
from tests.identity.support import Browser
from tests.raw_wire import http_exchange, port_of


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


def _post(server: ServerUnderTest, path: str, body: bytes, user_agent: bytes) -> bytes:
    """A page's POST as raw bytes: aiohttp's client sends only UTF-8 headers."""
    return (
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port_of(server.url)}\r\nOrigin: {server.url}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        ).encode()
        + b"User-Agent: "
        + user_agent
        + b"\r\n\r\n"
        + body
    )


async def _labels(http: aiohttp.ClientSession, server: ServerUnderTest, token: str) -> list[str]:
    headers = {"Authorization": f"Bearer {token}", "Origin": server.url}
    async with http.get(server.url + "/api/auth/me", headers=headers) as answer:
        assert answer.status == 200
        return [device["label"] for device in (await answer.json())["devices"]]


async def test_a_user_agent_that_is_not_utf8_signs_a_guest_in(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    status, body = await http_exchange(
        port_of(iserver.url), _post(iserver, "/api/auth/guest", b"{}", b"Old \xe9player \xff\xfe(")
    )
    assert status == 201, body
    assert await _labels(http, iserver, json.loads(body)["token"]) == ["Old \ufffdplayer \ufffd\ufffd("]


async def test_a_device_link_redeemed_by_such_a_browser_signs_it_in(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    first = Browser(http, iserver.url)
    user_id = (await first.guest()).body["user_id"]
    link = (await first.call("POST", "/api/auth/link")).body["url"].split("token=", 1)[1]
    redeem = json.dumps({"token": link}).encode()
    status, body = await http_exchange(
        port_of(iserver.url), _post(iserver, "/api/auth/one_time", redeem, b"Car stereo \xe9")
    )
    assert status == 200 and json.loads(body)["user_id"] == user_id, body
    assert "Car stereo \ufffd" in await _labels(http, iserver, first.token)


async def test_a_label_is_one_line_of_plain_text(iserver: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    """A name may not hold a bidi override or a control character; a device's label, shown in the
    same list, did (``Safe Phone \\u202egnp.exe``)."""
    user_agent = "Safe\tPhone \u202egnp.exe\u202c  \u2028x".encode()
    status, body = await http_exchange(port_of(iserver.url), _post(iserver, "/api/auth/guest", b"{}", user_agent))
    assert status == 201, body
    assert await _labels(http, iserver, json.loads(body)["token"]) == ["Safe Phone gnp.exe x"]
