"""Clients that stop reading: what each holds of a real server, and for how long.

Four kinds of client, against one ``python -m server serve`` and its own redis-server:

- ``http``: N raw connections (SO_RCVBUF 1 KiB) each ask ``GET /openapi.json`` (~290 KB,
  anonymous), take its first byte and read no more;
- ``ws``: M raw WebSockets subscribe to a voice session and stop reading while a publisher
  changes the session's status (events keep coming); half of them send an Engine.IO PONG every
  ping interval unasked (a hostile client: the ping timeout cannot tell), half send nothing
  (a phone in a tunnel);
- ``poll``: K long-polling sessions subscribe and never poll again (a probe ``POST`` of a NOOP
  every second says when the session is gone: a POST takes nothing from the queue);
- ``slow``: one reader of ``/openapi.json`` that keeps moving (``--slow-bps`` bytes a second,
  MSS 1460 as on a real network): how long it takes, and whether it gets every byte.

Every second it prints the server's RSS and open descriptors and, per kind, the clients whose
connection (or session) the server still holds. Bounded: every wait has a deadline, the run
observes for ``--observe-s`` seconds at most, and the processes started here are stopped here.

    .venv/bin/python bench/stalled_readers.py [--http 200] [--ws 40] [--poll 20] [--observe-s 60]
        [--deadline-s 5]   # SESSIONHUB_WRITE_STALL_TIMEOUT_S (ignored by a server without it)
        [--transport stock]  # SESSIONHUB_TRANSPORT: the lane the server runs (default: auto)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import procstat

from common import servers
from common.wire import client_frame, connect_packet, emit_packet, upgrade_request
import contextlib

TCP_ESTABLISHED = 1
PING_INTERVAL_S = 5.0
PING_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10.0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def server_sockets(port: int) -> list[tuple[str, int, int]]:
    """The server's side of its connections as the kernel has them: (state, Send-Q bytes, the
    client's port) each, TIME-WAIT left out (it holds nothing).

    A socket the process closed with bytes still unsent is an orphan (FIN-WAIT-1) the kernel
    keeps trying to deliver: no descriptor, no RSS, but kernel memory. (The clients' own view
    says little: a client whose window is shut may never accept the server's reset.)
    """
    out = subprocess.run(
        ["ss", "-tnH", "state", "all", f"( sport = :{port} )"], capture_output=True, text=True, timeout=10
    )
    found = []
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[0] in ("LISTEN", "TIME-WAIT"):
            continue
        found.append((fields[0], int(fields[2]), int(fields[4].rsplit(":", 1)[1])))
    return found


def summary(found: list[tuple[str, int, int]]) -> str:
    """state:count/Send-Q KiB for each state."""
    view: dict[str, tuple[int, int]] = {}
    for state, queued, _ in found:
        count, total = view.get(state, (0, 0))
        view[state] = (count + 1, total + queued)
    return " ".join(f"{state}:{count}/{total // 1024}" for state, (count, total) in sorted(view.items()))


def established(sock: socket.socket) -> bool:
    """Whether the connection is still open as this end sees it (TCP_INFO's state; no read)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return False
    return info[0] == TCP_ESTABLISHED


async def raw_socket(port: int, rcvbuf: int, mss: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if mss:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
    sock.setblocking(False)
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), CONNECT_TIMEOUT_S)
    return sock


async def stalled_http(port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = await raw_socket(port, 1024)
    await loop.sock_sendall(sock, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
    if await asyncio.wait_for(loop.sock_recv(sock, 1), CONNECT_TIMEOUT_S) != b"H":
        raise RuntimeError("no answer")
    return sock


async def read_frames(sock: socket.socket, until: bytes) -> bytes:
    """Read server bytes (unmasked frames, parsed loosely) until ``until`` appears."""
    loop = asyncio.get_running_loop()
    seen = b""
    deadline = loop.time() + CONNECT_TIMEOUT_S
    while until not in seen:
        left = deadline - loop.time()
        if left <= 0:
            raise RuntimeError(f"never saw {until!r}")
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
        if not chunk:
            raise RuntimeError("closed")
        seen += chunk
    return seen


async def stalled_ws(port: int, token: str, session_id: str) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = await raw_socket(port, 4096)
    await loop.sock_sendall(sock, upgrade_request("127.0.0.1", port))
    await read_frames(sock, b'0{"sid"')
    await loop.sock_sendall(sock, client_frame(connect_packet(token)))
    await read_frames(sock, b'40{"sid"')
    data = json.dumps({"session_id": session_id})
    await loop.sock_sendall(sock, client_frame(emit_packet(1, "subscribe_on_session", data)))
    await read_frames(sock, b"431[")
    return sock


class Poller:
    """A long-polling session that subscribed and never polls again."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
        self.sid = ""

    def _request(self, query: str, body: bytes | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + query, data=body, method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""

    def open(self, token: str, session_id: str) -> None:
        _, body = self._request("")
        self.sid = json.loads(body[1:])["sid"]
        self._request(f"&sid={self.sid}", connect_packet(token))
        self._request(f"&sid={self.sid}")  # the CONNECT's answer
        data = json.dumps({"session_id": session_id})
        self._request(f"&sid={self.sid}", emit_packet(1, "subscribe_on_session", data))
        self._request(f"&sid={self.sid}")  # the subscribe's ack: the last poll ever

    def alive(self) -> bool:
        status, _ = self._request(f"&sid={self.sid}", b'42["probe"]')  # a POST takes nothing queued
        return status == 200


async def slow_reader(port: int, bytes_per_s: int, limit_s: float) -> tuple[int, int, float]:
    """Read /openapi.json at ``bytes_per_s``: (bytes of body read, Content-Length, seconds)."""
    loop = asyncio.get_running_loop()
    sock = await raw_socket(port, 2048, mss=1460)
    started = loop.time()
    await loop.sock_sendall(sock, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got = b""
    step = max(1, bytes_per_s // 20)
    while loop.time() - started < limit_s:
        await asyncio.sleep(0.05)
        try:
            chunk = sock.recv(step)
        except BlockingIOError:
            continue
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    sock.close()
    head, _, body = got.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), -1
    )
    return len(body), length, loop.time() - started


async def publish(port: int, token: str, session_id: str, stop: asyncio.Event, per_s: float) -> int:
    """Change the session's status ``per_s`` times a second until ``stop``; the changes made."""
    loop = asyncio.get_running_loop()
    sock = await raw_socket(port, 1 << 20)
    await loop.sock_sendall(sock, upgrade_request("127.0.0.1", port))
    await read_frames(sock, b'0{"sid"')
    await loop.sock_sendall(sock, client_frame(connect_packet(token)))
    await read_frames(sock, b'40{"sid"')
    sent = 0
    while not stop.is_set():
        status = ("recording", "paused")[sent % 2]
        data = json.dumps({"session_id": session_id, "status": status})
        await loop.sock_sendall(sock, client_frame(emit_packet(100 + sent, "set_session_status", data)))
        sent += 1
        try:
            while sock.recv(65536):  # the publisher reads its acks (and pings)
                pass
        except BlockingIOError:
            pass
        if sent % 10 == 0:
            await loop.sock_sendall(sock, client_frame(b"3"))
        await asyncio.sleep(1 / per_s)
    sock.close()
    return sent


async def pongs(socks: list[socket.socket], stop: asyncio.Event) -> None:
    """An Engine.IO PONG every ping interval from each of ``socks``, unasked (nothing is read)."""
    asyncio.get_running_loop()
    while not stop.is_set():
        for sock in socks:
            if established(sock):
                with contextlib.suppress(OSError):
                    sock.send(client_frame(b"3"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PING_INTERVAL_S * 0.8)


async def run(args: argparse.Namespace, pid: int, port: int, token: str, session_id: str) -> None:
    loop = asyncio.get_running_loop()
    base_rss, base_fds = procstat.rss_kib(pid), fds(pid)
    print(f"server before: RSS {base_rss / 1024:.1f} MiB, {base_fds} descriptors")
    stop = asyncio.Event()
    publisher = asyncio.ensure_future(publish(port, token, session_id, stop, args.events_per_s))
    http = [await stalled_http(port) for _ in range(args.http)]
    ws = [await stalled_ws(port, token, session_id) for _ in range(args.ws)]
    pong_socks, silent_socks = ws[: len(ws) // 2], ws[len(ws) // 2 :]
    ponger = asyncio.ensure_future(pongs(pong_socks, stop))
    pollers = [Poller(port) for _ in range(args.poll)]
    for poller in pollers:
        await loop.run_in_executor(None, poller.open, token, session_id)
    slow = asyncio.ensure_future(slow_reader(port, args.slow_bps, args.observe_s))
    started = loop.time()
    kinds = {
        kind: {sock.getsockname()[1] for sock in socks}
        for kind, socks in (("http", http), ("ws_pong", pong_socks), ("ws_silent", silent_socks))
    }
    print(f"{args.http} stalled HTTP readers, {len(pong_socks)} stalled WebSockets sending PONGs, "
          f"{len(silent_socks)} silent, {args.poll} pollers that stopped polling; "
          f"a slow reader at {args.slow_bps} B/s")  # fmt: skip
    print("   t_s  rss_MiB  fds  http_held  ws_pong_held  ws_silent_held  pollers_held  kernel: state count/Send-Q KiB")
    gone_at: dict[str, float] = {}
    while loop.time() - started < args.observe_s:
        found = server_sockets(port)
        peers = [peer for _, _, peer in found]
        held = {kind: sum(peer in ports for peer in peers) for kind, ports in kinds.items()}
        alive = await asyncio.gather(*(loop.run_in_executor(None, poller.alive) for poller in pollers))
        held["pollers"] = sum(alive)
        t = loop.time() - started
        for kind, count in held.items():
            if count == 0 and kind not in gone_at:
                gone_at[kind] = t
        rss = procstat.rss_kib(pid) / 1024
        kernel = summary(found)
        print(f"{t:6.1f}  {rss:7.1f}  {fds(pid):4d}  {held['http']:9d}  {held['ws_pong']:12d}  "
              f"{held['ws_silent']:14d}  {held['pollers']:12d}  {kernel}", flush=True)  # fmt: skip
        if not any(held.values()) and slow.done():
            break
        await asyncio.sleep(1.0)
    stop.set()
    events = await publisher
    await ponger
    read, length, took = await slow
    print(f"events published: {events}")
    for kind in ("http", "ws_pong", "ws_silent", "pollers"):
        print(
            f"{kind}: " + (f"all released after {gone_at[kind]:.1f} s" if kind in gone_at else "STILL HELD at the end")
        )
    print(f"slow reader: {read} of {length} body bytes in {took:.1f} s ({'whole' if read == length else 'CUT SHORT'})")
    print(f"server after: RSS {procstat.rss_kib(pid) / 1024:.1f} MiB, {fds(pid)} descriptors")
    for sock in http + ws:
        sock.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=200)
    parser.add_argument("--ws", type=int, default=40)
    parser.add_argument("--poll", type=int, default=20)
    parser.add_argument("--events-per-s", type=float, default=20.0)
    parser.add_argument("--slow-bps", type=int, default=20_000)
    parser.add_argument("--observe-s", type=float, default=60.0)
    parser.add_argument("--deadline-s", type=float, default=5.0)
    parser.add_argument("--transport", choices=("auto", "fast", "stock"), default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sessionhub-stalled-") as tmp:
        workdir = Path(tmp)
        redis, url = servers.start_redis(workdir)
        server = None
        try:
            settings = {
                "SESSIONHUB_WRITE_STALL_TIMEOUT_S": str(args.deadline_s),
                "SESSIONHUB_PING_INTERVAL_S": str(PING_INTERVAL_S),
                "SESSIONHUB_PING_TIMEOUT_S": str(PING_TIMEOUT_S),
                "SESSIONHUB_TRANSPORT": args.transport,
            }
            server = servers.start_sessionhub(workdir, url, settings=settings)
            asyncio.run(run(args, server.child.pid, server.port, server.token, server.session_id))
        finally:
            if server is not None:
                server.child.stop()
            redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
