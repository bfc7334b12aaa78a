"""Clip raid benchmark: N viewers connected, each clicks "Clip Moment" once within one second.

Self-contained: starts a private redis-server on a free loopback port and ``python -m server
serve`` against it, then drives the real event path with a lean Engine.IO/Socket.IO client over
aiohttp WebSockets (one asyncio process for all viewers and the dashboard). Prints:

- every acknowledged clip stored exactly once (counted in Redis, ids compared);
- ack latency (click sent -> ack read) p50/p95/p99/max;
- the dashboard's delivery latency (click sent -> its ``clip_added`` read by the owner's
  subscribed connection) p50/p99/max, and how many events it got;
- what the viewers received: by default each viewer follows the stream's audience session, as
  the ``/watch`` page does (state changes only); ``--follow stream`` subscribes them to the
  stream's own log instead, where every clip reaches every viewer;
- CPU seconds of the server, of Redis and of this generator during the click window, so a
  saturated generator is visible rather than silently blamed on the server.

Run: ``.venv/bin/python bench/clips.py`` (``--viewers 1000 --window-s 1 --follow audience``). Everything is
bounded: connection phase, click phase and drain each have a deadline; every process this
starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis import Redis as SyncRedis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.figures import percentile, print_json  # noqa: E402
from common.servers import (  # noqa: E402
    LOAD_CORE,
    Child,
    Server,
    cores_if_two,
    mint_token,
    pin_this_process,
    start_redis,
    start_server,
)
from common.wire_client import WireClient  # noqa: E402
from procstat import cpu_seconds as cpu_s  # noqa: E402
from procstat import own_cpu_sample  # noqa: E402
from storage.keys import Keys  # noqa: E402


def own_cpu_s() -> float:
    """User + system CPU seconds of this process (the generator)."""
    return own_cpu_sample(0.0).cpu_s


CONNECT_CONCURRENCY = 50
CONNECT_DEADLINE_S = 60.0
DRAIN_DEADLINE_S = 15.0


@dataclass
class Stack:
    """redis-server and the sessionhub server under test (common.servers starts and stops them)."""

    workdir: Path
    redis: Child | None = None
    server: Server | None = None
    redis_url: str = ""

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def start(self, env_extra: dict[str, str]) -> None:
        server_core, load_core = cores_if_two()
        self.redis, self.redis_url = start_redis(self.workdir, core=load_core)
        settings = {
            # Every bench viewer is a guest on loopback: one address, far over the guests' cap.
            "SESSIONHUB_CLIPS_MAX_PER_ADDRESS": "1000000",
            "SESSIONHUB_CLIPS_MAX_PER_ADDRESS_PER_DAY": "1000000",
            **env_extra,
        }
        self.server = start_server(self.workdir, self.redis_url, settings=settings, core=server_core)

    def stop(self) -> None:
        for child in (self.server.child if self.server else None, self.redis):
            if child is not None:
                child.stop(10)


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Click:
    sent: float = 0.0
    acked: float = 0.0
    ack: dict[str, Any] = field(default_factory=dict)
    error: str = ""


async def connect_all(
    http: aiohttp.ClientSession, url: str, tokens: list[str], subscribe_to: str | None
) -> list[WireClient]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(token: str) -> WireClient:
        async with gate:
            client = WireClient(http, url, token)
            await client.connect()
            if subscribe_to is not None:
                ack = await client.call("subscribe_on_session", {"session_id": subscribe_to})
                if not ack.get("ok"):
                    raise RuntimeError(f"subscribe refused: {ack}")
            return client

    return list(await asyncio.wait_for(asyncio.gather(*(one(t) for t in tokens)), CONNECT_DEADLINE_S))


async def click(client: WireClient, session_id: str, at: float, n: int) -> Click:
    await asyncio.sleep(max(0.0, at - time.perf_counter()))
    result = Click()
    try:
        payload = {"session_id": session_id, "submission_id": f"bench-click-{n:06d}", "note": f"raid {n}"}
        result.sent, result.acked, result.ack = await client.timed_call("clip_submit", payload)
    except Exception as exc:  # a lost ack is a figure, not a crash
        result.error = type(exc).__name__
    return result


async def run(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    owner_token = mint_token("bench-streamer")
    viewer_tokens = [mint_token(f"bench-viewer-{n}", guest=True) for n in range(args.viewers)]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        headers = {"Authorization": f"Bearer {owner_token}"}
        async with http.post(f"{stack.url}/api/streams", json={"title": "Bench raid"}, headers=headers) as r:
            created = (await r.json())["session"]
            session_id, audience_id = created["session_id"], created["audience_id"]

        dashboard = WireClient(http, stack.url, owner_token)
        await dashboard.connect()
        delivered: dict[str, float] = {}

        def on_event(name: str, data: Any, read_at: float) -> None:
            if name == "clip_added":
                delivered[data["data"]["clip_id"]] = read_at

        dashboard.on_event = on_event
        await dashboard.call("subscribe_on_session", {"session_id": session_id})
        await dashboard.call("stream_set_state", {"session_id": session_id, "action": "start"})

        t0 = time.perf_counter()
        follow = {"audience": audience_id, "stream": session_id, "none": None}[args.follow]
        viewers = await connect_all(http, stack.url, viewer_tokens, follow)
        connect_s = time.perf_counter() - t0

        assert stack.server is not None and stack.redis is not None
        server_pid, redis_pid = stack.server.child.pid, stack.redis.pid

        cpu_before = (cpu_s(server_pid), cpu_s(redis_pid), own_cpu_s())
        start = time.perf_counter() + 0.2
        step = args.window_s / max(1, len(viewers))
        clicks = await asyncio.wait_for(
            asyncio.gather(*(click(v, session_id, start + n * step, n) for n, v in enumerate(viewers))),
            args.window_s + 30,
        )
        window_end = time.perf_counter()
        acked_ids = {c.ack["clip"]["clip_id"] for c in clicks if c.ack.get("ok")}
        deadline = time.monotonic() + DRAIN_DEADLINE_S
        # Viewers following the stream itself get every clip; the audience log gets none.
        expected_views = len(acked_ids) * len(viewers) if args.follow == "stream" else 0
        while time.monotonic() < deadline and not (
            acked_ids <= delivered.keys() and sum(v.events_seen for v in viewers) >= expected_views
        ):
            await asyncio.sleep(0.05)
        drained_s = time.perf_counter() - start
        cpu_after = (cpu_s(server_pid), cpu_s(redis_pid), own_cpu_s())

        for client in [*viewers, dashboard]:
            await client.close()

    redis = SyncRedis.from_url(stack.redis_url, decode_responses=True)
    try:
        stored = redis.hkeys(Keys().stream_clips(session_id))
        stored_count = int(redis.hget(Keys().session(session_id), "clip_count") or 0)
    finally:
        redis.close()
    stored_counter = Counter(stored)
    sent_at = {c.ack["clip"]["clip_id"]: c.sent for c in clicks if c.ack.get("ok")}
    ack_ms = [(c.acked - c.sent) * 1000 for c in clicks if c.ack]
    delivery_ms = [(delivered[i] - sent_at[i]) * 1000 for i in sent_at if i in delivered]
    outcomes = Counter("ok" if c.ack.get("ok") else (c.ack.get("error") or c.error) for c in clicks)
    click_span_s = max(c.sent for c in clicks if c.sent) - min(c.sent for c in clicks if c.sent)
    return {
        "viewers": len(viewers),
        "connect_s": round(connect_s, 2),
        "click_span_s": round(click_span_s, 3),
        "outcomes": dict(outcomes),
        "acked": len(acked_ids),
        "stored": len(stored),
        "clip_count_field": stored_count,
        "acked_not_stored": len(acked_ids - set(stored)),
        "stored_not_acked": len(set(stored) - acked_ids),
        "duplicates": sum(1 for n in stored_counter.values() if n > 1),
        "ack_ms": {q: round(percentile(ack_ms, p), 1) for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
        | {"max": round(max(ack_ms, default=float("nan")), 1)},
        "viewers_follow": args.follow,
        "viewer_deliveries": sum(v.events_seen for v in viewers),
        "all_delivered_after_s": round(drained_s, 2),
        "dashboard_events": len(delivered),
        "dashboard_missing": len(acked_ids - delivered.keys()),
        "delivery_ms": {q: round(percentile(delivery_ms, p), 1) for q, p in (("p50", 0.5), ("p99", 0.99))}
        | {"max": round(max(delivery_ms, default=float("nan")), 1)},
        "cpu_s": {
            "server": round(cpu_after[0] - cpu_before[0], 2),
            "redis": round(cpu_after[1] - cpu_before[1], 2),
            "generator": round(cpu_after[2] - cpu_before[2], 2),
            "wall": round(window_end - start, 2),
        },
        "mean_ack_ms": round(statistics.fmean(ack_ms), 1) if ack_ms else None,
        # What one click costs the server (its ack, the Lua step, the dashboard's delivery):
        # the figure that does not depend on what else the machine is running.
        "server_cpu_ms_per_click": round((cpu_after[0] - cpu_before[0]) * 1000 / max(1, len(clicks)), 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--window-s", type=float, default=1.0, help="the clicks are spread over this many seconds")
    parser.add_argument(
        "--follow",
        choices=("audience", "stream", "none"),
        default="audience",
        help="what each viewer subscribes to: the audience session (as /watch does), the stream's own log "
        "(every clip reaches every viewer: N x N deliveries), or nothing",
    )
    args = parser.parse_args()
    if not 1 <= args.viewers <= 5000 or not 0 < args.window_s <= 60:
        raise SystemExit("--viewers 1..5000, --window-s up to 60")
    pin_this_process(LOAD_CORE)
    with tempfile.TemporaryDirectory(prefix="clips-bench-") as workdir:
        stack = Stack(Path(workdir))
        try:
            # The per-connection event rate is not what this measures; the clip cooldown stays on.
            stack.start({"SESSIONHUB_EVENT_RATE_PER_S": "1000", "SESSIONHUB_EVENT_BURST": "1000"})
            result = asyncio.run(run(args, stack))
        finally:
            stack.stop()
    print_json(result)
    lost = result["acked_not_stored"] + result["duplicates"] + result["dashboard_missing"]
    verdict = "PASS" if lost == 0 and result["acked"] == args.viewers and result["ack_ms"]["p99"] <= 100 else "MISS"
    print(
        f"{verdict}: {result['acked']}/{args.viewers} clicks acknowledged, {result['stored']} stored "
        f"(lost {result['acked_not_stored']}, duplicated {result['duplicates']}), "
        f"ack p50 {result['ack_ms']['p50']} ms / p99 {result['ack_ms']['p99']} ms, "
        f"dashboard p50 {result['delivery_ms']['p50']} ms / p99 {result['delivery_ms']['p99']} ms "
        f"({result['dashboard_events']} events); CPU s during the clicks: server {result['cpu_s']['server']}, "
        f"redis {result['cpu_s']['redis']}, generator {result['cpu_s']['generator']} over {result['cpu_s']['wall']} s "
        f"({result['server_cpu_ms_per_click']} ms of server CPU per click; load average {result['load_average_1m']})"
    )


if __name__ == "__main__":
    main()
