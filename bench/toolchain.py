"""What the benchmark builds or installs before it runs: the C load generator, Node's packages.

Both are optional: without a C compiler the Python generator is used, without node/npm the
Node reference server is left out; either way the run says so loudly. Every step is bounded
in time and runs only when its output is missing or stale.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CGEN_DIR = BENCH / "cgen"
CGEN_BINARY = CGEN_DIR / "build" / "loadgen"
NODE_DIR = BENCH / "node"
BUILD_TIMEOUT_S = 120.0
NPM_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class Ready:
    """A tool that is ready (``ok``), or why it is not."""

    ok: bool
    why: str = ""


def build_cgen() -> Ready:
    """``make -C bench/cgen`` (gcc -O2; a no-op when the binary is up to date)."""
    if shutil.which("make") is None or shutil.which("gcc") is None:
        return Ready(False, "make or gcc not found")
    try:
        done = subprocess.run(
            ["make", "-s", "-C", str(CGEN_DIR)], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return Ready(False, f"make -C bench/cgen took over {BUILD_TIMEOUT_S:.0f} s")
    if done.returncode != 0 or not CGEN_BINARY.exists():
        return Ready(False, f"make -C bench/cgen failed:\n{(done.stdout + done.stderr)[-2000:]}")
    return Ready(True)


def node_binary() -> str | None:
    """``node`` from PATH."""
    return shutil.which("node")


def install_node_packages() -> Ready:
    """``npm ci --no-audit --no-fund`` in bench/node, only when node_modules is missing."""
    if node_binary() is None or shutil.which("npm") is None:
        return Ready(False, "node or npm not found")
    if (NODE_DIR / "node_modules" / "socket.io" / "package.json").exists():
        return Ready(True)
    argv = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        done = subprocess.run(argv, cwd=NODE_DIR, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Ready(False, f"npm ci took over {NPM_TIMEOUT_S:.0f} s")
    if done.returncode != 0:
        return Ready(False, f"npm ci failed:\n{(done.stdout + done.stderr)[-2000:]}")
    return Ready(True)
