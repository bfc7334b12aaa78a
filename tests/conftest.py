"""Fixtures: one real redis-server per run (per pytest-xdist worker), flushed before each test;
servers on loopback."""

from __future__ import annotations

import asyncio
import gc
import os
import tracemalloc
import warnings
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.app import SERVICES_KEY, build_app, front_site
from server.identity import token_service
from server.services import build_services, connect_redis
from storage.clock import Clock
from tests.browser import browser, full_browser, tab  # noqa: F401 - the Playwright fixtures, shared with every test module
from tests.helpers import Client, RedisProcess, ServerUnderTest, test_settings

# The listening tests' fixtures (clock, lserver), the identity tests' (iserver), the cluster
# tests' (cluster, nodes, made) and the chat bot's (bot), found by every test module.
pytest_plugins = [
    "tests.listening.support",
    "tests.identity.support",
    "tests.cluster_fixtures",
    "tests.voice.bot_support",
]


@pytest.fixture(scope="session")
def redis_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path_factory.mktemp("redis"))
    process.start()
    yield process
    process.stop()


@pytest_asyncio.fixture
async def redis(redis_process: RedisProcess) -> AsyncIterator[Redis]:
    client = connect_redis(redis_process.url)
    for attempt in range(3):  # a machine busy with other work may starve a connect past its 5 s
        try:
            await client.flushall()
            break
        except (RedisTimeoutError, RedisConnectionError):
            if attempt == 2:
                raise
    yield client
    await client.aclose()


async def start_server(
    redis_url: str, data_dir: Path, *, clock: Clock | None = None, listen_port: int = 0, **overrides: object
) -> ServerUnderTest:
    """Build and start a server under test on a free loopback port, or ``listen_port`` (on ``clock`` when given)."""
    settings = test_settings(redis_url, data_dir, **overrides)
    redis = connect_redis(redis_url, cluster=settings.redis_cluster)
    tokens = token_service(settings)
    app = build_app(settings, services=build_services(settings, redis=redis, tokens=tokens, clock=clock))

    async def close_redis(_: web.Application) -> None:
        await redis.aclose()

    app.on_cleanup.append(close_redis)
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=3
    )  # as `serve`: a lingering client must not hold the teardown
    try:
        await runner.setup()
        site = front_site(runner, "127.0.0.1", listen_port)
        await site.start()
    except BaseException:
        # A start that failed midway (Redis timing out under load, say) had begun some of the
        # app's background loops: stopped here, they do not run on into the worker's next tests
        # (a second lean link in CLIENT LIST, a loop found running by tests/test_background_stop.py).
        await runner.cleanup()
        raise
    port = site.port  # both lanes' sites (server.transport.contract.SocketServer.site)
    return ServerUnderTest(
        url=f"http://127.0.0.1:{port}", services=app[SERVICES_KEY], tokens=tokens, app=app, runner=runner
    )


