"""Pages, scripts and stylesheets go out gzipped to a client that takes it (handlers.content_coding).

Each gzip answer decodes to the file's bytes, says ``Vary: Accept-Encoding`` and its own ETag, and
keeps every header the file's answer has; a client that takes no gzip, or asks for a range, gets
the file as it is; each file is compressed once per version (handlers.compressed_files).
"""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from multidict import CIMultiDict

from handlers.compressed_files import CompressedFiles
from handlers.content_coding import COMPRESSED_FILES_KEY, accepts_gzip
from tests.helpers import ServerUnderTest

WEB = Path(__file__).resolve().parent.parent / "web"
GZIP = {"Accept-Encoding": "gzip, deflate, br"}
# What each answer is, by path: the page routes serve their HTML file from web/.
FILES = {
    "/static/js/client.js": WEB / "js" / "client.js",
    "/static/css/app.css": WEB / "css" / "app.css",
    "/static/vendor/socket.io.esm.min.js": WEB / "vendor" / "socket.io.esm.min.js",
    "/static/index.html": WEB / "index.html",
    "/": WEB / "index.html",
    "/history": WEB / "history.html",
}
# Headers that differ between the two codings of one file, by design (ranges are the file's), or
# between any two answers.
PER_CODING = {"content-encoding", "content-length", "etag", "accept-ranges", "date", "x-request-id"}


@pytest_asyncio.fixture
async def server(reading_server: ServerUnderTest) -> ServerUnderTest:
    return reading_server


