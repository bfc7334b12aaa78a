"""The suite's own heap: a stopped server under test is freed, not kept for the rest of the run.

aiohttp caches each app's middleware chain (``web_app._cached_build_middleware``, 1,024 entries
keyed by the app), which kept the last 1,024 stopped servers of a worker alive with all their
services held: ~600,000 objects after tests/admin's 80 tests, walked by every full collection
after (``collected_first``'s took 4-20 s in a whole run). ``ServerUnderTest.stop`` empties it.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import aiohttp

from tests.conftest import start_server
from tests.helpers import RedisProcess


async def test_a_stopped_server_is_freed(redis_process: RedisProcess, tmp_path: Path, collected_first: None) -> None:
    srv = await start_server(redis_process.url, tmp_path)
    async with aiohttp.ClientSession() as http, http.get(srv.url + "/healthz") as response:
        assert response.status == 200  # a request: the app's middleware chain is built (and cached)
    app = weakref.ref(srv.app)
    await srv.stop()
    del srv
    gc.collect()
    assert app() is None, [type(r).__name__ for r in gc.get_referrers(app())]
