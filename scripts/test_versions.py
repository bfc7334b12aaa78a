"""`make test-versions`: the lowest and the newest versions pyproject.toml allows, each tested.

For every runtime dependency of pyproject.toml, its lower bound ("lowest") and the newest
release inside its range ("newest", what a fresh ``pip install`` of the wheel gets) are
installed in a throwaway venv each (under a temporary folder, removed afterwards), with the
package and the test runner; a subset of the suite then runs there with
``SESSIONHUB_TRANSPORT=auto`` (so an untested python-socketio, python-engineio or aiohttp
runs the stock lane, as it would in production). The dependencies' own dependencies are left
to pip; only the test tools are pinned by constraints.txt. CI runs it (``.ci/run``): a lower
bound that no longer works fails CI, not a user's install. Needs the package index.

    .venv/bin/python scripts/test_versions.py              # both sets
    .venv/bin/python scripts/test_versions.py --only lowest

Exit status 0 when every set passed. Bounded: each install 10 min, each test run 15 min.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The newest Python pyproject.toml's classifiers name: the newest set runs on the newest of 3.11
# up to this found on PATH (a new user's machine may well have it), the lowest set on this one.
NEWEST_PYTHON = (3, 13)
# What a venv needs to run the subset, beyond the package (versions from constraints.txt).
TEST_TOOLS = (
    "pytest",
    "pytest-asyncio",
    "pytest-timeout",
    "pytest-xdist",
    "playwright",
    "hypothesis",
    "openapi-spec-validator",
)
# The subset runs on two workers, as `make test` does (CI's 2 cores): serially it took 85 s and
# 59 s of the CI run's 15 minutes.
WORKERS = ("-n", "2", "--dist", "worksteal")
# Where each dependency is used: the transport and Redis (python-socketio, python-engineio,
# aiohttp, redis, hiredis, orjson), Redis Cluster and sharded pub/sub (redis), multipart uploads
# and streamed answers (aiohttp), tokens and JWK sets (pyjwt, aiohttp's client), payloads and
# settings (pydantic, pydantic-settings, regex's grapheme counts), passkeys (webauthn), device
# links' QR codes (segno), metrics (prometheus-client), time zones without the system's (tzdata).
SUBSET = (
    "tests/test_settle.py",
    "tests/transport/test_contract.py",
    "tests/transport/test_slow_client.py",
    "tests/transport/test_shutdown_handlers.py",
    "tests/transport/test_server_disconnect.py",
    "tests/transport/test_accept.py",
    "tests/test_ordering.py",
    "tests/test_bus.py",
    "tests/streams/test_events.py",
    "tests/streams/test_bad_input.py",
    "tests/voice/test_chunks.py",
    "tests/test_lean_redis.py",
    "tests/test_redis_restarted.py",  # redis-py 8.1 handed out connections a restart closed
    "tests/test_smoke.py",
    "tests/test_token_renewal.py",
    "tests/transport/test_descriptor_reserve.py",  # its fast case skipped where the stock lane serves
    "tests/test_hostile_preauth.py",
    # Hostile clients and the error contract: what a client sees must not depend on the lane
    # (the lowest set runs the stock lane).
    "tests/transport/test_hostile_binary.py",
    "tests/transport/test_hostile_polling.py",
    "tests/transport/test_hostile_handshake.py",
    "tests/transport/test_hostile_frames.py",
    "tests/transport/test_connect_refusals.py",
    "tests/transport/test_mass_disconnect.py",
    "tests/test_bad_input.py",
    "tests/test_error_messages.py",
    "tests/test_wire_json.py",
    "tests/test_hs256.py",
    "tests/listening/test_time_zones_bundled.py",
    "tests/identity/test_passkeys.py",
    "tests/identity/test_account.py",
    "tests/test_metrics.py",
    # redis-py's cluster client and its sharded pub/sub (ClusterPubSub, the reason for redis's
    # lower bound; server/transport/shard_link.py overrides one of its private methods), on a
    # real 3-master cluster (one start for the module).
    "tests/test_cluster.py::test_two_nodes_deliver_every_event_of_sessions_on_every_shard",
    "tests/test_cluster.py::test_killing_the_shard_links_loses_no_event",
    # PyJWT's JWK sets fetched with aiohttp's client (auth/jwks.py, handlers/jwks_watch.py).
    "tests/identity/test_jwks.py",
    # aiohttp's StreamResponse under HEAD (an export is sent in pieces; a243d7d broke HEAD once).
    "tests/streams/test_export_paged.py::test_a_head_of_an_export_or_the_review_is_its_headers_alone",
    # pydantic-settings reading the environment, and its errors said in one line; a refusal
    # after the lane is chosen is one line on the stock lane too (its warning came first).
    "tests/test_cli.py::test_settings_out_of_range_are_one_line",
    "tests/test_cli.py::test_a_port_in_use_is_one_line",
    # The OpenAPI document pydantic's schemas make (pydantic 2.6 made an invalid one).
    "tests/test_openapi_valid.py",
)
INSTALL_TIMEOUT_S = 600
TEST_TIMEOUT_S = 900


def ranges() -> dict[str, str]:
    """Each runtime dependency's requirement in pyproject.toml, extras kept with the name,
    e.g. ``{"aiohttp": ">=3.11,<4", "pyjwt[crypto]": ">=2.8,<3"}``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found: dict[str, str] = {}
    for requirement in project["dependencies"]:
        match = re.match(r"^([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?)(.*)$", requirement.split(";")[0].strip())
        if match is None:
            raise SystemExit(f"cannot read the requirement {requirement!r}")
        found[match.group(1)] = match.group(2).strip()
    return found


