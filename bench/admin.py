"""Admin benchmark: the cost of the admin counters on creation, and admin reads at scale.

Self-contained: starts a private redis-server on a free loopback port and ``python -m server
serve`` against it, creates sessions through the public HTTP API, then times the admin routes.
Every loop is bounded in count and in time.

    .venv/bin/python bench/admin.py [--sessions 3000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-for-sessionhub-admin-0123456789-0123456789-0123456789"
DEADLINE_S = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def token(user: str, perms: list[str]) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "exp": now + 3600, "perms": perms}, SECRET, algorithm="HS256")


async def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not start")


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
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
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("redis-server is needed", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="sessionhub-admin-bench-"))
    redis_port, http_port = free_port(), free_port()
    redis = subprocess.Popen(
        [
            redis_bin,
            "--bind",
            "127.0.0.1",
            "--port",
            str(redis_port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work),
        ],
        stdout=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "SESSIONHUB_PORT": str(http_port),
        "SESSIONHUB_JWT_SECRET": SECRET,
        "SESSIONHUB_DATA_DIR": str(work),
        "SESSIONHUB_CREATES_PER_MIN": "1000000",
        "SESSIONHUB_PATTERNS_CREATES_PER_MIN": "1000000",
        "SESSIONHUB_ADMIN_ACTIONS_PER_MIN": "1000",
        "SESSIONHUB_LOG_LEVEL": "WARNING",
        "SESSIONHUB_INPROCESS_WORKERS": "0",
    }
    server = subprocess.Popen([sys.executable, "-m", "server", "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{http_port}"
        asyncio.run(wait_http(url))
        asyncio.run(run(args, url))
    finally:
        server.terminate()
        server.wait(10)
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
