"""One log line per request with a request id; JSON lines with SESSIONHUB_LOG_FORMAT=json."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import aiohttp
import pytest

from server.logs import JsonFormatter, TextFormatter
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


async def test_a_path_cannot_forge_a_log_line(server: ServerUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    """A percent-encoded CR LF in a path is decoded in ``request.path``: the text log wrote it as
    is, a whole forged line of the client's choosing (and a U+202E reordered the rest)."""
    caplog.set_level(logging.INFO, logger="sessionhub.request")
    forged = "%0a2026-11-27%2009:09:09,999%20ERROR%20sessionhub:%20admin%20token%20leaked%0d%e2%80%ae"
    async with aiohttp.ClientSession(base_url=server.url) as http:
        async with http.get(f"/api/streams/x{forged}") as response:
            assert response.status == 400  # not a session id
    [record] = [r for r in caplog.records if r.name == "sessionhub.request" and "leaked" in r.getMessage()]
    text = TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record)
    assert "\n" not in text and "\r" not in text and "\u202e" not in text
    assert "/api/streams/x\\x0a2026-11-27 09:09:09,999 ERROR" in text and text.endswith("leaked\\x0d\\u202e 400")
    line = JsonFormatter().format(record)
    assert "\u202e" not in line and json.loads(line)["path"].endswith("leaked\\x0d\\u202e")


def test_a_traceback_still_spans_its_lines() -> None:
    try:
        raise ValueError("from\nhere")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, "", 0, "failed: %s", ("a\nb",), sys.exc_info())
    text = TextFormatter("%(levelname)s %(message)s").format(record)
    first, *rest = text.split("\n")
    assert first == "ERROR failed: a\\x0ab" and rest[0] == "Traceback (most recent call last):"


async def test_a_files_answer_is_logged_with_the_status_it_was_sent_with(
    server: ServerUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    """A static file's answer settles its status as it is sent: a file that is not there was
    logged 200 (and its 404 sent), a condition met as 200 (and its 304 sent)."""
    caplog.set_level(logging.INFO, logger="sessionhub.request")
    async with aiohttp.ClientSession(base_url=server.url) as http:
        async with http.get("/static/nope.js") as missing:
            assert missing.status == 404
        async with http.get("/static/js/identity.js", headers={"Accept-Encoding": "identity"}) as found:
            assert found.status == 200
            etag = found.headers["ETag"]
        headers = {"Accept-Encoding": "identity", "If-None-Match": etag}
        async with http.get("/static/js/identity.js", headers=headers) as unchanged:
            assert unchanged.status == 304
    logged = [(r.path, r.status) for r in caplog.records if r.name == "sessionhub.request"]  # type: ignore[attr-defined]
    assert logged == [("/static/nope.js", 404), ("/static/js/identity.js", 200), ("/static/js/identity.js", 304)]
