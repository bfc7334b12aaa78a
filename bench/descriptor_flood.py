"""Connections from many addresses until the server's descriptors run out: who is still served.

One ``python -m server serve`` with its own redis-server, started under ``prlimit`` with an
open-files limit of ``--limit`` (soft and hard). Before the flood, ``--probes`` keep-alive
connections are opened from 127.0.0.1 (people already connected). Then ``--addresses``
loopback addresses (127.0.0.2, 127.0.0.3, ...: all of 127/8 is this host) each open up to
``--per-address`` connections that ask ``GET /nothing`` and stay open (kept alive; the HTTP
idle timeout is lifted), until the server refuses one, answers none within a second, or the
count is reached. Then, at the same time, each probe connection asks for a page (``GET /``: a
file to open) or creates a pattern (``POST /api/sessions``: Redis), and a new connection asks
``GET /healthz``. Printed: the connections the flood holds, how the last one was answered, and
each probe's status (or ``no answer`` within ``--wait-s``).

    .venv/bin/python bench/descriptor_flood.py [--limit 2048] [--addresses 3] [--per-address 1000]
        [--probes 20] [--wait-s 5] [--reserve N]  # SESSIONHUB_DESCRIPTOR_RESERVE (default: the server's)

Bounded: every connection and answer has a deadline, the flood stops at the first refusal or
silence, and every process started here is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from common import servers
from common.ports import free_port

NOTHING = b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"


async def answer(reader: asyncio.StreamReader, wait_s: float) -> str:
    """The status line's code and reason of the next answer on ``reader`` ("no answer", "closed")."""
    try:
        async with asyncio.timeout(wait_s):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")), 0
            )
            body = await reader.readexactly(length)
    except TimeoutError:
        return "no answer"
    except (asyncio.IncompleteReadError, ConnectionError):
        return "closed"
    status = head.split(b"\r\n", 1)[0].decode(errors="replace").split(" ", 1)[1]
    if b'"reason"' in body:
        status += f" ({json.loads(body).get('reason')})"
    return status


async def open_from(address: str, port: int, wait_s: float) -> tuple[str, asyncio.StreamWriter | None]:
    """A connection from ``address`` that asked ``GET /nothing``: how it was answered, and it
    (None when the server did not keep it)."""
    try:
        async with asyncio.timeout(wait_s):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    except (TimeoutError, OSError) as exc:
        return f"connect failed: {exc}", None
    writer.write(NOTHING)
    status = await answer(reader, wait_s)
    if status.startswith("404"):
        return status, writer
    writer.close()
    return status, None


async def flood(args: argparse.Namespace, port: int) -> None:
    probes = [await asyncio.open_connection("127.0.0.1", port) for _ in range(args.probes)]
    held: list[asyncio.StreamWriter] = []
    last = "none refused"
    try:
        for number in range(args.addresses):
            address = f"127.0.0.{number + 2}"
            for _ in range(args.per_address):
                status, writer = await open_from(address, port, 1.0)
                if writer is None:
                    last = f"{status} (from {address})"
                    break
                held.append(writer)
            else:
                continue
            break
        print(f"flood: {len(held)} connections held; the last one: {last}")

        async def page(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return "GET / " + await answer(reader, args.wait_s)

        async def create(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
            body = b"{}"
            writer.write(
                b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            return "POST /api/sessions " + await answer(reader, args.wait_s)

        async def health() -> str:
            try:
                async with asyncio.timeout(args.wait_s):
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except (TimeoutError, OSError) as exc:
                return f"new GET /healthz connect failed: {exc}"
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                return "new GET /healthz " + await answer(reader, args.wait_s)
            finally:
                writer.close()

        asks = [(page if n % 2 == 0 else create)(r, w) for n, (r, w) in enumerate(probes)]
        results = await asyncio.gather(*asks, health())
        for outcome, count in sorted(Counter(results).items()):
            print(f"  {count:3d} x {outcome}")
    finally:
        for writer in held:
            writer.close()
        for _, writer in probes:
            writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=2048)
    parser.add_argument("--addresses", type=int, default=3)
    parser.add_argument("--per-address", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--wait-s", type=float, default=5.0)
    parser.add_argument("--reserve", type=int, default=None)
    args = parser.parse_args()
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise SystemExit("prlimit not found: install util-linux")
    with tempfile.TemporaryDirectory(prefix="sessionhub-flood-") as tmp:
        workdir = Path(tmp)
        redis, url = servers.start_redis(workdir, core=None)
        child = None
        try:
            port = free_port()
            env = servers.server_env(workdir / "data", url, {"SESSIONHUB_HTTP_IDLE_TIMEOUT_S": "600"})
            if args.reserve is not None:
                env["SESSIONHUB_DESCRIPTOR_RESERVE"] = str(args.reserve)
            argv = [prlimit, f"--nofile={args.limit}:{args.limit}", servers.PYTHON, "-m", "server", "serve"]
            child = servers.start("sessionhub", [*argv, "--port", str(port)], workdir=workdir, env=env)
            servers.wait_ready(child, port)
            print(f"server: open-files limit {args.limit}; checkout {servers.ROOT}")
            asyncio.run(flood(args, port))
            refused = [line for line in child.log_tail(200).splitlines() if "connections refused" in line]
            print("server log:", refused[-1] if refused else "(no refusal logged)")
        finally:
            if child is not None:
                child.stop()
            redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
