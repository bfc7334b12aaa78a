"""``sessionhub admin metrics | export | orphans`` against a live server, as an operator runs it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server
from tests.helpers import CHILD_TEST_TIMEOUT_S, SECRET, ServerUnderTest
from tests.admin.test_http import DAY_MS, LONG_TTL_S, admin_token

ROOT = Path(__file__).resolve().parents[2]


async def cli(*args: str, token: str | None = None) -> tuple[int, str, str]:
    env = {**os.environ, "SESSIONHUB_JWT_SECRET": SECRET}
    env.pop("SESSIONHUB_ADMIN_TOKEN", None)
    if token:
        env["SESSIONHUB_ADMIN_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), CHILD_TEST_TIMEOUT_S / 3)
    return int(process.returncode or 0), out.decode(), err.decode()


@pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)  # six CLI children, one after the other
async def test_admin_cli_metrics_export_and_orphans(server: ServerUnderTest, tmp_path: Path) -> None:
    orphan = await server.create_session("alice")
    server.services.clock.shift_ms = 100 * DAY_MS
    fresh = await server.create_session("bob")
    token = server.token("ops", perms=(), ttl_s=LONG_TTL_S)
    code, _, err = await cli("admin", "--url", server.url, "metrics", token=token)
    assert code == 1 and "403" in err  # a token without admin is refused
    admin = admin_token(server)
    code, out, _ = await cli("admin", "--url", server.url, "metrics", token=admin)
    assert code == 0 and json.loads(out)["total"]["sessions"] == 2
    target = tmp_path / "orphans.jsonl"
    code, _, err = await cli("admin", "--url", server.url, "export", "--orphans", "-o", str(target), token=admin)
    assert code == 0, err
    assert [json.loads(line).get("session_id") for line in target.read_text().splitlines()[1:]] == [orphan]
    code, out, _ = await cli("admin", "--url", server.url, "orphans", "--days", "90", token=admin)
    assert json.loads(out)["count"] == 1
    code, _, err = await cli("admin", "--url", server.url, "orphans", "--delete", token=admin)
    assert code == 2 and "--confirm" in err
    code, out, _ = await cli("admin", "--url", server.url, "orphans", "--delete", "--confirm", "1", token=admin)
    assert code == 0 and json.loads(out.splitlines()[-1]) == {"done": True, "deleted": 1, "total": 1}
    assert await server.services.sessions.meta(orphan) is None
    assert await server.services.sessions.meta(fresh) is not None


@pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)
async def test_admin_cli_orphans_default_to_the_servers_threshold_and_bad_input_is_one_line(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """Without --days the CLI counted 90-day orphans whatever the server's threshold (the
    dashboard's); --days 0 was taken as "not given"; an unwritable --output or a --url that is
    no address ended in a traceback."""
    srv = await start_server(redis_process.url, tmp_path / "node", admin_orphan_days=30)
    try:
        old = await srv.create_session("alice")
        srv.services.clock.shift_ms = 40 * DAY_MS
        admin = admin_token(srv)
        code, out, err = await cli("admin", "--url", srv.url, "orphans", token=admin)
        assert code == 0, err
        assert json.loads(out) == {"dry_run": True, "older_than_days": 30, "count": 1}
        for args in (("orphans", "--days", "0"), ("export", "--orphans", "--days", "0"), ("export", "--days", "-3")):
            code, _, err = await cli("admin", "--url", srv.url, *args, token=admin)
            assert code == 2 and "is not a number of days in 1..36500" in err, (args, err)
        missing = tmp_path / "no" / "such" / "folder" / "x.ndjson"
        code, _, err = await cli("admin", "--url", srv.url, "export", "-o", str(missing), token=admin)
        assert code == 1 and err.strip().count("\n") == 0 and "cannot write" in err, err
        code, _, err = await cli("admin", "--url", "not-a-url", "metrics", token=admin)
        assert code == 2 and "Traceback" not in err and "is not an http:// or https:// address" in err, err
        assert await srv.services.sessions.meta(old) is not None
    finally:
        await srv.stop()
