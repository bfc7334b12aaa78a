"""Pattern co-editing load: players sending operations on one session, watchers following it.

Self-contained: starts a private redis-server on a free loopback port and one or two
``python -m server serve`` processes on it, drives them with real python-socketio clients,
checks that every client and Redis end with the same state and that no acknowledged operation
is missing anywhere, and prints the figures.

    .venv/bin/python bench/patterns.py                  # 10 players x 20 ops/s, 100 watchers, 10 s
    .venv/bin/python bench/patterns.py --seconds 3      # quicker

Phase 1 runs everything on one node; phase 2 splits players and watchers over two nodes on
the same Redis. Every wait is bounded; every process started here is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.figures import percentile  # noqa: E402
from common.servers import Child, Server, mint_token, start_redis, start_server  # noqa: E402
from common.wire_client import WireClient  # noqa: E402

TRACKS = 8
HARD_DEADLINE_S = 240


@dataclass
class Follower:
    """A client that keeps its own copy of the pattern from the snapshot and the log."""

    name: str
    sio: socketio.AsyncClient = field(default_factory=lambda: socketio.AsyncClient(reconnection=False))
    state: dict[str, Any] | None = None
    offsets: list[int] = field(default_factory=list)
    first_offset: int = 0
    own_seen: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sio.on("session_snapshot", self._snapshot)
        self.sio.on("pattern_op", self._op)

    async def _snapshot(self, data: dict[str, Any]) -> None:
        self.state = data["session"]["state"]
        self.first_offset = int(data["offset"])

    async def _op(self, event: dict[str, Any]) -> None:
        assert self.state is not None
        self.offsets.append(int(event["offset"]))
        data = event["data"]
        op = data["op"]
        track = next(t for t in self.state["tracks"] if t["id"] == op["trackId"])
        if op["type"] == "set_step":
            track["steps"][op["step"]] = op["on"]
        else:
            track["volume"] = op["volume"]
        if data["client"] == self.sio.get_sid():
            self.own_seen[int(data["seq"])] = time.perf_counter()

    async def join(self, url: str, token: str, session_id: str) -> None:
        await self.sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
        ack = await self.sio.call("subscribe_on_session", {"session_id": session_id}, timeout=10)
        assert ack["ok"], ack


class LeanWatcher:
    """A watcher on the raw wire client (common.wire_client): one json.loads per event, so that a
    hundred of them cost the load generator little next to the server."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state: dict[str, Any] | None = None
        self.offsets: list[int] = []
        self.first_offset = 0
        self._http: aiohttp.ClientSession | None = None
        self._client: WireClient | None = None

    async def join(self, url: str, token: str, session_id: str) -> None:
        self._http = aiohttp.ClientSession()
        self._client = WireClient(self._http, url, token)
        self._client.on_event = self._on_event
        await self._client.connect()
        await self._client.call("subscribe_on_session", {"session_id": session_id})

    def _on_event(self, name: str, data: Any, _read_at: float) -> None:
        if name == "session_snapshot":
            self.state = data["session"]["state"]
            self.first_offset = int(data["offset"])
        elif name == "pattern_op":
            self._apply(data)

    def _apply(self, event: dict[str, Any]) -> None:
        assert self.state is not None
        self.offsets.append(int(event["offset"]))
        op = event["data"]["op"]
        track = next(t for t in self.state["tracks"] if t["id"] == op["trackId"])
        if op["type"] == "set_step":
            track["steps"][op["step"]] = op["on"]
        else:
            track["volume"] = op["volume"]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._http is not None:
            await self._http.close()


@dataclass
class Figures:
    acked: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    ack_ms: list[float] = field(default_factory=list)
    echo_ms: list[float] = field(default_factory=list)


async def play(player: Follower, session_id: str, *, rate: float, seconds: float, figures: Figures) -> None:
    """Send ``rate`` operations a second for ``seconds``, one after another as a page would."""
    rng = random.Random(player.name)
    sent_at: dict[int, float] = {}
    start = time.perf_counter()
    for seq in range(int(rate * seconds)):
        due = start + seq / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        track_id = f"t{rng.randrange(TRACKS)}"
        if rng.random() < 0.9:
            op = {"type": "set_step", "trackId": track_id, "step": rng.randrange(16), "on": rng.random() < 0.5}
        else:
            op = {"type": "set_track_volume", "trackId": track_id, "volume": round(rng.random(), 2)}
        sent_at[seq] = time.perf_counter()
        ack = await player.sio.call("pattern_op", {"session_id": session_id, "seq": seq, "op": op}, timeout=10)
        if ack.get("ok"):
            figures.acked += 1
            figures.ack_ms.append((time.perf_counter() - sent_at[seq]) * 1000)
        else:
            figures.refused[ack["error"]] = figures.refused.get(ack["error"], 0) + 1
    deadline = time.perf_counter() + 10
    while len(player.own_seen) < len(sent_at) - sum(figures.refused.values()) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    figures.echo_ms.extend((player.own_seen[s] - sent_at[s]) * 1000 for s in player.own_seen)


