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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import socketio
from redis import Redis as SyncRedis

from common.figures import percentile_upper as percentile
from common.servers import Child, mint_token, redis_version, start_redis, start_server


def wait(probe: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):
            if probe():
                return
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for a process to come up")
        time.sleep(0.05)


def token(user: str) -> str:
    return mint_token(user)


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
    children: list[Child] = []
    try:
        master, master_url = start_redis(workdir, core=None, args=("--appendonly", "yes", "--appendfsync", "everysec"))
        children.append(master)
        if mode != "memory-alone":
            master_port = str(urlsplit(master_url).port)
            replica, replica_url = start_redis(workdir, core=None, args=("--replicaof", "127.0.0.1", master_port))
            children.append(replica)
            wait(lambda: SyncRedis.from_url(replica_url).info("replication").get("master_link_status") == "up")
        settings = {
            "SESSIONHUB_EVENT_RATE_PER_S": "100000",
            "SESSIONHUB_EVENT_BURST": "100000",
            "SESSIONHUB_DURABILITY": mode.split("-")[0],
        }
        server = start_server(workdir, master_url, settings=settings, data_dir=workdir / f"data-{mode}")
        children.insert(0, server.child)
        return asyncio.run(asyncio.wait_for(measure(server.url, changes), 300))
    finally:
        for child in children:
            child.stop(10)


def has_waitaof() -> bool:
    return redis_version() >= (7, 2)


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
