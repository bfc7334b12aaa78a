"""HTTP clients that stop reading are ended at the write deadline; one that reads slowly but keeps
moving gets every byte (handlers/write_deadline.py): raw sockets with a tiny receive buffer, a
real server, and the server's side of each connection as the kernel has it (/proc/net/tcp)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp

from handlers.write_deadline import WRITE_DEADLINE_KEY
from tests.conftest import start_server
from tests.raw_wire import port_of
from tests.test_hostile_sockets_slow_http import stalled_reader

READERS = 40
DEADLINE_S = 1.0
# The deadline, a quarter more (the checks' period), and room for a loaded machine; well under
# the HTTP idle timeout (15 s), after which the process closes the connection but the kernel
# goes on holding its unsent bytes (an orphan) for as long as its client keeps its window shut.
CUT_WITHIN_S = 8.0
_LISTEN, _TIME_WAIT, _CLOSE = "0A", "06", "07"


def server_side(port: int) -> list[tuple[int, int]]:
    """The server's end of each open connection to ``port`` as the kernel has it, orphans
    included: (the client's port, bytes queued for the client) each."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
                    if int(local.rsplit(":", 1)[1], 16) != port or state in (_LISTEN, _TIME_WAIT, _CLOSE):
                        continue
                    found.append((int(remote.rsplit(":", 1)[1], 16), int(queues.split(":")[0], 16)))
        except FileNotFoundError:
            continue
    return found


async def held_for(port: int, clients: set[int], timeout_s: float) -> list[tuple[int, int]]:
    """Wait (bounded) until the server holds none of ``clients``' connections; what it still
    holds then (empty: all let go)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        held = [entry for entry in server_side(port) if entry[0] in clients]
        if not held or loop.time() > deadline:
            return held
        await asyncio.sleep(0.05)


async def tasks_left(limit: int, timeout_s: float) -> int:
    """Wait (bounded) until at most ``limit`` tasks are left; how many are left then. A cut
    connection's handler ends a loop turn or two after the kernel let go of its socket: the
    connection-lost callbacks that close the sockets wake the handlers' drains, and a check
    right after them sees the kernel empty and every handler still waiting to run."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (left := len(asyncio.all_tasks())) > limit and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return left


async def test_readers_that_stop_reading_are_cut_at_the_write_deadline(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """Before the deadline, each held ~280 KB of /openapi.json queued in the kernel (the server
    writes it all to a loopback socket), then, closed as idle, as an orphan for good."""
    srv = await start_server(redis_process.url, tmp_path, write_stall_timeout_s=DEADLINE_S)
    port = port_of(srv.url)
    readers: list[socket.socket] = []
    try:
        tasks_before = len(asyncio.all_tasks())
        for _ in range(READERS):
            readers.append(await stalled_reader(port, "/openapi.json"))
        clients = {sock.getsockname()[1] for sock in readers}
        queued = sum(size for peer, size in server_side(port) if peer in clients)
        assert queued > READERS * 16 * 1024, f"the answers were not waiting: {queued} bytes queued"
        held = await held_for(port, clients, CUT_WITHIN_S)
        assert not held, f"{len(held)} of {READERS} stalled readers still held ({sum(s for _, s in held)} bytes queued)"
        assert srv.app[WRITE_DEADLINE_KEY].cuts >= READERS
        left = await tasks_left(tasks_before, CUT_WITHIN_S)
        assert left <= tasks_before, f"{left - tasks_before} handlers left waiting for a drain"
        async with aiohttp.ClientSession() as http, http.get(srv.url + "/healthz") as health:
            assert health.status == 200  # and everyone else is answered
    finally:
        for sock in readers:
            sock.close()
        await srv.stop()


async def slow_read(port: int, path: str, step_bytes: int, every_s: float, limit_s: float) -> bytes:
    """``path`` read ``step_bytes`` at a time every ``every_s`` (MSS 1460, as on a real network:
    loopback's 64 KiB segments would open the client's window only in 64 KiB steps)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    got = bytearray()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        deadline = loop.time() + limit_s
        while loop.time() < deadline:
            await asyncio.sleep(every_s)
            try:
                chunk = sock.recv(step_bytes)
            except BlockingIOError:
                continue
            if not chunk:
                return bytes(got)
            got += chunk
        raise AssertionError(f"still reading after {limit_s} s ({len(got)} bytes)")
    finally:
        sock.close()


async def test_a_slow_reader_that_keeps_moving_gets_the_whole_answer(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """Reading ~40 KB/s where the loopback could give gigabytes, never pausing as long as the
    deadline (0.5 s): the whole answer, and nothing cut."""
    srv = await start_server(redis_process.url, tmp_path, write_stall_timeout_s=0.5)
    try:
        async with aiohttp.ClientSession() as http, http.get(srv.url + "/openapi.json") as answer:
            whole = await answer.read()
        raw = await slow_read(port_of(srv.url), "/openapi.json", 2048, 0.05, 30)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and f"Content-Length: {len(whole)}".encode() in head
        assert body == whole
        assert srv.app[WRITE_DEADLINE_KEY].cuts == 0
    finally:
        await srv.stop()


async def test_a_stalled_reader_closed_as_idle_before_its_deadline_leaves_no_orphan(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """The idle timeout (here 1 s) closes a connection before the write deadline (here 2 s) could
    cut it: the process lets go of the socket, and the kernel used to keep its unsent answer (an
    orphan, FIN-WAIT-1) for as long as the client kept its window shut. The deadline's kernel
    timeout, set at the first check that saw no progress, ends the orphan too."""
    srv = await start_server(redis_process.url, tmp_path, write_stall_timeout_s=2.0, http_idle_timeout_s=1.0)
    port = port_of(srv.url)
    readers: list[socket.socket] = []
    try:
        for _ in range(5):
            readers.append(await stalled_reader(port, "/openapi.json"))
        clients = {sock.getsockname()[1] for sock in readers}
        assert sum(size for peer, size in server_side(port) if peer in clients) > 5 * 16 * 1024
        # The kernel's timeout: the deadline and a check more, and 1 s, from its first probe.
        held = await held_for(port, clients, 2.0 * 1.25 + 1 + CUT_WITHIN_S)
        assert not held, f"orphans left: {held}"
    finally:
        for sock in readers:
            sock.close()
        await srv.stop()
