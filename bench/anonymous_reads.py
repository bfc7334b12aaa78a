"""What the public routes cost the server: anonymous GETs, no token, as anyone may send them.

One ``python -m server serve`` on its own core with its own redis-server; for each route,
``--connections`` keep-alive clients (aiohttp, on the other core) send ``--requests`` GETs in
all, bounded by ``--limit-s``. Printed per route: requests answered per second, the server's CPU
per request (``/proc/<pid>/stat``), bytes per answer, and that CPU against ``/healthz``'s (the
cheapest answer a client can ask for: the reference in the same run).

    .venv/bin/python bench/anonymous_reads.py [--requests 2000] [--connections 8] [--limit-s 60]
        [--route /openapi.json --route /healthz ...] [--if-none-match]  # send back each ETag
        [--pattern-kb 64]  # also GET a pattern session (anonymous, by link) of that size
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import pattern_ops
import procstat

from common import servers

ROUTES = ("/healthz", "/openapi.json", "/api-docs")


async def hammer(
    url: str, requests: int, connections: int, limit_s: float, if_none_match: bool
) -> tuple[int, int, dict[int, int]]:
    """(answers, body bytes, statuses seen) of ``requests`` GETs of ``url`` over ``connections``."""
    answered, size = 0, 0
    statuses: dict[int, int] = {}
    left = requests
    deadline = time.monotonic() + limit_s
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as http:
        etag = ""
        if if_none_match:
            async with http.get(url) as first:
                etag = first.headers.get("ETag", "")
                await first.read()

        async def one_client() -> None:
            nonlocal answered, size, left
            while left > 0 and time.monotonic() < deadline:
                left -= 1
                async with http.get(url, headers={"If-None-Match": etag} if etag else None) as answer:
                    body = await answer.read()
                answered += 1
                size += len(body)
                statuses[answer.status] = statuses.get(answer.status, 0) + 1

        await asyncio.gather(*(one_client() for _ in range(connections)))
    return answered, size, statuses


async def create_pattern(base: str, state: dict[str, object]) -> str:
    """A pattern session holding ``state``; its id."""
    body = json.dumps({"state": state}, separators=(",", ":"))  # compact, as a browser sends it
    headers = {"Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(base + "/api/sessions", data=body, headers=headers) as created,
    ):
        if created.status != 201:
            raise RuntimeError(f"create answered {created.status}: {await created.text()}")
        return str((await created.json())["id"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--limit-s", type=float, default=60.0)
    parser.add_argument("--route", action="append", help=f"(repeatable; default {', '.join(ROUTES)})")
    parser.add_argument("--if-none-match", action="store_true", help="send each route's ETag back")
    parser.add_argument("--pattern-kb", type=int, default=0, help="also GET a pattern of this size (KB)")
    args = parser.parse_args()
    routes = args.route or list(ROUTES)
    if "/healthz" not in routes:
        routes.insert(0, "/healthz")
    os.sched_setaffinity(0, {int(servers.LOAD_CORE)})
    rows = []
    with tempfile.TemporaryDirectory(prefix="sessionhub-anonymous-") as tmp:
        workdir = Path(tmp)
        redis, url = servers.start_redis(workdir)
        server = None
        try:
            server = servers.start_sessionhub(workdir, url)
            base = f"http://127.0.0.1:{server.port}"
            pid = server.child.pid
            if args.pattern_kb:
                state = pattern_ops.state_of_size(args.pattern_kb * 1024)
                routes.append("/api/sessions/" + asyncio.run(create_pattern(base, state)))
            for route in routes:
                asyncio.run(hammer(base + route, 50, 2, args.limit_s, args.if_none_match))  # warm up
                cpu_before, started = procstat.cpu_seconds(pid), time.monotonic()
                answered, size, statuses = asyncio.run(
                    hammer(base + route, args.requests, args.connections, args.limit_s, args.if_none_match)
                )
                wall, cpu = time.monotonic() - started, procstat.cpu_seconds(pid) - cpu_before
                rows.append(
                    (route, answered, answered / wall, cpu / max(answered, 1) * 1e6, size // max(answered, 1), statuses)
                )
        finally:
            if server is not None:
                server.child.stop()
            redis.stop()
    reference = next(row[3] for row in rows if row[0] == "/healthz")
    print(
        f"{'route':<16} {'answers':>8} {'per s':>8} {'srv µs/req':>11} {'bytes/ans':>10} {'vs /healthz':>12}  statuses"
    )
    for route, answered, per_s, us, size, statuses in rows:
        print(f"{route:<52} {answered:>8} {per_s:>8.0f} {us:>11.0f} {size:>10} {us / reference:>11.1f}x  {statuses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
