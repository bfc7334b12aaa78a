"""Admin benchmark: the cost of the admin counters on creation, and admin reads at scale.

Self-contained: starts a private redis-server on a free loopback port and ``python -m server
serve`` against it, creates sessions through the public HTTP API, then times the admin routes.
Every loop is bounded in count and in time.

    .venv/bin/python bench/admin.py [--sessions 3000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from common.figures import percentile_upper
from common.servers import mint_token, start_redis, start_server

DEADLINE_S = 240


def token(user: str, perms: list[str]) -> str:
    from auth.claims import Permission

    return mint_token(user, tuple(Permission(p) for p in perms))


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = percentile_upper(ordered, 0.99)
    return f"p50 {p50 * 1000:.1f} ms  p99 {p99 * 1000:.1f} ms  (n={len(ordered)})"


async def create_sessions(http: aiohttp.ClientSession, count: int, concurrency: int, deadline: float) -> float:
    """Create ``count`` sessions (alternating voice and pattern); returns sessions per second."""
    voice_headers = {"Authorization": f"Bearer {token('bench-user', ['read_own', 'create', 'update'])}"}
    queue = list(range(count))
    started = time.perf_counter()

    async def one(i: int) -> None:
        if i % 2:
            async with http.post(
                "/voicebot/create_session", json={"session_name": f"s{i}"}, headers=voice_headers
            ) as r:
                assert r.status == 201, await r.text()
        else:
            async with http.post("/api/sessions", json={}) as r:
                assert r.status == 201, await r.text()

    async def worker() -> None:
        while queue and time.monotonic() < deadline:
            await one(queue.pop())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def timed(
    http: aiohttp.ClientSession, method: str, path: str, headers: dict[str, str], rounds: int, **kw: Any
) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        async with http.request(method, path, headers=headers, **kw) as response:
            await response.read()
            assert response.status == 200, (path, response.status)
        samples.append(time.perf_counter() - started)
    return samples


async def run(args: argparse.Namespace, url: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    admin = {"Authorization": f"Bearer {token('bench-admin', ['admin'])}"}
    async with aiohttp.ClientSession(base_url=url) as http:
        rate = await create_sessions(http, args.sessions, args.concurrency, deadline)
        print(f"create (voice + pattern, admin counters included): {rate:.0f} sessions/s over {args.sessions}")
        reads = [
            ("GET /admin/metrics", "/admin/metrics", 100),
            ("GET /admin/sessions (50, created)", "/admin/sessions?limit=50", 100),
            ("GET /admin/sessions (50, size, pattern)", "/admin/sessions?limit=50&sort=size&kind=pattern", 50),
            ("GET /admin/sessions (orphaned, none)", "/admin/sessions?state=orphaned", 50),
            ("GET /metrics", "/metrics", 50),
        ]
        for label, path, rounds in reads:
            print(f"{label:42s} {percentiles(await timed(http, 'GET', path, admin, rounds))}")
        started = time.perf_counter()
        async with http.get("/admin/export", headers=admin) as response:
            body = await response.read()
        export_s = time.perf_counter() - started
        print(
            f"GET /admin/export (all):              {export_s:.2f} s, {len(body) / 1e6:.1f} MB, "
            f"{args.sessions / export_s:.0f} sessions/s"
        )
        started = time.perf_counter()
        async with http.post("/admin/recalculate", headers=admin, json={}) as response:
            drift = await response.json()
        print(
            f"POST /admin/recalculate:              {time.perf_counter() - started:.2f} s for {drift['sessions']} "
            f"sessions, drift={drift['drift']}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sessionhub-admin-bench-"))
    settings = {
        "SESSIONHUB_CREATES_PER_MIN": "1000000",
        "SESSIONHUB_PATTERNS_CREATES_PER_MIN": "1000000",
        "SESSIONHUB_PATTERNS_CREATES_PER_DAY": "100000000",
        "SESSIONHUB_ADMIN_ACTIONS_PER_MIN": "1000",
    }
    redis, redis_url = start_redis(work, core=None)
    try:
        server = start_server(work, redis_url, settings=settings, data_dir=work)
        try:
            asyncio.run(run(args, server.url))
        finally:
            server.child.stop(10)
    finally:
        redis.stop(10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
