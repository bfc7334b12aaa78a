"""One log line per request with a request id; JSON lines with SESSIONHUB_LOG_FORMAT=json."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from server.logs import JsonFormatter
from tests.helpers import ServerUnderTest
from tests.admin.test_http import admin_token


async def test_each_request_is_logged_once_with_the_id_its_response_carries(
    server: ServerUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sessionhub.request")
    headers = {"Authorization": f"Bearer {admin_token(server)}"}
    async with aiohttp.ClientSession(base_url=server.url) as http:
        async with http.get("/admin/metrics", headers=headers) as response:
            drawn = response.headers["X-Request-Id"]
        async with http.get("/admin/export", headers={**headers, "X-Request-Id": "proxy-id.7"}) as response:
            assert response.headers["X-Request-Id"] == "proxy-id.7"  # a streamed answer too
            await response.read()
        async with http.get("/admin/sessions/nope", headers={"X-Request-Id": "bad id <script>"}) as response:
            refused = response.headers["X-Request-Id"]
    assert len(drawn) == 16 and refused != "bad id <script>"
    records = [r for r in caplog.records if r.name == "sessionhub.request"]
    by_id = {getattr(r, "request_id", None): r for r in records}
    assert set(by_id) == {drawn, "proxy-id.7", refused}
    assert (by_id[drawn].status, by_id[drawn].route) == (200, "/admin/metrics")  # type: ignore[attr-defined]
    assert by_id[refused].status == 401  # type: ignore[attr-defined]
    line = json.loads(JsonFormatter().format(by_id["proxy-id.7"]))
    assert line["request_id"] == "proxy-id.7" and line["route"] == "/admin/export" and line["status"] == 200
    assert line["level"] == "INFO" and line["logger"] == "sessionhub.request" and "duration_ms" in line


async def test_a_clients_malformed_request_is_one_warning_without_traceback(
    server: ServerUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = int(server.url.rsplit(":", 1)[1])
    for raw in (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nX: \x01\r\n\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        assert (await asyncio.wait_for(reader.read(200), 5)).split(b" ")[1] == b"400"
        writer.close()
        await writer.wait_closed()
    for _ in range(100):  # the server logs after it answers
        if sum(1 for r in caplog.records if r.name == "aiohttp.server") >= 2:
            break
        await asyncio.sleep(0.02)
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(records) == 2
    assert all(r.levelname == "WARNING" and not r.exc_info and "malformed request" in r.getMessage() for r in records)
