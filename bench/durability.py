"""What SESSIONHUB_DURABILITY costs: ack latency of a change, acknowledged in memory vs by a replica.

    .venv/bin/python bench/durability.py [--changes 500]

For each mode, from scratch: a private redis-server (and, for ``replica``, a replica of it) on
free loopback ports, ``python -m server serve`` with the mode, one python-socketio client
sending ``set_session_status`` changes one after another. Prints ack p50/p99/max per mode.
``aof`` (WAITAOF) needs Redis 7.2+: it is run only when the redis-server on PATH has it.
Loopback only; every process is stopped; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import socketio
from redis import Redis as SyncRedis

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-durability-0123456789-0123456789-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH")
    folder = workdir / f"redis-{port}"
    folder.mkdir()
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", str(folder), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait(lambda: SyncRedis(port=port).ping())
    return process


def wait(probe: Any, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):
            if probe():
                return
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for a process to come up")
        time.sleep(0.05)


def token(user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "exp": now + 3600, "perms": ["read_own", "create", "update"]}, SECRET, "HS256")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def measure(url: str, changes: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token('alice')}"}
    create = f"{url}/voicebot/create_session"
    async with aiohttp.ClientSession() as http, http.post(create, json={}, headers=headers) as response:
        session_id = (await response.json())["session_id"]
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, auth={"token": token("alice")}, transports=["websocket"], wait_timeout=10)
    latencies: list[float] = []
    errors = 0
    try:
        for i in range(changes):
            started = time.perf_counter()
            ack = await client.call(
                "set_session_status", {"session_id": session_id, "status": "recording" if i % 2 == 0 else "paused"}
            )
            latencies.append((time.perf_counter() - started) * 1000)
            errors += 0 if ack.get("ok") else 1
    finally:
        await client.disconnect()
    return {
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "errors": errors,
    }


def run_mode(mode: str, changes: int, workdir: Path) -> dict[str, float]:
    master_port = free_port()
    processes = [start_redis(workdir, master_port, "--appendonly", "yes", "--appendfsync", "everysec")]
    try:
        if mode != "memory-alone":
            replica_port = free_port()
            processes.append(start_redis(workdir, replica_port, "--replicaof", "127.0.0.1", str(master_port)))
            wait(lambda: SyncRedis(port=replica_port).info("replication").get("master_link_status") == "up")
        http_port = free_port()
        env = {
            **os.environ,
            "REDIS_URL": f"redis://127.0.0.1:{master_port}/0",
            "SESSIONHUB_PORT": str(http_port),
            "SESSIONHUB_JWT_SECRET": SECRET,
            "SESSIONHUB_DATA_DIR": str(workdir / f"data-{mode}"),
            "SESSIONHUB_INPROCESS_WORKERS": "0",
            "SESSIONHUB_EVENT_RATE_PER_S": "100000",
            "SESSIONHUB_EVENT_BURST": "100000",
            "SESSIONHUB_DURABILITY": mode.split("-")[0],
            "SESSIONHUB_LOG_LEVEL": "WARNING",
        }
        server = subprocess.Popen([sys.executable, "-m", "server", "serve"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        processes.insert(0, server)
        wait(lambda: socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close() is None)
        return asyncio.run(asyncio.wait_for(measure(f"http://127.0.0.1:{http_port}", changes), 300))
    finally:
        for process in processes:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)


def has_waitaof() -> bool:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout
    version = out.split("v=")[1].split()[0] if "v=" in out else "0.0"
    major, minor = (int(p) for p in version.split(".")[:2])
    return (major, minor) >= (7, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=500, help="sequential changes per mode (default 500)")
    args = parser.parse_args()
    modes = ["memory-alone", "memory-with-replica", "replica"] + (["aof"] if has_waitaof() else [])
    print(f"{'mode':<22} {'ack p50 ms':>10} {'ack p99 ms':>10} {'max ms':>8} {'errors':>6}")
    with tempfile.TemporaryDirectory(prefix="sessionhub-durability-") as folder:
        for mode in modes:
            row = run_mode(mode, args.changes, Path(folder))
            print(f"{mode:<22} {row['p50']:>10.2f} {row['p99']:>10.2f} {row['max']:>8.2f} {int(row['errors']):>6}")
    if not has_waitaof():
        print("aof: not measured (this redis-server has no WAITAOF; it needs Redis 7.2+)")


if __name__ == "__main__":
    main()
