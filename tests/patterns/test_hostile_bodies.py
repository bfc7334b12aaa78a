"""Pattern API bodies that arrive in more than one TCP write (issue 20, finding 9)."""

from __future__ import annotations

import asyncio
import json

from tests.helpers import ServerUnderTest
from tests.patterns.test_http import full_state
from tests.raw_wire import port_of


async def _exchange(port: int, pieces: list[bytes]) -> tuple[int, bytes]:
    """Send ``pieces`` as separate writes (each drained, the next only after a pause) and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for index, piece in enumerate(pieces):
            if index:
                await asyncio.sleep(0.1)  # the next piece is a later TCP segment, not yet buffered
            writer.write(piece)
            await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _head(method: str, path: str, extra: str) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{extra}Connection: close\r\n\r\n"
    ).encode()


async def _create(port: int) -> str:
    body = b"{}"
    status, answer = await _exchange(port, [_head("POST", "/api/sessions", f"Content-Length: {len(body)}\r\n") + body])
    assert status == 201, answer
    return str(json.loads(answer)["id"])


async def test_a_put_split_over_two_writes_is_read_whole(server: ServerUnderTest) -> None:
    port = port_of(server.url)
    session_id = await _create(port)
    body = json.dumps({"state": full_state(tempo=133)}).encode()
    head = _head("PUT", f"/api/sessions/{session_id}", f"Content-Length: {len(body)}\r\n")
    status, answer = await _exchange(port, [head + body[:40], body[40:]])
    assert status == 200, answer
    status, answer = await _exchange(port, [_head("GET", f"/api/sessions/{session_id}", "")])
    assert json.loads(answer)["state"]["tempo"] == 133


def _chunked(*parts: bytes) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(part), part) for part in parts] + [b"0\r\n\r\n"]


async def test_a_chunked_create_in_two_chunks_is_read_whole(server: ServerUnderTest) -> None:
    port = port_of(server.url)
    body = json.dumps({"state": full_state(tempo=99)}).encode()
    pieces = _chunked(body[:30], body[30:])
    status, answer = await _exchange(
        port, [_head("POST", "/api/sessions", "Transfer-Encoding: chunked\r\n") + pieces[0], *pieces[1:]]
    )
    assert status == 201, answer


async def test_a_chunked_body_over_the_cap_is_413(server: ServerUnderTest) -> None:
    port = port_of(server.url)
    session_id = await _create(port)
    filler = json.dumps({"state": full_state()}).encode()  # its first chunk alone is a valid body
    body = filler + b" " * (80 * 1024 - len(filler))
    half = len(body) // 2
    pieces = _chunked(body[:half], body[half:])
    head = _head("PUT", f"/api/sessions/{session_id}", "Transfer-Encoding: chunked\r\n")
    status, answer = await _exchange(port, [head + pieces[0], *pieces[1:]])
    assert status == 413, answer
    assert json.loads(answer)["error"] == "Request body too large"
