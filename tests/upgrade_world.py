"""An operator's upgrade: an older sessionhub release, built from git, makes one of everything
through its own HTTP and Socket.IO API; HEAD then reads it back (tests/test_upgrade_*.py).

The older release runs from a throwaway git worktree (its own Python, web/ and Lua files) with
this venv's interpreter, as a ``python -m server serve`` child on the test's own redis-server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.audio_samples import webm
from tests.helpers import SECRET, Client, free_port, wait_until_ready
from tests.listening.support import noon_zone

HEAD_ROOT = Path(__file__).resolve().parent.parent
# The releases an operator upgrades from: the previous one, and one two days older.
RELEASES = {"previous": "d33a9e9", "older": "397bebf"}
PAGE = {"X-Sessionhub-Client": "1"}  # a page request (the CSRF rule of /api/auth)
# The test's node settings: no limit a single person's afternoon could reach, no disk reserve.
NODE_SETTINGS = {
    "SESSIONHUB_CLIPS_COOLDOWN_S": "0",
    "SESSIONHUB_VOICE_DISK_RESERVE_BYTES": "0",
    "SESSIONHUB_LOG_LEVEL": "WARNING",
}


def add_worktree(commit: str, where: Path) -> Path:
    """A detached worktree of ``commit`` at ``where`` (nothing committed, removed by remove_worktree)."""
    subprocess.run(
        ["git", "-C", str(HEAD_ROOT), "worktree", "add", "--detach", str(where), commit],
        check=True,
        capture_output=True,
    )
    return where


def remove_worktree(where: Path) -> None:
    subprocess.run(["git", "-C", str(HEAD_ROOT), "worktree", "remove", "--force", str(where)], capture_output=True)


def release_available(commit: str) -> bool:
    """Whether this clone holds ``commit`` (a shallow clone does not)."""
    found = subprocess.run(["git", "-C", str(HEAD_ROOT), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    return found.returncode == 0


@pytest.fixture(scope="session", params=list(RELEASES))
def release(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The code of a release an operator upgrades from, in a throwaway worktree (removed after)."""
    commit = RELEASES[request.param]
    if not release_available(commit):
        pytest.skip(f"the release {commit} is not in this clone (a shallow one?)")
    where = tmp_path_factory.mktemp(f"release-{commit}") / commit
    add_worktree(commit, where)
    try:
        yield where
    finally:
        remove_worktree(where)


