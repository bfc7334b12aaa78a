"""Soak for the wire items of issue 6, against a real `sessionhub serve`: prints one figure each.

    .venv/bin/python bench/soak_faults_wire.py [--attachment-mib 512] [--sessions 1000]

- attachments: server peak RSS growth while a client sends N MiB of binary attachments in one
               message (issue: +515 MiB)
- poller:      a long-poller that stops polling but keeps ponging while events pile up: cut or not,
               server RSS growth (issue: +36 MiB in 90 s, no cut)
- pre-auth:    Engine.IO sessions that never CONNECT, and TCP connections that send nothing,
               still open after the timeouts (issue: 3,000 of 3,000 and 600 of 600)
- malformed:   log bytes written for 5,000 malformed frames (issue: 10 MB)
- sigterm:     seconds from SIGTERM to exit after an oversized long-polling POST (issue: ~120 s)

Everything is bounded in count and time, on loopback, with a private redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import procstat

from common import servers

sys.path.insert(0, str(servers.ROOT))
from tests.raw_wire import RawPoller, RawWebSocket  # the hostile-client helpers of the tests

CONNECT_TIMEOUT_S = 2.0
IDLE_TIMEOUT_S = 2.0


def start_server(workdir: Path, redis_url: str) -> tuple[servers.Child, int]:
    settings = {
        **servers.FANOUT_SETTINGS,
        "SESSIONHUB_MAX_CONNECTIONS_PER_ADDRESS": "100000",
        "SESSIONHUB_CREATES_PER_MIN": "100000",
        "SESSIONHUB_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S),
        "SESSIONHUB_HTTP_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
    }
    server = servers.start_server(workdir, redis_url, settings=settings)
    return server.child, server.port


def peak_rss_kib(pid: int) -> int:
    """The process's resident-memory high-water mark (VmHWM), in KiB."""
    return procstat.rss_kib(pid, "VmHWM")


def mib(kib: int) -> str:
    return f"{kib / 1024:+.1f} MiB"


async def attachments(child: servers.Child, port: int, token: str, total_mib: int) -> str:
    """One message declaring ``total_mib`` attachments of (almost) 1 MiB each, all sent."""
    ws, _ = await RawWebSocket.socketio(port, token)
    before = peak_rss_kib(child.pid)
    chunk = b"\0" * ((1 << 20) - 1024)  # just under Engine.IO's 1 MiB hard limit
    ws.send(f'45{total_mib}-1["session_done",{{"_placeholder":true,"num":0}}]')
    for number in range(total_mib):
        ws.send_binary(chunk)
        if number % 16 == 0:
            ws.send("3")  # a pong now and then: too busy sending to read the pings
        await ws.writer.drain()
    ws.send('422["no_such_event",{}]')  # answered once everything before it was read
    await ws.ack(2, timeout=60)
    after = peak_rss_kib(child.pid)
    ws.close()
    return f"attachments: {total_mib} MiB in one message, server peak RSS {mib(after - before)}"


async def poller(child: servers.Child, port: int, token: str, session_id: str, seconds: float) -> str:
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        raw = await RawPoller.open(http, url)
        await raw.socketio(token)
        await raw.post('421["subscribe_on_session",{"session_id":"' + session_id + '"}]')
        await raw.get()
        before = procstat.rss_kib(child.pid)
        text = "x" * 4000
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + seconds
        posted = 0
        while time.monotonic() < deadline:
            material = {"kind": "text", "text": text}
            async with http.post(f"{url}/voicebot/materials", json=material, headers=headers) as response:
                await response.read()
            posted += 1
            if posted % 20 == 0:
                await raw.post("3")  # a pong; never a GET
        after = procstat.rss_kib(child.pid)
        answer = await raw.get(timeout=5)
    cut = answer and answer[0] in ("HTTP 400", "")
    return (
        f"poller: {posted} events of 4 KB in {seconds:.0f} s, poller cut: {'yes' if cut else 'no'}, "
        f"server RSS {mib(after - before)}"
    )


async def pre_auth(port: int, sessions: int) -> str:
    silent_ws = [await RawWebSocket.open(port) for _ in range(sessions)]
    silent_tcp = [await asyncio.open_connection("127.0.0.1", port) for _ in range(sessions // 2)]
    await asyncio.sleep(max(CONNECT_TIMEOUT_S, IDLE_TIMEOUT_S) + 3)
    ws_open = sum([not await ws.closed(0.01) for ws in silent_ws])
    tcp_open = 0
    for reader, _ in silent_tcp:
        try:
            tcp_open += 0 if await asyncio.wait_for(reader.read(1), 0.01) == b"" else 1
        except TimeoutError:
            tcp_open += 1
        except ConnectionError:
            pass
    for ws in silent_ws:
        ws.close()
    for _, writer in silent_tcp:
        writer.close()
    return (
        f"pre-auth: sessions without CONNECT still open after {CONNECT_TIMEOUT_S + 3:.0f} s: {ws_open} of {sessions}; "
        f"silent TCP connections still open: {tcp_open} of {len(silent_tcp)}"
    )


async def malformed(child: servers.Child, port: int, token: str) -> str:
    ws, _ = await RawWebSocket.socketio(port, token)
    size = child.log_path.stat().st_size
    for number in range(1, 5001):
        ws.send(f'42{number}["session_done"')
    ws.send('425001["no_such_event",{}]')  # answered once every frame before it was handled
    answered = 0
    while not isinstance(message := await ws.receive(30), str) or not message.startswith("435001"):
        if message == "2":
            ws.send("3")
        elif isinstance(message, str) and message.startswith("43"):
            answered += 1
    await asyncio.sleep(0.5)
    ws.close()
    return f"malformed: 5000 frames, {answered} answered; {child.log_path.stat().st_size - size} bytes of log"


async def sigterm(child: servers.Child, port: int, token: str) -> str:
    async with aiohttp.ClientSession() as http:
        raw = await RawPoller.open(http, f"http://127.0.0.1:{port}")
        await raw.socketio(token)
        pending = asyncio.create_task(raw.get(timeout=60))
        try:
            status = await raw.post("4" + "x" * ((1 << 20) + 100), timeout=30)
        except TimeoutError:
            status = 0
        started = time.monotonic()
        child.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(child.process.wait, 150)
        took = time.monotonic() - started
        await asyncio.gather(pending, return_exceptions=True)
    answered = f"answered {status}" if status else "not answered in 30 s"
    return f"sigterm: oversized long-polling POST {answered}; exit {took:.1f} s after SIGTERM"


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="soak-faults-wire-") as tmp:
        workdir = Path(tmp)
        redis, redis_url = servers.start_redis(workdir)
        child, port = start_server(workdir, redis_url)
        try:
            token = servers.mint_token()
            session_id = servers.create_session(port, token)
            print(await attachments(child, port, token, args.attachment_mib), flush=True)
            print(await poller(child, port, token, session_id, args.poll_s), flush=True)
            print(await pre_auth(port, args.sessions), flush=True)
            print(await malformed(child, port, token), flush=True)
            print(await sigterm(child, port, token), flush=True)
        except Exception:
            print(child.log_tail(40), file=sys.stderr)
            raise
        finally:
            child.stop()
            redis.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attachment-mib", type=int, default=512)
    parser.add_argument("--poll-s", type=float, default=20.0)
    parser.add_argument("--sessions", type=int, default=1000)
    asyncio.run(asyncio.wait_for(main(parser.parse_args()), 600))
