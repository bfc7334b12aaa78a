"""A rule over several query parameters of the admin listing is refused as the query's, not a
body's (the route takes none), and the OpenAPI document publishes the rule with each parameter."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.admin.test_http import admin_token
from tests.helpers import ServerUnderTest
from tests.test_openapi_valid import document_of


@pytest_asyncio.fixture
async def server(reading_server: ServerUnderTest) -> ServerUnderTest:
    """One server for the module: every test here is refused, or only reads."""
    return reading_server


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ("state=active&filter=orphaned", "state and filter name the same filter"),
        ("created_from=2000&created_to=1000", "created_from is after created_to"),
    ],
)
async def test_a_rule_over_query_parameters_names_the_query(server: ServerUnderTest, query: str, rule: str) -> None:
    headers = {"Authorization": f"Bearer {admin_token(server)}"}
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/admin/sessions?{query}", headers=headers) as r:
        body = await r.json()
    assert (r.status, body["error"]) == (400, "invalid_payload"), body
    assert body["message"].startswith("query: ") and rule in body["message"], body


async def test_the_same_values_given_twice_over_are_one_filter(server: ServerUnderTest) -> None:
    headers = {"Authorization": f"Bearer {admin_token(server)}"}
    url = f"{server.url}/admin/sessions?state=orphaned&filter=orphaned&created_from=5&created_to=5"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        assert r.status == 200, await r.text()


def test_the_document_states_the_rules_with_the_parameters(tmp_path: Path) -> None:
    parameters = document_of(tmp_path)["paths"]["/admin/sessions"]["get"]["parameters"]
    described = {p["name"]: p.get("description", "") for p in parameters if p["in"] == "query"}
    for name in ("state", "filter"):
        assert "state and filter name the same filter" in described[name], described
    for name in ("created_from", "created_to"):
        assert "created_from must not be after created_to" in described[name], described