def canonical(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503), extras dropped."""
    return re.sub(r"[-_.]+", "-", name.split("[", 1)[0]).lower()


def lowest(spec: str) -> str:
    """The version a ``>=X`` bound names."""
    match = re.search(r">=\s*([0-9][^,\s]*)", spec)
    if match is None:
        raise SystemExit(f"no lower bound in {spec!r}")
    return match.group(1)


def runtime_closure() -> set[str]:
    """Every distribution the package needs at run time, its dependencies' own included
    (canonical names, read from this interpreter's installed metadata)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [split_extras(name) for name in ranges()]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: nothing more to follow
        for requirement in requires:
            head, _, marker = requirement.partition(";")
            wanted = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
            if wanted is not None and wanted.group(1) not in extras:
                continue  # an optional part nobody asked for
            match = re.match(r"^\s*([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?)", head)
            if match:
                todo.append(split_extras(match.group(1)))
    return {name for name, _ in seen}


def split_extras(requirement: str) -> tuple[str, frozenset[str]]:
    """``"pyjwt[crypto]"`` as ``("pyjwt", {"crypto"})``."""
    name, _, extras = requirement.partition("[")
    return canonical(name), frozenset(extra.strip() for extra in extras.rstrip("]").split(",") if extra.strip())


def test_tool_constraints(workdir: Path) -> Path:
    """constraints.txt without anything the package runs on: their versions are the point,
    and an old one may need old dependencies of its own (an old aiohttp an old multidict)."""
    runtime = runtime_closure()
    kept = [
        line
        for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if "==" not in line or canonical(line.split("==", 1)[0].strip()) not in runtime
    ]
    path = workdir / "constraints.txt"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def run(
    argv: list[str], timeout_s: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, text=True, capture_output=True, timeout=timeout_s, check=False, cwd=cwd, env=env)


def newest_python() -> str:
    """The newest working ``python3.N`` from NEWEST_PYTHON down to 3.11 (see :func:`working_python`),
    else this interpreter."""
    return working_python(range(NEWEST_PYTHON[1], 10, -1)) or sys.executable


def oldest_python() -> str:
    """A working ``python3.11``, the oldest pyproject allows: the lower bounds are tested there,
    where their wheels were made (3.13 has none of orjson 3.9's, hiredis 3.0's or regex 2024.4's).
    Else this interpreter, said."""
    found = working_python([11])
    if found is None:
        print(f"[lowest] no python3.11 found: on {python_version(sys.executable)} instead", flush=True)
    return found or sys.executable


def working_python(minors: Iterable[int]) -> str | None:
    """The first working ``python3.N`` of ``minors``, on PATH or installed by pyenv (whose shim on
    PATH may name a version it will not run); None when there is none."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for minor in minors:
        candidates = [shutil.which(f"python3.{minor}")]
        candidates += [str(path) for path in sorted(pyenv.glob(f"3.{minor}.*/bin/python3.{minor}"), reverse=True)]
        for candidate in candidates:
            if candidate is not None and run([candidate, "-c", "import venv"], 60).returncode == 0:
                return candidate
    return None


def python_version(python: str) -> str:
    return run([python, "-c", "import platform; print(platform.python_version())"], 60).stdout.strip()


def test_set(name: str, pins: list[str], workdir: Path, interpreter: str) -> bool:
    """Install ``pins`` with the package in a fresh venv of ``interpreter`` and run the subset;
    True when it passed."""
    venv = workdir / name
    python = str(venv / "bin" / "python")
    if not venv.exists():
        subprocess.run([interpreter, "-m", "venv", str(venv)], check=True, timeout=120)
    print(f"[{name}] Python {python_version(python)}", flush=True)
    constraints = test_tool_constraints(workdir)
    install = run(
        [python, "-m", "pip", "install", "-q", "-c", str(constraints), "-e", str(ROOT), *pins, *TEST_TOOLS],
        INSTALL_TIMEOUT_S,
    )
    if install.returncode != 0:
        print(f"[{name}] install failed:\n{install.stdout[-3000:]}{install.stderr[-3000:]}", flush=True)
        return False
    versions = run([python, "-m", "pip", "list", "--format=freeze"], 60).stdout
    direct = {canonical(name) for name in ranges()}
    got = [line for line in versions.splitlines() if canonical(line.split("==")[0]) in direct]
    print(f"[{name}] installed: {', '.join(got)}", flush=True)
    started = time.monotonic()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "SESSIONHUB_TRANSPORT": "auto", "HOME": str(workdir)}
    tests = run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *WORKERS, *SUBSET], TEST_TIMEOUT_S, cwd=ROOT, env=env
    )
    # A pass needs its last lines only; a failure its tracebacks (25 lines once cut the one
    # that said where a stop hung on Python 3.13).
    lines = (tests.stdout.strip() + "\n" + tests.stderr.strip()).strip().splitlines()
    tail = "\n".join(lines[-25:] if tests.returncode == 0 else lines[-400:])
    print(f"[{name}] {time.monotonic() - started:.0f} s, exit {tests.returncode}:\n{tail}", flush=True)
    return tests.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("lowest", "newest"))
    parser.add_argument("--workdir", type=Path, help="keep the venvs here (reused by the next run)")
    args = parser.parse_args()
    specs = ranges()
    sets = {
        "lowest": [f"{name}=={lowest(spec)}" for name, spec in specs.items()],
        "newest": [f"{name}{spec}" for name, spec in specs.items()],  # pip takes the newest allowed
    }
    results: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="sessionhub-versions-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name, pins in sets.items():
            if args.only in (None, name):
                print(f"[{name}] {' '.join(pins)}", flush=True)
                interpreter = newest_python() if name == "newest" else oldest_python()
                results[name] = test_set(name, pins, workdir, interpreter)
    for name, passed in results.items():
        print(f"{name}: {'PASS' if passed else 'FAIL'} ({' '.join(sets[name])})")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
