"""What one live pattern op costs Redis at every state size, and how fast it reaches the others.

    make bench-patterns                          # = .venv/bin/python bench/pattern_ops.py
    .venv/bin/python bench/pattern_ops.py --ops 200 --seconds 10     # quicker

Self-contained: a private redis-server (pinned to the load core) and one ``python -m server
serve`` (pinned to the server core) of this checkout, on free loopback ports (see harness.py);
every process is stopped by its pid, every loop is bounded in count and time.

(a) **Redis per op by state size.** For each size from 1 KB to the largest state a save may
    hold (``SESSIONHUB_PATTERNS_MAX_BODY_BYTES`` less the 64-byte margin, less 256 bytes of room
    for the ops' own growth), a pattern of that size is created and one Socket.IO client sends
    ``--ops`` live ops one after another (set_step, toggle_step, set_lock, clearing that lock,
    set_track_volume, set_tempo, over its tracks). Printed per size: the op script's Redis time
    per call (INFO commandstats: EVALSHA usec/calls, the best of 3 rounds) and redis-server's CPU per
    op (/proc, over the window), each also as a ratio to the smallest size; flat means the work
    does not grow with the state. Also printed: how the state is stored after the ops (``whole``:
    one JSON document rewritten by each op; ``split``: fields, issue 26).
(b) **Delivery under load.** ``--editors`` python-socketio clients each send ``--rate`` ops a
    second for ``--seconds`` on one pattern of ``--state-kb`` KB, watched by ``--watchers``
    lean WebSocket clients (Engine.IO/Socket.IO framing by hand, one json.loads per event, so a
    hundred cost this process little); op -> every *other* client's delivery p50/p99/max (sent
    and received on this process's clock), ack p50/p99, and whether every client got every op.

Run it against another checkout (the storage before issue 26) with that checkout's copy of this
file: ``cd /tmp/old && /path/to/.venv/bin/python bench/pattern_ops.py`` serves that checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import harness
import socketio
from procstat import cpu_sample, own_cpu_sample
from redis.asyncio import Redis

from auth.claims import GUEST_PERMISSIONS
from auth.tokens import TokenConfig, TokenService
from storage.keys import Keys

MAX_BODY_BYTES = 64 * 1024
MAX_STATE_BYTES = MAX_BODY_BYTES - 64 - 256  # the events' margin, and room for the ops' growth
SIZES_KB = (1, 4, 8, 16, 32, 48)
LOCK = {"pitch": -24, "volume": 0.12345678901234}
TIME_LIMIT_S = 300.0
ROUNDS = 3  # of (a), per size


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--ops", type=int, default=300, help="ops per state size in (a) (default 300)")
    p.add_argument("--editors", type=int, default=10, help="editors in (b) (default 10)")
    p.add_argument("--watchers", type=int, default=100, help="watchers in (b) (default 100)")
    p.add_argument("--rate", type=float, default=5.0, help="ops/s per editor in (b) (default 5)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of (b) (default 20 s)")
    p.add_argument("--state-kb", type=int, default=32, help="state size in (b), KB (default 32)")
    p.add_argument("--skip", choices=("a", "b"), help="leave one part out")
    return p.parse_args(argv)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def compact_size(state: dict[str, Any]) -> int:
    return len(json.dumps(state, separators=(",", ":")).encode())


def track(number: int, steps: int) -> dict[str, Any]:
    return {
        "id": f"t{number}",
        "name": f"Track {number}",
        "sampleId": "kick",
        "steps": [False] * steps,
        "parameterLocks": [None] * steps,
        "volume": 0.5,
        "muted": False,
        "soloed": False,
        "transpose": 0,
        "stepCount": min(steps, 128),
    }


def state_of_size(size: int) -> dict[str, Any]:
    """A valid state of at most ``size`` bytes of compact JSON, filled track by track with
    parameter locks (tracks of 64 steps below 2 KB: one of 128 takes more than 1 KB)."""
    tracks: list[dict[str, Any]] = []
    state: dict[str, Any] = {"tracks": tracks, "tempo": 120, "swing": 0, "version": 1}
    steps = 64 if size < 2048 else 128
    for number in range(16):
        tracks.append(track(number, steps))
        if compact_size(state) > size:
            tracks.pop()
            return state
        locks = tracks[-1]["parameterLocks"]
        # Whole locks at a time while far from the size, then one by one.
        for step in range(steps):
            locks[step] = LOCK
            if compact_size(state) > size:
                locks[step] = None
                return state
    return state


def op_for(number: int, tracks: int, steps: int) -> dict[str, Any]:
    """The number-th op of (a): a mix that leaves the state's size about where it was."""
    track_id = f"t{number % tracks}"
    step = (number // 6) % min(steps, 16)
    kind = number % 6
    if kind == 0:
        return {"type": "set_step", "trackId": track_id, "step": step, "on": number % 12 == 0}
    if kind == 1:
        return {"type": "toggle_step", "trackId": track_id, "step": step}
    if kind == 2:
        return {"type": "set_lock", "trackId": track_id, "step": step, "lock": {"pitch": 5}}
    if kind == 3:
        return {"type": "set_lock", "trackId": track_id, "step": step, "lock": None}
    if kind == 4:
        return {"type": "set_track_volume", "trackId": track_id, "volume": round(0.1 + (number % 9) / 10, 1)}
    return {"type": "set_tempo", "tempo": 100 + number % 50}


class Bench:
    """The redis-server and the server of this checkout."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis_child, self.redis_url = harness.start_redis(workdir)
        settings = {
            "SESSIONHUB_PATTERNS_CREATES_PER_MIN": "100000",
            "SESSIONHUB_PATTERNS_CREATES_PER_DAY": "100000000",
            "SESSIONHUB_PATTERNS_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            "SESSIONHUB_PATTERNS_MAX_PLAYERS": "1000",
        }
        self.server = harness.start_sessionhub(workdir, self.redis_url, settings=settings)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.redis = Redis.from_url(self.redis_url, decode_responses=True)
        self.tokens = TokenService(
            TokenConfig(algorithm="HS256", verify_key=harness.JWT_SECRET, signing_key=harness.JWT_SECRET)
        )

    def token(self, user: str) -> str:
        token, _ = self.tokens.mint(user_id=user, now_s=time.time(), ttl_s=3600, perms=GUEST_PERMISSIONS)
        return token

    async def create(self, state: dict[str, Any]) -> str:
        body = json.dumps({"state": state}, separators=(",", ":"))  # compact, as a browser sends it
        headers = {"Content-Type": "application/json"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.url}/api/sessions", data=body, headers=headers) as r,
        ):
            if r.status != 201:
                raise RuntimeError(f"create answered {r.status}: {await r.text()}")
            return str((await r.json())["id"])

    async def editor(self, session_id: str, name: str) -> socketio.AsyncClient:
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(self.url, auth={"token": self.token(name)}, transports=["websocket"], wait_timeout=10)
        ack = await sio.call("subscribe_on_session", {"session_id": session_id}, timeout=10)
        if not ack.get("ok"):
            raise RuntimeError(f"subscribe refused: {ack}")
        return sio

    async def evalsha(self) -> tuple[int, int]:
        info = await self.redis.info("commandstats")
        stats = info.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
        return int(stats["calls"]), int(stats["usec"])

    async def form(self, session_id: str) -> str:
        fields = await self.redis.hkeys(Keys().session(session_id))  # a read-only peek
        if not fields:
            return "?"
        return "whole" if "state" in fields else "split"

    async def close(self) -> None:
        await self.redis.aclose()
        self.server.child.stop()
        self.redis_child.stop()


async def per_size(bench: Bench, ops: int) -> list[dict[str, Any]]:
    """Part (a): Redis time and CPU per op at each state size."""
    rows = []
    for size in [*(kb * 1024 for kb in SIZES_KB), MAX_STATE_BYTES]:
        state = state_of_size(size)
        session_id = await bench.create(state)
        sio = await bench.editor(session_id, f"sizer{size}")
        tracks, steps = len(state["tracks"]), len(state["tracks"][0]["steps"])
        try:
            warm = await sio.call("pattern_op", {"session_id": session_id, "seq": 0, "op": op_for(0, tracks, steps)})
            if not warm.get("ok"):
                raise RuntimeError(f"op refused: {warm}")
            # Rounds, the best one's EVALSHA time kept: a busy machine only ever slows a round
            # down (Redis counts wall-clock time, preemption included). CPU is summed (ticks).
            best_us, calls, cpu_s, refused = float("inf"), 0, 0.0, 0
            per_round = max(1, ops // ROUNDS)
            for round_ in range(ROUNDS):
                calls0, usec0 = await bench.evalsha()
                cpu0 = cpu_sample(bench.redis_child.pid, time.monotonic())
                for number in range(1 + round_ * per_round, 1 + (round_ + 1) * per_round):
                    payload = {"session_id": session_id, "seq": number, "op": op_for(number, tracks, steps)}
                    ack = await sio.call("pattern_op", payload, timeout=10)
                    refused += 0 if ack.get("ok") else 1
                cpu1 = cpu_sample(bench.redis_child.pid, time.monotonic())
                calls1, usec1 = await bench.evalsha()
                best_us = min(best_us, (usec1 - usec0) / max(1, calls1 - calls0))
                calls += calls1 - calls0
                cpu_s += cpu1.cpu_s - cpu0.cpu_s
        finally:
            await sio.disconnect()
        rows.append(
            {
                "state_bytes": compact_size(state),
                "tracks": tracks,
                "form": await bench.form(session_id),
                "evalsha_us": best_us,
                "evalsha_per_op": calls / (per_round * ROUNDS),
                "redis_cpu_us": cpu_s * 1e6 / (per_round * ROUNDS),
                "refused": refused,
            }
        )
    return rows


class LeanWatcher:
    """A watcher over a raw WebSocket; records when each op arrives, keyed by (client, seq)."""

    def __init__(self, arrivals: dict[tuple[str, int], list[float]]) -> None:
        self.arrivals = arrivals
        self.seen = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def join(self, url: str, token: str, session_id: str) -> None:
        self._http = aiohttp.ClientSession()
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self._ws = await self._http.ws_connect(ws_url, max_msg_size=0)
        opened = await self._ws.receive_str(timeout=10)
        assert opened.startswith("0"), opened
        await self._ws.send_str("40" + json.dumps({"token": token}))
        connected = await self._ws.receive_str(timeout=10)
        assert connected.startswith("40"), connected
        self._reader = asyncio.create_task(self._read())
        await self._ws.send_str("421" + json.dumps(["subscribe_on_session", {"session_id": session_id}]))
        await asyncio.wait_for(self._subscribed.wait(), 10)

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            text = message.data
            if text == "2":
                await self._ws.send_str("3")
            elif text.startswith('42["pattern_op"'):
                now = time.perf_counter()
                _, event = json.loads(text[2:])
                data = event["data"]
                self.arrivals.setdefault((data["client"], int(data["seq"])), []).append(now)
                self.seen += 1
            elif text.startswith("431"):
                self._subscribed.set()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
        if self._http is not None:
            await self._http.close()


async def delivery(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Part (b): editors x rate ops/s with watchers; op -> other clients' delivery."""
    state = state_of_size(args.state_kb * 1024)
    tracks = len(state["tracks"])
    session_id = await bench.create(state)
    arrivals: dict[tuple[str, int], list[float]] = {}
    sent: dict[tuple[str, int], float] = {}
    ack_ms: list[float] = []
    refused: dict[str, int] = {}
    editors = [await bench.editor(session_id, f"editor{i}") for i in range(args.editors)]
    editor_seen = [0] * len(editors)
    for index, sio in enumerate(editors):

        def on_op(event: dict[str, Any], index: int = index, sio: socketio.AsyncClient = sio) -> None:
            now = time.perf_counter()
            data = event["data"]
            editor_seen[index] += 1
            if data["client"] != sio.get_sid():  # the others' deliveries only
                arrivals.setdefault((data["client"], int(data["seq"])), []).append(now)

        sio.on("pattern_op", on_op)
    watchers = [LeanWatcher(arrivals) for _ in range(args.watchers)]
    for number, watcher in enumerate(watchers):
        await watcher.join(bench.url, bench.token(f"watcher{number}"), session_id)

    async def play(index: int, sio: socketio.AsyncClient) -> None:
        rng = random.Random(index)
        start = time.perf_counter()
        client = sio.get_sid()
        for seq in range(int(args.rate * args.seconds)):
            await asyncio.sleep(max(0.0, start + seq / args.rate - time.perf_counter()))
            track_id = f"t{rng.randrange(tracks)}"
            if rng.random() < 0.9:
                op = {"type": "set_step", "trackId": track_id, "step": rng.randrange(16), "on": rng.random() < 0.5}
            else:
                op = {"type": "set_track_volume", "trackId": track_id, "volume": round(rng.random(), 2)}
            sent[(client, seq)] = time.perf_counter()
            ack = await sio.call("pattern_op", {"session_id": session_id, "seq": seq, "op": op}, timeout=10)
            if ack.get("ok"):
                ack_ms.append((time.perf_counter() - sent[(client, seq)]) * 1000)
            else:
                refused[str(ack.get("error"))] = refused.get(str(ack.get("error")), 0) + 1

    cpu0 = cpu_sample(bench.server.child.pid, time.monotonic())
    own0 = own_cpu_sample(time.monotonic())
    rcpu0 = cpu_sample(bench.redis_child.pid, time.monotonic())
    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(play(i, sio) for i, sio in enumerate(editors))), args.seconds + 60)
    elapsed = time.perf_counter() - started
    acked = len(ack_ms)
    others = args.watchers + args.editors - 1
    deadline = time.perf_counter() + 15
    while sum(len(v) for v in arrivals.values()) < acked * others and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    cpu1 = cpu_sample(bench.server.child.pid, time.monotonic())
    own1 = own_cpu_sample(time.monotonic())
    rcpu1 = cpu_sample(bench.redis_child.pid, time.monotonic())
    latencies = [(t - sent[key]) * 1000 for key, times in arrivals.items() if key in sent for t in times]
    complete = sum(len(v) for v in arrivals.values()) == acked * others
    for watcher in watchers:
        await watcher.close()
    for sio in editors:
        await sio.disconnect()
    return {
        "state_bytes": compact_size(state),
        "form": await bench.form(session_id),
        "sent": len(sent),
        "acked": acked,
        "refused": refused,
        "ops_per_s": acked / elapsed,
        "deliveries": len(latencies),
        "complete": complete,
        "delivery_p50_ms": percentile(latencies, 0.5),
        "delivery_p99_ms": percentile(latencies, 0.99),
        "delivery_max_ms": max(latencies, default=float("nan")),
        "ack_p50_ms": percentile(ack_ms, 0.5),
        "ack_p99_ms": percentile(ack_ms, 0.99),
        "server_cpu_ms_per_op": (cpu1.cpu_s - cpu0.cpu_s) * 1000 / max(1, acked),
        "redis_cpu_us_per_op": (rcpu1.cpu_s - rcpu0.cpu_s) * 1e6 / max(1, acked),
        # This process runs every client: near 100% its own delays are in the latencies.
        "clients_cpu_pct": own1.percent_since(own0),
        "server_cpu_pct": cpu1.percent_since(cpu0),
    }