@pytest_asyncio.fixture
async def http(server: ServerUnderTest) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that sends only the Accept-Encoding a test gives, and never decodes the body."""
    async with aiohttp.ClientSession(
        base_url=server.url,
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding",),
        timeout=aiohttp.ClientTimeout(total=10),
    ) as session:
        yield session


async def fetch(http: aiohttp.ClientSession, path: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with http.get(path, headers=headers) as response:
        return response.status, CIMultiDict(response.headers), await response.read()


def shared(headers: CIMultiDict[str]) -> dict[str, str]:
    """The headers both codings must say alike."""
    return {name.lower(): value for name, value in headers.items() if name.lower() not in PER_CODING}


@pytest.mark.parametrize("path", sorted(FILES))
async def test_a_gzip_answer_is_the_file_with_the_same_headers(http: aiohttp.ClientSession, path: str) -> None:
    status, zipped, body = await fetch(http, path, **GZIP)
    assert status == 200 and zipped.get("Content-Encoding") == "gzip", zipped
    assert gzip.decompress(body) == FILES[path].read_bytes()
    assert int(zipped["Content-Length"]) == len(body) < FILES[path].stat().st_size
    assert zipped["Vary"] == "Accept-Encoding"
    status, plain, body = await fetch(http, path)
    assert status == 200 and "Content-Encoding" not in plain and body == FILES[path].read_bytes()
    assert plain["Vary"] == "Accept-Encoding"  # a cache must not hand this one to a gzip client
    assert zipped["ETag"] != plain["ETag"]
    assert shared(zipped) == shared(plain)
    page = not path.startswith("/static/") or path.endswith(".html")
    assert "cache-control" in shared(plain) and ("content-security-policy" in shared(plain)) == page


@pytest.mark.parametrize("accept", ["", "identity", "gzip;q=0", "gzip;q=0, *", "*;q=0", "br, deflate", "gzip;q=x"])
async def test_a_client_that_takes_no_gzip_gets_the_file(http: aiohttp.ClientSession, accept: str) -> None:
    headers = {"Accept-Encoding": accept} if accept else {}
    status, answer, body = await fetch(http, "/static/js/client.js", **headers)
    assert status == 200 and "Content-Encoding" not in answer, answer
    assert body == (WEB / "js" / "client.js").read_bytes()


@pytest.mark.parametrize("accept", ["gzip", "GZIP", "x-gzip", "*", "br;q=1, gzip;q=0.5", "identity;q=0, gzip"])
def test_the_ways_to_take_gzip(accept: str) -> None:
    assert accepts_gzip(accept)


@pytest.mark.parametrize("path", ["/static/js/client.js", "/history"])
async def test_each_coding_revalidates_against_its_own_etag(http: aiohttp.ClientSession, path: str) -> None:
    _, zipped, _ = await fetch(http, path, **GZIP)
    _, plain, _ = await fetch(http, path)
    status, answer, body = await fetch(http, path, **GZIP, **{"If-None-Match": zipped["ETag"]})
    assert status == 304 and body == b"" and answer["ETag"] == zipped["ETag"], answer
    assert answer["Vary"] == "Accept-Encoding"
    status, answer, _ = await fetch(http, path, **{"If-None-Match": plain["ETag"]})
    assert status == 304 and answer["ETag"] == plain["ETag"]
    # The other coding's ETag is another representation: the full answer, in the coding asked for.
    status, answer, body = await fetch(http, path, **GZIP, **{"If-None-Match": plain["ETag"]})
    assert status == 200 and answer["Content-Encoding"] == "gzip" and gzip.decompress(body) == FILES[path].read_bytes()
    status, answer, body = await fetch(http, path, **{"If-None-Match": zipped["ETag"]})
    assert status == 200 and "Content-Encoding" not in answer and body == FILES[path].read_bytes()


async def test_a_range_is_served_from_the_file_itself(http: aiohttp.ClientSession) -> None:
    status, answer, body = await fetch(http, "/static/js/client.js", **GZIP, Range="bytes=10-19")
    assert status == 206 and "Content-Encoding" not in answer, answer
    assert body == (WEB / "js" / "client.js").read_bytes()[10:20]
    assert answer["Content-Range"].startswith("bytes 10-19/")


async def test_a_head_says_the_gzip_length_and_sends_no_body(server: ServerUnderTest) -> None:
    _, zipped, body = await _head_and_get(server)
    assert zipped["Content-Encoding"] == "gzip" and int(zipped["Content-Length"]) == len(body)


async def _head_and_get(server: ServerUnderTest) -> tuple[int, CIMultiDict[str], bytes]:
    # A raw exchange: a client library might read a body after a HEAD's Content-Length.
    reader, writer = await asyncio.open_connection(*server.url.removeprefix("http://").split(":"))
    try:
        ask = "{} /static/css/app.css HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"
        writer.write((ask.format("HEAD") + ask.format("GET")).encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        headers = _headers(head)
        get = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)  # no body came between
        assert get.startswith(b"HTTP/1.1 200"), get
        body = await asyncio.wait_for(reader.readexactly(int(_headers(get)["Content-Length"])), 10)
        return 200, headers, body
    finally:
        writer.close()


def _headers(block: bytes) -> CIMultiDict[str]:
    lines = block.decode("latin-1").split("\r\n")[1:]
    pairs = [line.partition(": ") for line in lines if line]
    return CIMultiDict((name, value) for name, _, value in pairs)


async def test_each_file_is_compressed_once(server: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    files = server.app[COMPRESSED_FILES_KEY]
    await asyncio.gather(*(fetch(http, "/static/js/ids.js", **GZIP) for _ in range(5)))
    before = files.compressions
    answers = await asyncio.gather(*(fetch(http, f"/static/js/{name}", **GZIP) for name in ("ids.js",) * 5))
    assert files.compressions == before and all(a[1]["Content-Encoding"] == "gzip" for a in answers)


@pytest.mark.parametrize("path", ["/static/../pyproject.toml", "/static/%2e%2e/pyproject.toml", "/static/js"])
async def test_paths_outside_the_files_are_refused_as_before(http: aiohttp.ClientSession, path: str) -> None:
    status, answer, _ = await fetch(http, path, **GZIP)
    assert status in (403, 404) and "Content-Encoding" not in answer


async def test_a_changed_file_is_compressed_again_and_the_store_stays_bounded(tmp_path: Path) -> None:
    files = CompressedFiles(max_total_bytes=2_000)
    first = tmp_path / "a.js"
    first.write_text("const a = 1;\n" * 200)
    made = await files.get(first)
    assert made is not None and gzip.decompress(made.body) == first.read_bytes()
    assert await files.get(first) is made and files.compressions == 1
    first.write_text("const b = 2;\n" * 300)
    os.utime(first, ns=(made.version.mtime_ns + 10**9,) * 2)  # a coarse clock could keep the old time
    again = await files.get(first)
    assert again is not None and gzip.decompress(again.body) == first.read_bytes() and files.compressions == 2
    for index in range(40):  # different text each, so each copy is a few hundred bytes
        other = tmp_path / f"f{index}.js"
        other.write_text("".join(f"let v{index}_{n} = {n * index};\n" for n in range(60)))
        assert await files.get(other) is not None
        assert files.total_bytes <= 2_000


async def test_what_the_store_leaves_to_the_file_route(tmp_path: Path) -> None:
    files = CompressedFiles()
    target = tmp_path / "real.js"
    target.write_text("let x = 1;\n" * 100)
    (tmp_path / "link.js").symlink_to(target)
    (tmp_path / "tiny.js").write_text("x")
    assert await files.get(tmp_path / "link.js") is None  # a symlink: aiohttp judges it
    assert await files.get(tmp_path / "tiny.js") is None  # gzip would be larger
    assert await files.get(tmp_path / "missing.js") is None
    assert await files.get(tmp_path) is None
    assert await files.get(target) is not None
