"""The fan-out benchmarks' runs: a quiet machine, the servers to compare, the load generator.

Servers: sessionhub, stock python-socketio (bench/stock_server.py) and Node socket.io with its
Redis adapter (bench/node/server.js); bench/ceiling_server.py calibrates the generator (all
started by :mod:`common.servers`, re-exported here for the scripts that use this module).
Generators: the compiled one (bench/cgen, ``c``) or bench/lean_client.py (``py``); both take
the same options and print the same ``RESULT`` line.
Everything listens on 127.0.0.1 only, on free ports (never 6379); the server is pinned to
core 0, redis-server and the generator to core 1. Every wait is bounded and every process
started here is stopped here, by its own pid.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import toolchain

from common.ports import free_port as free_port
from common.servers import BENCH as BENCH
from common.servers import JWT_SECRET as JWT_SECRET
from common.servers import LOAD_CORE as LOAD_CORE
from common.servers import PYTHON as PYTHON
from common.servers import ROOT as ROOT
from common.servers import SERVER_CORE as SERVER_CORE
from common.servers import Child as Child
from common.servers import ServerUnderTest as ServerUnderTest
from common.servers import create_session as create_session
from common.servers import mint_token as mint_token
from common.servers import pinned as pinned
from common.servers import session_status as session_status
from common.servers import start_ceiling, start_floor, start_node, start_stock
from common.servers import start_redis as start_redis
from common.servers import start_sessionhub as start_sessionhub

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


STARTERS = {
    "sessionhub": start_sessionhub,
    "stock": start_stock,
    "node": start_node,
    "ceiling": start_ceiling,
    "floor": start_floor,
}
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