class Stack:
    """redis-server and N sessionhub processes on it (common.servers), stopped by pid."""

    def __init__(self, nodes: int) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-patterns-"))
        self.nodes = nodes
        self.redis: Child | None = None
        self.servers: list[Server] = []

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def start(self) -> None:
        self.redis, redis_url = start_redis(self.tmp, core=None)
        for index in range(self.nodes):
            self.servers.append(start_server(self.tmp, redis_url, data_dir=self.tmp / f"node{index}"))

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.child.stop(10)
        if self.redis is not None:
            self.redis.stop(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def initial_state() -> dict[str, Any]:
    tracks = [
        {"id": f"t{i}", "name": f"Track {i}", "sampleId": "kick", "steps": [False] * 16, "volume": 0.5, "muted": False}
        for i in range(TRACKS)
    ]
    return {"tracks": tracks, "tempo": 120, "swing": 0, "version": 1}


async def run(nodes: int, args: argparse.Namespace) -> bool:
    stack = Stack(nodes)
    followers: list[Follower | LeanWatcher] = []
    try:
        stack.start()
        urls = stack.urls
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{urls[0]}/api/sessions", json={"state": initial_state()}) as response:
                session_id = (await response.json())["id"]
            players = [Follower(f"player{i}") for i in range(args.players)]
            watchers = [LeanWatcher(f"watcher{i}") for i in range(args.watchers)]
            followers = [*players, *watchers]
            for index, follower in enumerate(followers):
                await follower.join(urls[index % nodes], mint_token(follower.name), session_id)
            figures = Figures()
            started = time.perf_counter()
            await asyncio.gather(
                *(play(p, session_id, rate=args.rate, seconds=args.seconds, figures=figures) for p in players)
            )
            elapsed = time.perf_counter() - started
            last = max((f.offsets[-1] for f in followers if f.offsets), default=0)
            deadline = time.perf_counter() + 15
            while any(not f.offsets or f.offsets[-1] < last for f in followers) and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            async with http.get(f"{urls[-1]}/api/sessions/{session_id}") as response:
                stored = (await response.json())["state"]
        return report(nodes, args, figures, elapsed, followers, stored)
    finally:
        for follower in followers:
            if isinstance(follower, LeanWatcher):
                await follower.close()
            else:
                await follower.sio.disconnect()
        stack.stop()


def report(
    nodes: int,
    args: argparse.Namespace,
    figures: Figures,
    elapsed: float,
    followers: list[Follower | LeanWatcher],
    stored: dict[str, Any],
) -> bool:
    wanted = args.players * int(args.rate * args.seconds)
    same = sum(1 for f in followers if f.state is not None and f.state["tracks"] == stored["tracks"])
    complete = sum(
        1
        for f in followers
        if f.offsets == list(range(f.first_offset + 1, f.first_offset + 1 + len(f.offsets)))
        and len(f.offsets) == figures.acked
    )
    print(
        f"\n== {nodes} node(s): {args.players} players x {args.rate:g} ops/s for {args.seconds:g} s, "
        f"{args.watchers} watchers, one session =="
    )
    print(
        f"operations sent {wanted}, acknowledged {figures.acked}, refused {figures.refused or 0}, "
        f"throughput {figures.acked / elapsed:.0f} ops/s"
    )
    for label, values in (("ack round trip", figures.ack_ms), ("own event echoed", figures.echo_ms)):
        print(
            f"{label:<18}  p50 {percentile(values, 0.5):6.1f} ms   p99 {percentile(values, 0.99):6.1f} ms"
            f"   max {max(values, default=float('nan')):6.1f} ms"
        )
    print(
        f"clients whose state equals Redis: {same}/{len(followers)}; "
        f"clients with every acknowledged op, in order, no gap: {complete}/{len(followers)}"
    )
    if figures.ack_ms:
        print(f"(mean ack {statistics.fmean(figures.ack_ms):.1f} ms)")
    return same == len(followers) and complete == len(followers) and figures.acked == wanted


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20.0, help="operations per second per player")
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    ok = True
    for nodes in (1, 2):
        ok = await asyncio.wait_for(run(nodes, args), HARD_DEADLINE_S) and ok
    print("\nverdict:", "all clients converged, no operation lost" if ok else "MISMATCH (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
