"""Voice chunk upload benchmark: real multipart uploads into a real server, live new_message delivery.

Starts a private redis-server on a free loopback port and ``python -m server serve`` against it,
then: U users, each with one open voice session and one Socket.IO subscriber on it, upload C
chunks each (synthetic WebM/Opus of ``--chunk-ms``), ``--concurrency`` uploads in flight.
Measured: upload latency (request to 201), the time from the upload's start until the
subscriber receives its ``new_message``, throughput, and a second pass re-uploading every
chunk (all must answer ``duplicate``). Every loop is bounded in count and time; every process
it starts is stopped by its pid.

    .venv/bin/python bench/voice_chunks.py                 # 8 users x 25 chunks of 10 s
    .venv/bin/python bench/voice_chunks.py --users 4 --chunks 10 --chunk-ms 60000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import socketio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.figures import percentile  # noqa: E402
from common.servers import mint_token, start_redis, start_server  # noqa: E402
from tests.audio_samples import webm  # noqa: E402

DEADLINE_S = 120.0


def pct(values: list[float], p: float) -> float:
    return percentile(values, p / 100)


class User:
    """One user: a session, a subscriber, and the chunks to upload."""

    def __init__(self, name: str, token: str) -> None:
        self.name = name
        self.token = token
        self.session_id = ""
        self.sio = socketio.AsyncClient(reconnection=False)
        self.seen: dict[str, float] = {}  # chunk start_ms -> time the event arrived
        self.sio.on("new_message", self._on_new_message)

    async def _on_new_message(self, data: dict[str, Any]) -> None:
        self.seen[str(data["data"]["chunk"]["start_ms"])] = time.perf_counter()


async def prepare(url: str, user: User) -> None:
    headers = {"Authorization": f"Bearer {user.token}"}
    async with aiohttp.ClientSession() as http, http.post(f"{url}/voicebot/create_session", headers=headers) as r:
        user.session_id = (await r.json())["session_id"]
    await user.sio.connect(url, auth={"token": user.token}, transports=["websocket"], wait_timeout=10)
    ack = await user.sio.call("subscribe_on_session", {"session_id": user.session_id}, timeout=10)
    assert ack["ok"], ack


async def upload(http: aiohttp.ClientSession, url: str, user: User, start_ms: int, audio: bytes) -> tuple[int, float]:
    form = aiohttp.FormData()
    for name, value in (
        ("session_id", user.session_id),
        ("start_ms", start_ms),
        ("end_ms", start_ms + 1),
        ("duration_ms", 1),
    ):
        form.add_field(name, str(value))
    form.add_field("file", audio, filename="c.webm", content_type="audio/webm")
    began = time.perf_counter()
    async with http.post(f"{url}/voicebot/chunks", data=form, headers={"Authorization": f"Bearer {user.token}"}) as r:
        await r.read()
        return r.status, began


async def run(args: argparse.Namespace, url: str, tokens: list[str]) -> dict[str, Any]:
    users = [User(f"bench{i}", token) for i, token in enumerate(tokens)]
    await asyncio.gather(*(prepare(url, u) for u in users))
    # Distinct audio per chunk (a different frame count), so that none is a duplicate.
    jobs = [(u, c * 60_000, webm(args.chunk_ms + c * 20)) for c in range(args.chunks) for u in users]
    total_bytes = sum(len(a) for _, _, a in jobs)
    gate = asyncio.Semaphore(args.concurrency)
    latencies: list[float] = []
    started: dict[tuple[str, str], float] = {}
    statuses: list[int] = []

    async def one(http: aiohttp.ClientSession, user: User, start_ms: int, audio: bytes) -> None:
        async with gate:
            status, began = await upload(http, url, user, start_ms, audio)
            latencies.append(time.perf_counter() - began)
            started[(user.name, str(start_ms))] = began
            statuses.append(status)

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(http, *job) for job in jobs)), DEADLINE_S)
        elapsed = time.perf_counter() - t0
        deadline = time.monotonic() + 10
        while sum(len(u.seen) for u in users) < len(jobs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        delivery = [u.seen[s] - started[(u.name, s)] for u in users for s in u.seen if (u.name, s) in started]
        statuses_dup: list[int] = []
        t1 = time.perf_counter()
        for user, start_ms, audio in jobs[: args.users * min(args.chunks, 5)]:
            statuses_dup.append((await upload(http, url, user, start_ms, audio))[0])
        dup_elapsed = time.perf_counter() - t1
    for user in users:
        await user.sio.disconnect()
    return {
        "uploads": len(jobs),
        "created": statuses.count(201),
        "other_statuses": sorted(set(statuses) - {201}),
        "seconds": elapsed,
        "uploads_per_s": len(jobs) / elapsed,
        "mib_per_s": total_bytes / elapsed / 2**20,
        "mean_chunk_kib": total_bytes / len(jobs) / 1024,
        "upload_ms": {p: pct(latencies, p) * 1000 for p in (50, 95, 99)},
        "event_ms": {p: pct(delivery, p) * 1000 for p in (50, 95, 99)},
        "events_received": len(delivery),
        "duplicates_answered_200": statuses_dup.count(200),
        "duplicates_sent": len(statuses_dup),
        "duplicate_ms_mean": dup_elapsed / max(1, len(statuses_dup)) * 1000,
    }


def report(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    shape = f"{args.users} users x {args.chunks} chunks of {args.chunk_ms} ms, {args.concurrency} in flight"
    print(f"voice chunk upload: {shape}")
    others = figures["other_statuses"]
    print(f"  uploads            {figures['uploads']} ({figures['created']} created, other statuses {others})")
    print(f"  mean chunk         {figures['mean_chunk_kib']:.1f} KiB")
    print(f"  wall time          {figures['seconds']:.2f} s")
    print(f"  throughput         {figures['uploads_per_s']:.1f} uploads/s, {figures['mib_per_s']:.2f} MiB/s")
    up, ev = figures["upload_ms"], figures["event_ms"]
    print(f"  upload latency     p50 {up[50]:.1f} ms  p95 {up[95]:.1f} ms  p99 {up[99]:.1f} ms")
    events = figures["events_received"]
    print(f"  upload->event      p50 {ev[50]:.1f} ms  p95 {ev[95]:.1f} ms  p99 {ev[99]:.1f} ms ({events} events)")
    print(
        f"  re-upload (dedupe) {figures['duplicates_answered_200']}/{figures['duplicates_sent']} answered duplicate,"
        f" {figures['duplicate_ms_mean']:.1f} ms each (sequential)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--chunks", type=int, default=25, help="per user (at most 100: the per-user upload rate)")
    parser.add_argument("--chunk-ms", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    args.chunks = max(1, min(args.chunks, 100))
    with tempfile.TemporaryDirectory(prefix="voice-bench-") as tmp:
        workdir = Path(tmp)
        redis, redis_url = start_redis(workdir, core=None)
        settings = {"SESSIONHUB_CREATES_PER_MIN": "10000"}
        try:
            server = start_server(workdir, redis_url, settings=settings, data_dir=workdir)
            try:
                tokens = [mint_token(f"bench{i}") for i in range(args.users)]
                figures = asyncio.run(run(args, server.url, tokens))
            finally:
                server.child.stop(10)
        finally:
            redis.stop(10)
    report(args, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
