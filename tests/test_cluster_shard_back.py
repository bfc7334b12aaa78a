"""A ``serve`` started while the shard of slot 0 is down with no replica to take over (the whole
shard gone, not failing over): once its master comes back it must turn ready and serve events.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.cluster import RedisCluster, wait_until
from tests.conftest import start_server
from tests.helpers import Client, free_port, wait_until_ready
from tests.test_processes import ROOT, node_env

pytestmark = pytest.mark.timeout(120)

# Bounds, not waits: a node started before its shard is back turns ready within this long of the
# cluster saying it is whole again (its probes ask every couple of seconds at worst).
READY_AFTER_OK_S = 30.0


# The shard of slot 0 has no replica: it cannot fail over, only come back.
CLUSTER_REPLICAS = 0


async def _status(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as response:
        return response.status


async def test_serve_started_while_slot_0s_shard_is_down_turns_ready_when_it_is_back(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    doomed = cluster.owner(0)
    cluster.kill(doomed)
    others = [port for port in cluster.master_ports if port != doomed]
    # The cluster says it has lost the shard (a node started before that still maps slot 0).
    for port in others:
        wait_until(lambda port=port: cluster.client(port).cluster("info")["cluster_state"] == "fail", 30)
    data_dir = tmp_path / "serve"
    data_dir.mkdir()
    seeds = ",".join(f"redis://127.0.0.1:{p}/0" for p in others)
    env = node_env(data_dir, seeds, SESSIONHUB_REDIS_CLUSTER="true", SESSIONHUB_INPROCESS_WORKERS="0")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    helper = None
    clients: list[Client] = []
    try:
        try:
            await wait_until_ready(url, proc.poll, path="/healthz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {log_path.read_text()[-2000:]}") from None
        assert await _status(url) == 503
        await asyncio.to_thread(cluster.restart, doomed)
        for node in cluster.master_ports:
            await asyncio.to_thread(
                wait_until,
                lambda node=node: cluster.client(node).cluster("info")["cluster_state"] == "ok",
                60,
                "cluster_state ok",
            )
        started = time.monotonic()
        try:
            await wait_until_ready(url, proc.poll, path="/readyz", timeout_s=READY_AFTER_OK_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {log_path.read_text()[-3000:]}") from None
        ready_s = time.monotonic() - started
        # Events: a session made elsewhere, followed and changed through the node.
        helper = await start_server(cluster.url, tmp_path / "helper", redis_cluster=True)
        session_id = await helper.create_session("alice")
        watcher = Client(url, helper.token("alice"))
        writer = Client(url, helper.token("alice"))
        clients += [watcher, writer]
        await watcher.connect()
        await writer.connect()
        ack = await watcher.call("subscribe_on_session", {"session_id": session_id})
        assert ack["ok"] is True, ack
        ack = await writer.call("set_session_status", {"session_id": session_id, "status": "recording"}, timeout=10)
        assert ack["ok"] is True, (ack, log_path.read_text()[-3000:])
        await watcher.wait_for(
            lambda: any(
                name == "session_status" and data.get("session_id") == session_id for name, data in watcher.events
            ),
            timeout=10,
        )
        print(f"\nready {ready_s:.1f} s after the cluster said it was whole")
    finally:
        for client in clients:
            await client.close()
        if helper is not None:
            await helper.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 20)
