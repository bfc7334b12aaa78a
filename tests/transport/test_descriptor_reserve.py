"""Clients never take the descriptors the process keeps for itself (server/transport/accept.py,
``SESSIONHUB_DESCRIPTOR_RESERVE``): past the ceiling a new connection is answered 503 and
closed, while the server goes on opening what it needs (Redis connections, the files of its
pages) and answering the connections it holds. A real ``serve`` child with a small open-files
limit, and raw clients from this process."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path


from server.transport.accept import FULL, Acceptor
from tests.helpers import BOTH_LANES, RedisProcess
from tests.test_processes import node

LIMIT = 400  # the child's open-files limit (soft and hard): its ceiling is LIMIT - RESERVE
RESERVE = 150
NOT_FOUND = b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n"


async def exchange(port: int, request: bytes) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect, send ``request``, read the whole answer (its head and its Content-Length)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    return await answer_of(reader), reader, writer


async def answer_of(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(15):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
        )
        return head + await reader.readexactly(length)


@BOTH_LANES
async def test_clients_hold_only_the_descriptors_below_the_reserve_and_the_server_keeps_working(
    redis_process: RedisProcess, tmp_path: Path, lane: str
) -> None:
    # Without the reserve the clients took every descriptor: accept() failed (EMFILE) and the
    # next ones waited unanswered in the kernel's queue, and the server could open no file.
    # The stock lane (what an install on untested library versions runs) keeps it as well.
    log_path = tmp_path / "serve.log"
    async with node(
        tmp_path,
        redis_process.url,
        open_files=LIMIT,
        SESSIONHUB_DESCRIPTOR_RESERVE=str(RESERVE),
        SESSIONHUB_LOG_LEVEL="INFO",
        SESSIONHUB_TRANSPORT=lane,
    ) as url:
        port = int(url.rsplit(":", 1)[1])
        first, reader, writer = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200"), first[:200]
        held = [writer]
        refused = b""
        try:
            for _ in range(LIMIT):  # bounded: the ceiling is below the limit
                answer, _, more = await exchange(port, NOT_FOUND)
                if not answer.startswith(b"HTTP/1.1 404"):
                    refused = answer
                    more.close()
                    break
                held.append(more)  # answered and kept alive
            assert refused.startswith(b"HTTP/1.1 503"), refused or f"{len(held)} connections, none refused"
            assert b'"reason":"connection_limit"' in refused and b"Retry-After: 1" in refused
            assert len(held) < LIMIT - RESERVE  # its own descriptors (Redis, the log) are below it too
            # The connections it holds are served, a page's file opened from the reserve...
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            page = await answer_of(reader)
            assert page.startswith(b"HTTP/1.1 200") and b"</html>" in page.lower()
            # ...so are requests that read Redis...
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await answer_of(reader)).startswith(b"HTTP/1.1 200")
            # ...and a health probe on a new connection, answered as it is accepted.
            probe, _, closed = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            closed.close()
            assert probe.startswith(b"HTTP/1.1 200"), probe[:200]
            # Clients that leave make room again.
            for gone in held[-10:]:
                gone.close()
            del held[-10:]
            async with asyncio.timeout(15):  # each close is a loop turn of the child away
                while True:
                    again, _, kept = await exchange(port, NOT_FOUND)
                    held.append(kept)
                    if again.startswith(b"HTTP/1.1 404"):
                        break
                    assert b'"reason":"connection_limit"' in again, again
                    await asyncio.sleep(0.02)
        finally:
            for connection in held:
                connection.close()
        said = log_path.read_text()
        assert f"(up to {LIMIT} open files, clients below descriptor {LIMIT - RESERVE})" in said  # at start
        assert f"connections refused: clients hold the descriptors up to {LIMIT - RESERVE}" in said


async def test_the_acceptor_takes_connections_numbered_below_the_ceiling_only() -> None:
    """The acceptor alone: the lowest free descriptor is the next one accept() returns, so with
    room for two numbers the third client at the latest is refused (another descriptor this
    process opens meanwhile can only move the refusals earlier)."""
    listener = socket.create_server(("127.0.0.1", 0))
    made: list[asyncio.Transport] = []
    refused: list[str] = []

    class Taken(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            made.append(transport)

    probe = socket.socket()
    ceiling = probe.fileno() + 3  # room for two: each client's own socket takes a number too
    probe.close()
    acceptor = Acceptor(
        listener.fileno(), lambda place: Taken(), fixed={}, observers=[], on_refused=refused.append, fd_ceiling=ceiling
    )
    acceptor.start()
    clients: list[socket.socket] = []
    try:
        for _ in range(3):
            client = socket.socket()
            client.setblocking(False)
            clients.append(client)
            await asyncio.get_running_loop().sock_connect(client, listener.getsockname())
            async with asyncio.timeout(15):
                while len(made) + len(refused) < len(clients):
                    await asyncio.sleep(0.01)
        assert refused == [FULL] * (len(clients) - len(made)) and len(made) < len(clients)
        assert all(transport.get_extra_info("socket").fileno() < ceiling for transport in made)
    finally:
        for transport in made:
            transport.close()
        for client in clients:
            client.close()
        acceptor.stop()
        listener.close()
