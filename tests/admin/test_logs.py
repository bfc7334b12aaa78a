"""One log line per request with a request id; JSON lines with SESSIONHUB_LOG_FORMAT=json."""

from __future__ import annotations

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