def print_sizes(rows: list[dict[str, Any]]) -> None:
    base = rows[0]
    print("\n(a) Redis per live op by state size")
    header = f"{'state':>9} {'tracks':>6} {'form':>6} {'EVALSHA us/call':>16} {'ratio':>6}"
    print(f"{header} {'redis CPU us/op':>16} {'ratio':>6} {'EVALSHA/op':>10}")
    for row in rows:
        print(
            f"{row['state_bytes']:>9,} {row['tracks']:>6} {row['form']:>6} {row['evalsha_us']:>16.1f} "
            f"{row['evalsha_us'] / base['evalsha_us']:>5.1f}x {row['redis_cpu_us']:>16.1f} "
            f"{row['redis_cpu_us'] / max(base['redis_cpu_us'], 1e-9):>5.1f}x {row['evalsha_per_op']:>10.2f}"
            + (f"  ({row['refused']} refused)" if row["refused"] else "")
        )


def print_delivery(args: argparse.Namespace, row: dict[str, Any]) -> None:
    print(
        f"\n(b) {args.editors} editors x {args.rate:g} ops/s for {args.seconds:g} s, {args.watchers} watchers, "
        f"one pattern of {row['state_bytes']:,} bytes ({row['form']})"
    )
    print(
        f"ops sent {row['sent']}, acked {row['acked']}, refused {row['refused'] or 0}, {row['ops_per_s']:.0f} ops/s; "
        f"deliveries to the other clients {row['deliveries']} (every one: {row['complete']})"
    )
    print(
        f"op -> other clients  p50 {row['delivery_p50_ms']:.1f} ms  p99 {row['delivery_p99_ms']:.1f} ms  "
        f"max {row['delivery_max_ms']:.1f} ms   (target p99 <= 50 ms)"
    )
    print(f"ack                  p50 {row['ack_p50_ms']:.1f} ms  p99 {row['ack_p99_ms']:.1f} ms")
    print(
        f"server CPU {row['server_cpu_ms_per_op']:.2f} ms/op (its fan-out to {args.watchers + args.editors} "
        f"clients included), redis CPU {row['redis_cpu_us_per_op']:.0f} us/op"
    )
    print(
        f"busy: server {row['server_cpu_pct']:.0f}% of a core, this process (every client) "
        f"{row['clients_cpu_pct']:.0f}%, machine load {os.getloadavg()[0]:.2f}"
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-pattern-ops-"))
    bench = Bench(workdir)
    try:
        figures: dict[str, Any] = {"checkout": str(harness.ROOT)}
        if args.skip != "a":
            figures["sizes"] = await per_size(bench, args.ops)
            print_sizes(figures["sizes"])
        if args.skip != "b":
            figures["delivery"] = await delivery(bench, args)
            print_delivery(args, figures["delivery"])
        return figures
    finally:
        await bench.close()


def main() -> int:
    args = parse_args()
    print(f"checkout {harness.ROOT}; load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min)")
    figures = asyncio.run(asyncio.wait_for(run(args), TIME_LIMIT_S))
    out = harness.BENCH / "out"
    out.mkdir(exist_ok=True)
    (out / "pattern-ops-latest.json").write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
