"""/metrics across processes: with PROMETHEUS_MULTIPROC_DIR, a scrape of one sums them all."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.helpers import CHILD_TEST_TIMEOUT_S, SECRET, RedisProcess, free_port, wait_until_ready
from tests.admin.test_http import admin_token

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)  # two `serve` children start


async def serve(redis_url: str, port: int, multiproc: Path, data: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "SESSIONHUB_PORT": str(port),
        "SESSIONHUB_JWT_SECRET": SECRET,
        "SESSIONHUB_DATA_DIR": str(data),
        "SESSIONHUB_INPROCESS_WORKERS": "0",
        "SESSIONHUB_LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL
    )


async def ready(url: str, process: asyncio.subprocess.Process) -> None:
    await wait_until_ready(url, lambda: process.returncode)


@pytest_asyncio.fixture
async def two_nodes(redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[list[str]]:
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    ports = [free_port(), free_port()]
    processes = [await serve(redis_process.url, port, multiproc, tmp_path / f"d{port}") for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        await asyncio.gather(*(ready(url, p) for url, p in zip(urls, processes, strict=True)))
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 10)


def healthz_count(text: str) -> float:
    match = re.search(
        r'^sessionhub_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


async def test_a_scrape_of_one_process_counts_the_requests_of_every_process(
    server: object, two_nodes: list[str]
) -> None:
    token = admin_token(server)  # type: ignore[arg-type]
    async with aiohttp.ClientSession() as http:
        base = []
        for url in two_nodes:
            async with http.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == 200
                base.append(healthz_count(await response.text()))
        assert base[0] == base[1]  # both already see each other's start-up probes
        for url, count in zip(two_nodes, (3, 5), strict=True):
            for _ in range(count):
                async with http.get(url + "/healthz") as response:
                    assert response.status == 200
        async with http.get(two_nodes[0] + "/metrics", headers={"Authorization": f"Bearer {token}"}) as response:
            assert healthz_count(await response.text()) == base[0] + 8