@pytest_asyncio.fixture
async def server(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    srv = await start_server(redis_process.url, tmp_path)
    yield srv
    await srv.stop()


@pytest_asyncio.fixture
async def clients(server: ServerUnderTest) -> AsyncIterator[list[Client]]:
    """A list the test appends its clients to; all are closed afterwards."""
    made: list[Client] = []
    yield made
    for client in made:
        await client.close()


# Shared servers, for test modules whose tests only read, or refuse, or write only resources they
# create themselves (never a user's global list, a rate limit, the clock): building an app costs
# ~0.65 s a test. Such a module opts in by defining its `server` fixture as `reading_server` (see
# tests/test_hostile_values.py); every other test keeps a server of its own.
@pytest.fixture(scope="module")
def module_redis_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A redis-server of the module's own: the per-test ``redis`` fixture flushes the session's
    one, under a server that outlives the test (its stream groups and keys would vanish)."""
    process = RedisProcess(tmp_path_factory.mktemp("redis-module"))
    process.start()
    yield process
    process.stop()


@pytest_asyncio.fixture(scope="module")
async def module_server(
    module_redis_process: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServerUnderTest]:
    srv = await start_server(module_redis_process.url, tmp_path_factory.mktemp("module-server"))
    yield srv
    await srv.stop()


@pytest_asyncio.fixture
async def reading_server(module_server: ServerUnderTest) -> AsyncIterator[ServerUnderTest]:
    """The module's shared server, checked after each test for what would leak into the next."""
    yield module_server
    assert module_server.services.clock.shift_ms == 0, "a test on a shared server moved its clock"


# Where leftovers come from. The end-of-run collection below cannot say which test left a socket
# to the garbage collector. SESSIONHUB_TRACE_LEAKS=module collects after each test module and
# names the module whose tests left something; =test after each test (slow: ~1,200 collections);
# add PYTHONTRACEMALLOC=20 to have each leftover's allocation traceback too (slower still: the
# cluster tests then reach their timeouts). Off by default: the collector's three passes take
# ~1 s per module on this suite's heap (23.9 s over the 22 modules of tests/listening, tests/admin
# and three more, a 86 s run, load 5), ~3 min over the ~200 modules of a whole run.
TRACE_LEAKS = os.environ.get("SESSIONHUB_TRACE_LEAKS", "")
LEFT_OPEN = pytest.StashKey[list[str]]()


def _collect_leftovers() -> list[str]:
    """Run the collector and return what the objects it freed said they held open."""
    with warnings.catch_warnings(record=True) as late:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(3):  # a finalizer run by one collection may leave garbage for the next
            if gc.collect() == 0:
                break  # nothing was freed, so no finalizer ran: the next would find nothing either
    found: list[str] = []
    for warning in late:
        if not issubclass(warning.category, ResourceWarning):
            continue
        found.append(str(warning.message))
        allocated = tracemalloc.get_object_traceback(warning.source) if warning.source is not None else None
        if allocated is not None:
            found.extend(f"    {line}" for line in allocated.format())
    return found


# Tasks a test leaves running on the session's event loop, by the test during which they
# appeared. A server stopped while one of its tasks still runs is a leak the collector cannot
# see: the task holds the objects until the loop closes at the end of the run (a Redis client
# used after its close opens new connections, "loop is closed"). Cheap: a look at the loop's
# task set after each test, no collection.
SESSION_LOOP = pytest.StashKey[asyncio.AbstractEventLoop]()
TASK_BORN = pytest.StashKey["weakref.WeakKeyDictionary[asyncio.Task[object], str]"]()


@pytest_asyncio.fixture(scope="session", loop_scope="session", autouse=True)
async def _session_loop(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Keeps the loop for the check after each test; torn down last (set up first), when every
    other fixture is gone, it lists the tasks still running before the loop closes."""
    request.config.stash[SESSION_LOOP] = asyncio.get_running_loop()
    yield
    await asyncio.sleep(0)  # a task that was only waiting for its cancellation to land ends here
    request.config.stash.setdefault(LEFT_OPEN, []).extend(_tasks_left(request.config))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    # Before the fixtures' teardown (the last test's takes the session loop with it).
    loop = item.config.stash.get(SESSION_LOOP, None)
    if loop is not None and not loop.is_closed():
        born = item.config.stash.setdefault(TASK_BORN, weakref.WeakKeyDictionary())
        for task in asyncio.all_tasks(loop):
            born.setdefault(task, item.nodeid)
    if TRACE_LEAKS not in ("module", "test"):
        return
    if TRACE_LEAKS == "module" and nextitem is not None and nextitem.path == item.path:
        return
    where = item.nodeid if TRACE_LEAKS == "test" else str(item.path.relative_to(item.config.rootpath))
    item.config.stash.setdefault(LEFT_OPEN, []).extend(f"[{where}] {line}" for line in _collect_leftovers())


@pytest.fixture
def collected_first(request: pytest.FixtureRequest) -> None:
    """For a test that runs the garbage collector itself: what earlier tests left to it is
    collected first and listed at the end of the run (named as found before this test), so
    their ResourceWarnings do not fail this test (they failed a gc-policy test once)."""
    found = _collect_leftovers()
    request.config.stash.setdefault(LEFT_OPEN, []).extend(f"[before {request.node.nodeid}] {line}" for line in found)


def _tasks_left(config: pytest.Config) -> list[str]:
    """Tasks still running at the end of the run, but this one (every other fixture is gone)."""
    born = config.stash.get(TASK_BORN, weakref.WeakKeyDictionary())
    return sorted(
        f"[{born.get(task, 'end of run')}] task still running: {task!r}"
        for task in asyncio.all_tasks()
        # python-engineio's ping timer (stock lane) ends by itself within a ping interval.
        if task is not asyncio.current_task() and task.get_coro().__qualname__ != "AsyncSocket._send_ping"  # type: ignore[union-attr]
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Collect what the tests left to the garbage collector, and say what it held open.

    A socket or Redis connection left in a reference cycle by some test is found only when the
    collector runs; at the end of a run that is pytest's own last collection, where
    ``filterwarnings = error`` turns its ResourceWarning into a failure of the whole run with no
    test to blame, in some runs and not others. Collected here first, such leftovers are listed
    (so they can be traced: see TRACE_LEAKS above) instead of failing a run whose every test
    passed. A ResourceWarning raised while a test runs still fails that test.
    """
    left = session.config.stash.setdefault(LEFT_OPEN, [])
    left.extend(f"[end of run] {line}" for line in _collect_leftovers())
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:  # a pytest-xdist worker: its controller prints the list
        worker_output["left_open"] = left


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist, in the controller: a worker's leftovers join the list printed at the end."""
    left = getattr(node, "workeroutput", {}).get("left_open", [])
    worker = getattr(node, "gateway", None)
    name = getattr(worker, "id", "worker")
    node.config.stash.setdefault(LEFT_OPEN, []).extend(f"({name}) {line}" for line in left)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The leftovers, in a section of their own (after the progress line, not on it)."""
    left = config.stash.get(LEFT_OPEN, [])
    if left:
        terminalreporter.write_sep(
            "=", "tasks and resources left by tests (the test named is the one during which it appeared)"
        )
        for line in left[:200]:
            terminalreporter.write_line(line)