def node_env(root: Path, data_dir: Path, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONHUB_") and k != "REDIS_URL"}
    env.update(NODE_SETTINGS)
    env.update(
        {
            "SESSIONHUB_JWT_SECRET": SECRET,
            "SESSIONHUB_DATA_DIR": str(data_dir),
            "REDIS_URL": redis_url,
            "PYTHONPATH": str(root),
        }
    )
    return env


@asynccontextmanager
async def serving(root: Path, data_dir: Path, redis_url: str, **settings: str) -> AsyncIterator[str]:
    """``python -m server serve`` of the code at ``root``; yields its base URL once ready, and
    stops it (SIGTERM, as an operator's stop) when the block ends."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port)],
            cwd=root,
            env={**node_env(root, data_dir, redis_url), **settings},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_until_ready(url, proc.poll, path="/readyz")
        yield url
    except BaseException:
        print(f"--- the end of {root.name}'s log ({url}) ---\n{log_path.read_bytes()[-6000:].decode(errors='replace')}")
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 20)


def _token_argv(user: str, *perms: str, name: str | None = None) -> list[str]:
    args = ["token", "--user", user]
    for perm in perms:
        args += ["--perm", perm]
    return args + (["--name", name] if name else [])


def _token_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONHUB_")}
    env.update({"SESSIONHUB_JWT_SECRET": SECRET, "PYTHONPATH": str(root)})
    return env


def mint(root: Path, user: str, *perms: str, name: str | None = None) -> str:
    """A token from ``sessionhub token`` of the code at ``root`` (an operator's account token)."""
    args = [sys.executable, "-m", "server", *_token_argv(user, *perms, name=name)]
    return subprocess.run(
        args, cwd=root, env=_token_env(root), capture_output=True, text=True, check=True
    ).stdout.strip()


# ``sessionhub token`` twice in one interpreter: the command line's own main (what the console
# script and ``python -m server`` call) for each argv, each printing its token on a line.
_MINT_EACH = (
    "import json, sys\nfrom server.cli import main\nfor argv in json.loads(sys.argv[1]):\n    assert main(argv) == 0\n"
)


async def mint_accounts(root: Path) -> tuple[str, str]:
    """bob's account token and the operator's admin token, from ``sessionhub token`` of the code
    at ``root``, in one child: an older release's token command imports the whole app (~1 s of
    CPU an interpreter), and the CLI needs no server, so the caller may mint while one starts."""
    argvs = [_token_argv("bob", "read_own", "create", "update", name="Bob"), _token_argv("ops", "admin")]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _MINT_EACH,
        json.dumps(argvs),
        cwd=root,
        env=_token_env(root),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    account, admin = out.decode().split()
    return account, admin


class Browser:
    """One browser's HTTP side: its cookie jar (the refresh cookie) and its access token."""

    def __init__(self) -> None:
        self.jar = aiohttp.CookieJar(unsafe=True)
        self.token = ""

    def refresh_cookie(self) -> str:
        return next((c.value for c in self.jar if c.key == "sessionhub_refresh"), "")

    async def call(
        self, base: str, method: str, path: str, *, token: str | None = None, page: bool = False, **kw: Any
    ) -> tuple[int, Any]:
        headers = dict(kw.pop("headers", {}))
        bearer = self.token if token is None else token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        if page:
            headers.update(PAGE)
        async with (
            aiohttp.ClientSession(cookie_jar=self.jar) as http,
            http.request(method, base + path, headers=headers, **kw) as response,
        ):
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.read()


async def call(base: str, method: str, path: str, token: str = "", **kw: Any) -> tuple[int, Any]:
    """One HTTP call with a bearer token (none when empty)."""
    return await Browser().call(base, method, path, token=token, **kw)


def ok(answer: tuple[int, Any], *statuses: int) -> Any:
    status, body = answer
    assert status in (statuses or (200, 201)), (status, body)
    return body


PATTERN_STATE = {
    "tracks": [
        {
            "id": "kick",
            "name": "Kick",
            "sampleId": "kick",
            "steps": [i % 4 == 0 for i in range(16)],
            "parameterLocks": [None] * 16,
            "volume": 0.8,
            "muted": False,
            "transpose": 0,
            "stepCount": 16,
        },
        {
            "id": "hat",
            "name": "Hat",
            "sampleId": "hihat",
            "steps": [i % 2 == 1 for i in range(16)],
            "parameterLocks": [None] * 16,
            "volume": 0.5,
            "muted": False,
            "transpose": 0,
            "stepCount": 16,
        },
    ],
    "tempo": 128,
    "swing": 10,
    "version": 1,
}


@dataclass
class World:
    """What a release made, as its API answered it."""

    guest: Browser = field(default_factory=Browser)
    linked: Browser = field(default_factory=Browser)  # the guest's second device, by a device link
    guest_id: str = ""
    account: str = ""  # bob's token, an operator-issued account with a name
    admin: str = ""
    voice_open: str = ""  # bob's active voice session, recording paused, a chunk in it
    voice_done: str = ""  # bob's closed voice session (Done, its job run)
    voice_records: dict[str, Any] = field(default_factory=dict)
    chunks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stats_query: str = ""  # the stats' path and query, in a zone where the world was made at noon
    audio: dict[str, bytes] = field(default_factory=dict)  # sha256 -> the bytes uploaded
    pattern: str = ""
    remix: str = ""
    pattern_get: dict[str, Any] = field(default_factory=dict)
    remix_get: dict[str, Any] = field(default_factory=dict)
    stream: str = ""  # the guest's stream, active in its second segment
    stream_record: dict[str, Any] = field(default_factory=dict)
    review: dict[str, Any] = field(default_factory=dict)
    moments: dict[str, Any] = field(default_factory=dict)
    mine: dict[str, Any] = field(default_factory=dict)  # bob's own clips on the stream
    history: str = ""
    upload: dict[str, Any] = field(default_factory=dict)  # the listening upload, as sent
    history_sessions: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    me_sessions: dict[str, Any] = field(default_factory=dict)
    admin_sessions: dict[str, Any] = field(default_factory=dict)
    positions: dict[str, tuple[str, int, str]] = field(default_factory=dict)  # session -> (epoch, offset, last_id)


async def make_everything(base: str, root: Path, accounts: tuple[str, str] | None = None) -> World:
    """One of everything, made on the server at ``base`` through its own API (as its pages do);
    ``accounts`` are mint_accounts(root)'s tokens when the caller minted them already."""
    world = World()
    world.account, world.admin = accounts or await mint_accounts(root)
    await _identity(base, world)
    await _voice(base, world)
    await _pattern(base, world)
    await _stream(base, world)
    await _history(base, world)
    world.me_sessions = ok(await world.guest.call(base, "GET", "/api/me/sessions?limit=50"))
    world.admin_sessions = ok(await call(base, "GET", "/admin/sessions", world.admin))
    return world


async def _identity(base: str, world: World) -> None:
    answer = ok(await world.guest.call(base, "POST", "/api/auth/guest", page=True))
    world.guest.token, world.guest_id = answer["token"], answer["user_id"]
    assert world.guest.refresh_cookie(), "a page's guest gets the refresh cookie"
    ok(await world.guest.call(base, "PATCH", "/api/auth/me", json={"name": "Gwen"}))
    link = ok(await world.guest.call(base, "POST", "/api/auth/link"))
    one_time = link["url"].split("token=", 1)[1].split("&", 1)[0]
    redeemed = ok(await world.linked.call(base, "POST", "/api/auth/one_time", page=True, json={"token": one_time}))
    assert redeemed["user_id"] == world.guest_id
    world.linked.token = redeemed["token"]


async def _voice(base: str, world: World) -> None:
    bob = world.account
    world.voice_done = ok(await call(base, "POST", "/voicebot/create_session", bob, json={"session_name": "Standup"}))[
        "session_id"
    ]
    await _upload(base, world, world.voice_done, webm(1500))
    recorder = Client(base, bob)
    await recorder.connect()
    try:
        for status in ("recording", "paused"):
            ack = await recorder.call("set_session_status", {"session_id": world.voice_done, "status": status})
            assert ack["ok"], ack
        await recorder.call("subscribe_on_session", {"session_id": world.voice_done})
        done = await recorder.call("session_done", {"session_id": world.voice_done})
        assert done["ok"], done
        await recorder.wait_for(
            lambda: any(e["data"]["status"] == "succeeded" for e in recorder.named("job_result")), 20
        )
        world.voice_open = ok(
            await call(base, "POST", "/voicebot/create_session", bob, json={"session_name": "Ideas"})
        )["session_id"]
        await _upload(base, world, world.voice_open, webm(2500))
        for status in ("recording", "paused"):
            ack = await recorder.call("set_session_status", {"session_id": world.voice_open, "status": status})
            assert ack["ok"], ack
    finally:
        await recorder.close()
    for session_id in (world.voice_done, world.voice_open):
        record = ok(await call(base, "GET", f"/voicebot/sessions/{session_id}", bob))
        world.voice_records[session_id] = record
        world.positions[session_id] = (record["epoch"], record["offset"], "")
        listing = ok(await call(base, "GET", f"/voicebot/sessions/{session_id}/chunks", bob))
        world.chunks[session_id] = listing["chunks"]


async def upload_chunk(base: str, token: str, session_id: str, audio: bytes) -> tuple[int, Any]:
    """``POST /voicebot/chunks`` of ``audio``, as the FAB sends it."""
    form = aiohttp.FormData()
    form.add_field("session_id", session_id)
    for name, value in (("start_ms", "0"), ("end_ms", "1500"), ("duration_ms", "1500")):
        form.add_field(name, value)
    form.add_field("file", audio, filename="chunk.webm", content_type="audio/webm")
    return await call(base, "POST", f"/voicebot/chunks?session_id={session_id}", token, data=form)


async def _upload(base: str, world: World, session_id: str, audio: bytes) -> None:
    answer = ok(await upload_chunk(base, world.account, session_id, audio))
    world.audio[answer["chunk"]["sha256"]] = audio


async def _pattern(base: str, world: World) -> None:
    created = ok(
        await world.guest.call(base, "POST", "/api/sessions", json={"name": "Night groove", "state": PATTERN_STATE})
    )
    world.pattern = created["id"]
    player = Client(base, world.guest.token)
    await player.connect()
    try:
        await player.call("subscribe_on_session", {"session_id": world.pattern})
        op = {"type": "set_step", "trackId": "kick", "step": 2, "on": True}
        ack = await player.call(
            "pattern_op", {"session_id": world.pattern, "seq": 1, "client_id": "tab-one-1", "op": op}
        )
        assert ack["ok"], ack
    finally:
        await player.close()
    world.remix = ok(await call(base, "POST", f"/api/sessions/{world.pattern}/remix"))["id"]
    world.pattern_get = ok(await call(base, "GET", f"/api/sessions/{world.pattern}"))
    world.remix_get = ok(await call(base, "GET", f"/api/sessions/{world.remix}"))


async def _stream(base: str, world: World) -> None:
    guest = world.guest
    record = ok(await guest.call(base, "POST", "/api/streams", json={"title": "Speedrun", "game": "Celeste"}))
    world.stream = record["session"]["session_id"]
    path = f"/api/streams/{world.stream}"
    ok(await guest.call(base, "POST", f"{path}/state", json={"action": "start"}))
    first = ok(
        await call(
            base, "POST", f"{path}/clips", world.account, json={"note": "the skip", "submission_id": "clip-aaaa-1"}
        )
    )
    ok(await guest.call(base, "POST", f"{path}/state", json={"action": "pause"}))
    ok(await guest.call(base, "POST", f"{path}/state", json={"action": "resume"}))
    ok(
        await call(
            base,
            "POST",
            f"{path}/clips",
            world.account,
            json={"note": "<b>boss</b> 🎉", "submission_id": "clip-bbbb-2"},
        )
    )
    ok(await guest.call(base, "POST", f"{path}/clips", json={"note": "own"}))
    ok(await guest.call(base, "PATCH", f"{path}/clips/{first['clip']['clip_id']}", json={"clipped": True}))
    world.stream_record = ok(await guest.call(base, "GET", path))
    world.review = ok(await guest.call(base, "GET", f"{path}/clips"))
    world.moments = ok(await guest.call(base, "GET", f"{path}/moments"))
    mine = await call(base, "GET", f"{path}/clips/mine", world.account)
    world.mine = mine[1] if mine[0] == 200 else {}  # 397bebf had no "your clips"
    world.positions[world.stream] = (world.review["epoch"], world.review["offset"], "")


async def _history(base: str, world: World) -> None:
    guest = world.guest
    now_ms = int(time.time() * 1000)
    upload = {
        "item_id": "book-1",
        "device_id": "phone",
        "client_id": f"up-{uuid.uuid4().hex[:12]}",
        "started_at": now_ms - 3_600_000,
        "ended_at": now_ms - 3_000_000,
        "item": {"title": "Dune", "artist": "Frank Herbert", "duration_s": 3600},
    }
    ok(await guest.call(base, "POST", "/api/listening/upload", json=upload))
    world.upload = upload
    report = {
        "item_id": "song-2",
        "status": "playing",
        "device_id": "laptop",
        "position_s": 5,
        "item": {"title": "Song"},
    }
    ok(await guest.call(base, "POST", "/api/listening/report", json=report))
    listening = ok(await guest.call(base, "GET", "/api/listening"))
    world.history = listening["session_id"]
    world.positions[world.history] = (listening["epoch"], listening["offset"], "")
    world.history_sessions = ok(await guest.call(base, "GET", "/api/listening/sessions"))["sessions"]
    world.stats_query = stats_query(now_ms)
    world.stats = ok(await guest.call(base, "GET", world.stats_query))


def stats_query(now_ms: int) -> str:
    """The history's stats of its last 7 days, in a zone where ``now_ms`` is local noon (see
    ``noon_zone``): read before the upgrade and after it, they name the same days. A run across
    midnight UTC read the 7 days ending on one day, then the 7 ending on the next."""
    return "/api/listening/stats?days=7&tz=" + quote(noon_zone(now_ms), safe="/")


# Fields an answer may change between two reads of unchanged data: loading is an access, links
# are signed for the moment they are read.
VOLATILE = {"lastAccessedAt", "audio_url", "audio_url_expires_at", "orphaned", "orphan_days", "forgotten_after_s"}


def differences(old: Any, new: Any, where: str = "", volatile: frozenset[str] | set[str] = VOLATILE) -> list[str]:
    """Where ``new`` does not say what ``old`` said: every field of the old answer must read the
    same (fields a release added are not differences), lists item by item."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[str] = []
        for key, value in old.items():
            if key in volatile:
                continue
            if key not in new:
                found.append(f"{where}.{key}: gone (was {value!r:.80})")
            else:
                found += differences(value, new[key], f"{where}.{key}", volatile)
        return found
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{where}: {len(old)} items, now {len(new)}"]
        return [
            d
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for d in differences(a, b, f"{where}[{i}]", volatile)
        ]
    return [] if old == new else [f"{where}: {old!r:.80} -> {new!r:.80}"]
