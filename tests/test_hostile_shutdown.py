"""Shutdown is bounded whatever clients do: a real `sessionhub serve` process, hostile pollers."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import CHILD_TEST_TIMEOUT_S, RedisProcess, free_port
from tests.raw_wire import RawPoller
from tests.test_processes import ROOT, _wait_ready, mint, node_env

pytestmark = pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)  # `serve` children start


async def test_an_oversized_poll_is_answered_and_sigterm_is_prompt(redis_process: RedisProcess, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        cwd=ROOT,
        env=node_env(tmp_path, redis_process.url, SESSIONHUB_INPROCESS_WORKERS="0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    token = mint("alice", "read_own")
    try:
        await _wait_ready(url, proc)
        async with aiohttp.ClientSession() as http:
            oversized = await RawPoller.open(http, url)
            await oversized.socketio(token)
            waiting = await RawPoller.open(http, url)  # a poller whose GET is pending at SIGTERM
            await waiting.socketio(token)
            pending = [asyncio.create_task(p.get(timeout=60)) for p in (oversized, waiting)]
            await asyncio.sleep(0.2)
            # Over Engine.IO's 1 MiB hard limit: the connection is closed, and the POST answered.
            status = await oversized.post("4" + "x" * ((1 << 20) + 100), timeout=5)
            assert status == 400
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 15)
            assert time.monotonic() - started < 8, "SIGTERM took too long"
            await asyncio.gather(*pending, return_exceptions=True)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
