"""`make test-versions`: the lowest and the newest versions pyproject.toml allows, each tested.

For python-socketio, python-engineio, aiohttp and redis, the lower bounds of pyproject.toml
("lowest") and the newest releases inside its ranges ("newest") are installed in a throwaway
venv each (under a temporary folder, removed afterwards), with the package and the test
runner; a subset of the suite then runs there with ``SESSIONHUB_TRANSPORT=auto`` (so an
untested library version runs the stock lane, as it would in production). Every other
package is pinned by constraints.txt. Needs the package index once per run.

    .venv/bin/python scripts/test_versions.py              # both sets
    .venv/bin/python scripts/test_versions.py --only lowest

Exit status 0 when every set passed. Bounded: each install 10 min, each test run 15 min.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("python-socketio", "python-engineio", "aiohttp", "redis")
# Their own dependencies: left to pip (an old aiohttp needs an old multidict, for one).
THEIR_DEPENDENCIES = (
    "aiohappyeyeballs", "aiosignal", "async-timeout", "attrs", "bidict", "frozenlist", "h11", "multidict",
    "propcache", "simple-websocket", "wsproto", "yarl",
)
# What a venv needs to run the subset, beyond the package (versions from constraints.txt).
TEST_TOOLS = ("pytest", "pytest-asyncio", "pytest-timeout", "playwright")
SUBSET = (
    "tests/transport/test_contract.py",
    "tests/test_ordering.py",
    "tests/test_bus.py",
    "tests/streams/test_events.py",
    "tests/test_lean_redis.py",
    "tests/test_smoke.py",
)
INSTALL_TIMEOUT_S = 600
TEST_TIMEOUT_S = 900


def ranges() -> dict[str, str]:
    """Each library's requirement in pyproject.toml, e.g. ``{"aiohttp": ">=3.9,<4"}``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found: dict[str, str] = {}
    for requirement in project["dependencies"]:
        match = re.match(r"^([A-Za-z0-9_.\-]+)(.*)$", requirement.split(";")[0].strip())
        if match and match.group(1) in LIBRARIES:
            found[match.group(1)] = match.group(2).strip()
    return found


def lowest(spec: str) -> str:
    """The version a ``>=X`` bound names."""
    match = re.search(r">=\s*([0-9][^,\s]*)", spec)
    if match is None:
        raise SystemExit(f"no lower bound in {spec!r}")
    return match.group(1)


def other_constraints(workdir: Path) -> Path:
    """constraints.txt without the libraries under test (their versions are the point) and theirs."""
    kept = [
        line
        for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if not any(
            re.match(rf"^{re.escape(name)}==", line.replace("_", "-"), re.IGNORECASE)
            for name in (*LIBRARIES, *THEIR_DEPENDENCIES)
        )
    ]
    path = workdir / "constraints.txt"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def run(
    argv: list[str], timeout_s: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, text=True, capture_output=True, timeout=timeout_s, check=False, cwd=cwd, env=env)


def test_set(name: str, pins: list[str], workdir: Path) -> bool:
    """Install ``pins`` with the package in a fresh venv and run the subset; True when it passed."""
    venv = workdir / name
    python = str(venv / "bin" / "python")
    if not venv.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    constraints = other_constraints(workdir)
    install = run(
        [python, "-m", "pip", "install", "-q", "-c", str(constraints), "-e", str(ROOT), *pins, *TEST_TOOLS],
        INSTALL_TIMEOUT_S,
    )
    if install.returncode != 0:
        print(f"[{name}] install failed:\n{install.stdout[-3000:]}{install.stderr[-3000:]}", flush=True)
        return False
    versions = run([python, "-m", "pip", "list", "--format=freeze"], 60).stdout
    got = [line for line in versions.splitlines() if line.split("==")[0].lower() in LIBRARIES]
    print(f"[{name}] installed: {', '.join(got)}", flush=True)
    started = time.monotonic()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "SESSIONHUB_TRANSPORT": "auto", "HOME": str(workdir)}
    tests = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUBSET], TEST_TIMEOUT_S, cwd=ROOT, env=env)
    tail = "\n".join((tests.stdout.strip() + "\n" + tests.stderr.strip()).strip().splitlines()[-25:])
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
                results[name] = test_set(name, pins, workdir)
    for name, passed in results.items():
        print(f"{name}: {'PASS' if passed else 'FAIL'} ({' '.join(sets[name])})")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
