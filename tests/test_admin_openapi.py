"""OpenAPI 3.1 generated from the request models; schemathesis holds a live server to it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from auth.claims import Permission
from handlers.admin.openapi import build_spec
from server.identity import token_service
from tests import helpers
from tests.helpers import SECRET, RedisProcess, ServerUnderTest, free_port

ROOT = Path(__file__).resolve().parent.parent
schema = schemathesis.openapi.from_dict(build_spec())


@pytest.fixture(scope="module")
def live_url(redis_process: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_process.url,
        "SESSIONHUB_PORT": str(port),
        "SESSIONHUB_JWT_SECRET": SECRET,
        "SESSIONHUB_DATA_DIR": str(tmp_path_factory.mktemp("openapi")),
        "SESSIONHUB_INPROCESS_WORKERS": "0",
        "SESSIONHUB_LOG_LEVEL": "WARNING",
        "SESSIONHUB_ADMIN_ACTIONS_PER_MIN": "100000",
    }
    process = subprocess.Popen([sys.executable, "-m", "server", "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def admin_headers(redis_process: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tokens = token_service(helpers.test_settings(redis_process.url, tmp_path_factory.mktemp("t")))
    token, _ = tokens.mint(user_id="fuzzer", now_s=time.time(), ttl_s=3600, perms=(Permission.ADMIN,))
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_admin_route_holds_its_schema(
    case: schemathesis.Case, live_url: str, admin_headers: dict[str, str]
) -> None:
    case.call_and_validate(
        base_url=live_url,
        headers=admin_headers,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance],
        timeout=30,
    )


async def test_the_document_covers_every_admin_route_and_is_served(server: ServerUnderTest) -> None:
    spec = build_spec()
    documented = {(method.upper(), path) for path, methods in spec["paths"].items() for method in methods}
    registered = {
        (route.method, route.resource.canonical)
        for route in server.app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and (
            route.resource.canonical.startswith("/admin/") or route.resource.canonical in ("/metrics", "/openapi.json")
        )
    }
    assert documented == registered
    async with aiohttp.ClientSession() as http, http.get(server.url + "/openapi.json") as response:
        assert response.status == 200
        assert (await response.json())["openapi"] == "3.1.0"
    properties = spec["paths"]["/admin/orphans/delete"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert properties["additionalProperties"] is False  # the model's extra="forbid", not a hand-written copy
