"""One user's flood does not slow everyone (issue 20, finding 4).

A flooding connection sends events far over its rate, pipelined (thousands in one TCP write):
each is refused ``rate_limited``. The node must keep serving the others meanwhile (each
connection's messages are handled a few per loop turn, so one burst cannot hold the loop), and a
connection that keeps flooding is cut with the documented reason while one that keeps to its
rate never is.

Bounds are ratios to a quiet baseline measured in the same test (plus a small floor), so they
hold on a busy machine: on the code before the fix one connection's 5,000 refusals held the loop
for hundreds of milliseconds in one go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from server.app import SIO_KEY
from tests.conftest import start_server
from tests.helpers import Client, fast_lane_only
from tests.raw_wire import RawWebSocket, port_of
from tests.test_metrics import scrape, until, value

# A cheap registered event (refused invalid_session_id while the connection has tokens left,
# rate_limited after): what a flood of refusals is made of.
_REFUSED = '42{n}["unsubscribe_from_session",{{"session_id":"nope","seq":{n}}}]'


def _frame(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload  # masked with a zero key


def _burst(first: int, count: int) -> bytes:
    """``count`` events with ack ids ``first``.. as masked frames, for one write."""
    return b"".join(_frame(_REFUSED.format(n=n)) for n in range(first, first + count))


# The server's settings in these tests: the default event rate, and a flood limit the bursts of
# the fairness tests do not reach (they measure interleaving, not the cut).
_RATE = {"event_rate_per_s": 20.0, "event_burst": 40}
_NO_CUT = {**_RATE, "flood_refusals": 1_000_000}


async def _healthz_s(http: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with http.get(url + "/healthz") as response:
        await response.read()
        assert response.status == 200
    return time.perf_counter() - started


async def _quiet_healthz_s(http: aiohttp.ClientSession, url: str, count: int = 200) -> float:
    """The slowest of ``count`` sequential ``/healthz`` answers with nothing else going on (as
    many as a flood's probes, roughly: the worst of many samples on a busy machine is higher)."""
    return max([await _healthz_s(http, url) for _ in range(count)])


async def _drain_acks(ws: RawWebSocket, last_ack: int, timeout: float) -> dict[str, int]:
    """Read until the ack numbered ``last_ack`` (or the connection closes); acks by error code.

    Reads bytes, not frame by frame: the server runs in this test's loop, and a reader that
    takes a loop turn per frame would measure itself."""
    data = bytearray()
    marker = f"43{last_ack}[".encode()
    async with asyncio.timeout(timeout):
        while marker not in data[-4096:]:
            chunk = await ws.reader.read(1 << 16)
            if not chunk:
                break
            data += chunk
    errors: dict[str, int] = {}
    for code in re.findall(rb'"error":"([a-z_]+)"', bytes(data)):
        errors[code.decode()] = errors.get(code.decode(), 0) + 1
    return errors


async def _healthz_during_a_burst(http: aiohttp.ClientSession, srv: Any, count: int) -> tuple[float, float]:
    """(the slowest quiet /healthz, the slowest while one connection's ``count`` pipelined
    refusals are answered)."""
    quiet_s = await _quiet_healthz_s(http, srv.url)
    flooder, _ = await RawWebSocket.socketio(port_of(srv.url), srv.token("mallory"))
    flooder.writer.write(_burst(1, count))
    answers = asyncio.create_task(_drain_acks(flooder, count, timeout=120))
    try:
        # As many probes as the quiet baseline took, while the burst is being answered
        # (refused events are paced: the whole burst takes far longer than the probes).
        worst_s = 0.0
        for _ in range(200):
            worst_s = max(worst_s, await _healthz_s(http, srv.url))
    finally:
        flooder.close()
        answers.cancel()
    return quiet_s, worst_s


@fast_lane_only
async def test_a_burst_of_refusals_does_not_hold_the_node(redis_process: Any, redis: Any, tmp_path: Path) -> None:
    """5,000 pipelined refusals of one connection: /healthz keeps answering meanwhile.

    A node held by the burst is held each time; one slow probe on a machine busy with other
    tests is not, so a probe over the bound is measured once more before the test fails."""
    srv = await start_server(redis_process.url, tmp_path, **_NO_CUT)
    try:
        async with aiohttp.ClientSession() as http:
            seen: list[str] = []
            for _ in range(2):
                quiet_s, worst_s = await _healthz_during_a_burst(http, srv, 5000)
                bound_s = 4 * quiet_s + 0.050
                if worst_s <= bound_s:
                    break
                seen.append(f"{worst_s * 1000:.0f} ms (bound {bound_s * 1000:.0f} ms, quiet {quiet_s * 1000:.1f} ms)")
            else:
                raise AssertionError("/healthz during the flood took " + ", then ".join(seen))
    finally:
        await srv.stop()


async def test_refusals_over_the_rate_are_answered_with_their_seq(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """The cheap refusal answers every event over the rate, in order, naming its seq."""
    srv = await start_server(redis_process.url, tmp_path, **_NO_CUT)
    stack = contextlib.ExitStack()
    try:
        ws, _ = await RawWebSocket.socketio(port_of(srv.url), srv.token("mallory"))
        stack.callback(ws.close)  # closed whatever the outcome: a socket left open fails a later test's GC
        began = time.monotonic()
        ws.writer.write(_burst(1, 100))
        refused = 0
        for n in range(1, 101):
            body = await ws.ack(n)
            assert body["seq"] == n, body
            # The burst of 40 first, then refusals (and one handled as a token refills)
            assert body["error"] in (("invalid_session_id",) if n <= 40 else ("rate_limited", "invalid_session_id"))
            refused += body["error"] == "rate_limited"
        # Handled beyond the burst: only what the rate refilled while the answers came (20/s;
        # a slow machine takes longer, so refills more -- hence a bound from the time taken).
        refilled = int((time.monotonic() - began) * _RATE["event_rate_per_s"]) + 1
        assert refused >= 60 - refilled and refused > 0, (refused, refilled)
    finally:
        stack.close()
        await srv.stop()


class _Flooder:
    """A raw connection that sends bursts of refused events, reading its answers as bytes only
    (the test's own loop is the server's: a flooder must cost it little besides the server's work)."""

    def __init__(self, ws: RawWebSocket) -> None:
        self.ws = ws
        self.sent = 0
        self.answered = False  # some of its refusals have come back
        self.closed = False

    async def flood(self, stop: asyncio.Event, burst: int) -> None:
        ws = self.ws
        while not stop.is_set():
            last = self.sent + burst
            ws.writer.write(_burst(self.sent + 1, burst))
            self.sent = last
            marker = f"43{last}[".encode()
            tail = b""
            while marker not in tail:  # the burst's last ack: the next burst follows it
                try:
                    chunk = await ws.reader.read(65536)
                except ConnectionError:
                    chunk = b""
                if not chunk:
                    self.closed = True
                    return
                self.answered = True
                tail = tail[-len(marker) :] + chunk


async def _ack_latencies_s(client: Client, count: int) -> list[float]:
    """``count`` sequential acked events (within the rate: under the burst)."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        ack = await client.call("unsubscribe_from_session", {"session_id": _SESSION}, timeout=30)
        latencies.append(time.perf_counter() - started)
        assert ack["ok"] is True, ack
    return latencies


_SESSION = "1b4e28ba-2d11-4b3a-8c6d-6b7e3f1a2c3d"


def _p99(samples: list[float]) -> float:
    return sorted(samples)[min(len(samples) - 1, int(len(samples) * 0.99))]


@fast_lane_only
async def test_another_users_acks_keep_flowing_while_20_connections_flood(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    srv = await start_server(redis_process.url, tmp_path, **_NO_CUT)
    port = port_of(srv.url)
    flooders: list[_Flooder] = []
    tasks: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    try:
        quiet_user = await Client(srv.url, srv.token("alice")).connect()
        quiet = await _ack_latencies_s(quiet_user, 30)
        await quiet_user.close()
        for n in range(20):
            ws, _ = await RawWebSocket.socketio(port, srv.token(f"mallory{n}"))
            flooders.append(_Flooder(ws))
        tasks = [asyncio.create_task(f.flood(stop, 500)) for f in flooders]
        # Under way: every flooder is being answered, its burst of 500 pipelined refusals in the
        # server's hands. (Waiting for whole bursts to be answered, before and after, took ~16 s
        # of this test: 20,000 refusals, each flooder's paced at ~40 a second by the server's
        # REFUSAL_PAUSE_S, and nothing measured meanwhile.)
        deadline = asyncio.get_running_loop().time() + 30
        while not all(f.answered for f in flooders):
            assert asyncio.get_running_loop().time() < deadline, "the flooders did not get going"
            await asyncio.sleep(0.01)
        user = await Client(srv.url, srv.token("alice")).connect()
        flooded = await _ack_latencies_s(user, 30)
        bound_s = 10 * _p99(quiet) + 0.100
        if _p99(flooded) > bound_s:
            # Measured once more before failing: this test process (server, flooders and client
            # on one loop) may have been held by its own work once, as a fresh-clone CI run saw
            # (one ack of 30 at 386 ms, the rest under 1 ms); a server that holds its loop for
            # whole bursts is over the bound each time.
            flooded = await _ack_latencies_s(user, 30)
        # The flood lasted the whole measurement: every flooder still at it (nor cut: this test
        # is about interleaving), none through with what it sent.
        assert not any(f.closed or task.done() for f, task in zip(flooders, tasks, strict=True))
        refused_meanwhile = sum(f.sent for f in flooders)
        await user.close()
        quiet_p50, flood_p50 = statistics.median(quiet), statistics.median(flooded)
        # The server, the flooders' reading and this user's client share one loop on a machine
        # that may be busy: the bound is generous, and still far below what a loop held for
        # whole bursts gave (p99 over a second).
        summary = (
            f"ack p50 {quiet_p50 * 1000:.1f} -> {flood_p50 * 1000:.1f} ms, p99 {_p99(quiet) * 1000:.1f} -> "
            f"{_p99(flooded) * 1000:.1f} ms (bound {bound_s * 1000:.0f} ms); {refused_meanwhile} events flooded"
        )
        assert _p99(flooded) <= bound_s, summary
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for f in flooders:
            f.ws.close()
        await srv.stop()


async def test_sustained_abuse_is_cut_and_a_client_at_its_rate_never_is(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """Over the rate for long enough: refused, told why (protocol_error, reason "flood"), then
    disconnected and counted; a client that keeps to its rate meanwhile stays connected."""
    limits = {"event_rate_per_s": 50.0, "event_burst": 10, "flood_refusals": 100, "flood_window_s": 10.0}
    srv = await start_server(redis_process.url, tmp_path, **limits)
    stack = contextlib.ExitStack()
    try:
        polite = await Client(srv.url, srv.token("alice")).connect()
        flooder, _ = await RawWebSocket.socketio(port_of(srv.url), srv.token("mallory"))
        stack.callback(flooder.close)  # closed whatever the outcome (see above)

        async def polite_at_its_rate() -> list[dict[str, Any]]:
            # At most 25 events a second (the rate is 50): each sent at least 40 ms after the
            # last, however late the loop runs, so its bucket never runs dry.
            acks = []
            for _ in range(60):
                acks.append(await polite.call("unsubscribe_from_session", {"session_id": _SESSION}))
                await asyncio.sleep(1 / 25)
            return acks

        polite_acks = asyncio.create_task(polite_at_its_rate())
        told: list[Any] = []
        codes: dict[str, int] = {}
        sent = 0
        disconnected = False
        try:
            # Bursts of 50 pipelined events, each read to its end before the next (a client
            # that also leaves unread events in flight is closed with a reset instead: its
            # unread answers are lost with the connection), until told.
            while sent < 2000 and not told:
                flooder.writer.write(_burst(sent + 1, 50))
                sent += 50
                while not told:
                    message = await flooder.receive(timeout=10)
                    if isinstance(message, str) and message.startswith("43"):
                        ack_id, _, body = message[2:].partition("[")
                        code = json.loads("[" + body)[0].get("error", "ok")
                        codes[code] = codes.get(code, 0) + 1
                        if int(ack_id) == sent:
                            break
                    elif isinstance(message, str) and message.startswith('42["protocol_error"'):
                        told.append(json.loads(message[2:])[1])
            while not disconnected:  # then Socket.IO's DISCONNECT
                message = await flooder.receive(timeout=10)
                disconnected = message == "41"
        except (ConnectionError, asyncio.IncompleteReadError):
            disconnected = True  # the server closed the connection
        assert told and told[-1]["reason"] == "flood" and told[-1]["error"] == "rate_limited", (told, codes)
        assert 100 <= codes.get("rate_limited", 0) < 200, codes  # cut at the 100th refusal
        assert disconnected
        if srv.app[SIO_KEY].lane == "fast":  # the fast lane closes the connection itself
            assert await flooder.closed(timeout=5)
        flooder.close()

        acks = await polite_acks
        assert all(ack["ok"] is True for ack in acks), [a for a in acks if not a["ok"]]
        assert polite.sio.connected

        async def counted() -> bool:
            return value(await scrape(srv), "sessionhub_connections_closed_total", reason="flood") == 1

        await until(counted)
        await polite.close()
    finally:
        stack.close()
        await srv.stop()
