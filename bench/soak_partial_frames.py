"""Soak: unauthenticated connections each stall in the middle of a 1 MiB frame (issue 20, finding 1).

Each round opens ROUNDS_CONNECTIONS (50) WebSocket connections that never send a Socket.IO
CONNECT; each sends the header of a 1 MiB - 1 byte text frame and all of it but the last byte,
then stalls. Once the round's bytes are all sent, the server's RSS is read (the round's peak),
and the connections are closed: by the client, and in the last round by the server (its
connect deadline, 10 s: these clients never authenticate). After the last round a bounded number of plain requests
(``GET /healthz`` on one keep-alive connection) run, and RSS is read again.

Before the fix, 11 rounds took RSS from 92 to 641 MB, still 641 MB after 30,000 more requests.
Bounds: the peak stays under RSS before + the partial-frames budget (64 MiB) + 64 MB of margin
(the server's read buffers, the allocator's slack), and after the plain requests RSS is within
32 MB of before: unauthenticated input pins nothing past its connection.

    .venv/bin/python bench/soak_partial_frames.py [--rounds 11] [--connections 50] [--requests 5000]

Bounded: every socket has a timeout, every loop a count; loopback only; the server and Redis
started here are stopped here.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

import harness

FRAME = (1 << 20) - 1  # the frame's announced payload: just under the 1 MiB message limit
BUDGET_MB = 64.0  # SESSIONHUB_PARTIAL_FRAMES_BUDGET_BYTES's default, 64 MiB
PEAK_MARGIN_MB = 64.0
AFTER_BOUND_MB = 32.0
SOCKET_TIMEOUT_S = 30.0
SERVER_CLOSE_WAIT_S = 30.0  # the connect deadline is 10 s


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stalled_connection(port: int) -> socket.socket:
    """A WebSocket (no Socket.IO CONNECT) that sent all but the last byte of a FRAME-byte frame."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        answer += chunk
    if b" 101 " not in answer.split(b"\r\n", 1)[0]:
        raise ConnectionError(f"handshake refused: {answer[:80]!r}")
    header = struct.pack("!BBQ", 0x81, 0x80 | 127, FRAME) + b"\0\0\0\0"  # masked with a zero key
    sock.sendall(header + b"x" * (FRAME - 1))
    return sock


def wait_closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """True once the server closed ``sock`` (before ``deadline``, a monotonic time)."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def plain_requests(port: int, count: int, deadline_s: float) -> int:
    """Up to ``count`` ``GET /healthz`` on keep-alive connections within ``deadline_s``; those answered 200."""
    answered = 0
    link = http.client.HTTPConnection("127.0.0.1", port, timeout=SOCKET_TIMEOUT_S)
    ends = time.monotonic() + deadline_s
    try:
        for _ in range(count):
            if time.monotonic() > ends:
                break
            link.request("GET", "/healthz")
            response = link.getresponse()
            response.read()
            answered += response.status == 200
    finally:
        link.close()
    return answered


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="sessionhub-soak-partial-") as tmp:
        workdir = Path(tmp)
        redis, url = harness.start_redis(workdir)
        server = None
        try:
            server = harness.start_sessionhub(workdir, url)
            pid = server.child.pid
            plain_requests(server.port, 200, 30)  # the server's own first-use allocations
            before = rss_mb(pid)
            print(
                f"server RSS before {before:.0f} MB; {args.rounds} rounds of {args.connections} unauthenticated "
                f"connections, each stalled {FRAME - 1} bytes into a {FRAME}-byte frame"
            )
            peak = before
            refused = 0
            for round_number in range(1, args.rounds + 1):
                held: list[socket.socket] = []
                try:
                    for _ in range(args.connections):
                        try:
                            held.append(stalled_connection(server.port))
                        except OSError:  # cut by the budget (1009) or refused: the bound at work
                            refused += 1
                    time.sleep(0.2)  # the last bytes read by the server
                    round_peak = rss_mb(pid)
                    if round_number == args.rounds:  # the server closes these (connect deadline)
                        deadline = time.monotonic() + SERVER_CLOSE_WAIT_S
                        unclosed = sum(not wait_closed_by_server(sock, deadline) for sock in held)
                        if unclosed:
                            print(f"round {round_number}: {unclosed} connections not closed by the server")
                            ok = False
                finally:
                    for sock in held:
                        sock.close()
                peak = max(peak, round_peak)
                print(f"round {round_number}: {len(held)} stalled, RSS {round_peak:.0f} MB")
            time.sleep(0.5)
            closed = rss_mb(pid)
            answered = plain_requests(server.port, args.requests, 120)
            after = rss_mb(pid)
            print(
                f"server RSS before {before:.0f} MB, peak {peak:.0f} MB "
                f"(bound {before + BUDGET_MB + PEAK_MARGIN_MB:.0f}: before + budget {BUDGET_MB:.0f} + "
                f"{PEAK_MARGIN_MB:.0f}), after the closes {closed:.0f} MB, after {answered} plain requests "
                f"{after:.0f} MB (bound {before + AFTER_BOUND_MB:.0f}: before + {AFTER_BOUND_MB:.0f}); "
                f"connections refused or cut {refused}"
            )
            ok = (
                ok
                and peak <= before + BUDGET_MB + PEAK_MARGIN_MB
                and after <= before + AFTER_BOUND_MB
                and answered == args.requests
            )
        finally:
            if server is not None:
                server.child.stop()
            redis.stop()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
