"""docs/PROTOCOL.md states exactly the wire codes of protocol.errors.ErrorCode, with their statuses;
README.md's configuration table names exactly the variables Settings reads, with their defaults;
every Socket.IO event the server registers is documented."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

import pytest
from pydantic import AliasChoices

from handlers.socket_router import SocketRouter
from protocol.errors import ErrorCode
from server.app import build_app
from server.identity import token_service
from server.services import build_services, connect_redis
from server.settings import Settings
from tests import helpers

PROTOCOL = Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md"
_ROW = re.compile(r"^\| `([a-z_]+)` \| (\d{3}) \|", re.MULTILINE)


def test_the_error_table_is_the_enum() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    table = text[text.index("| code | HTTP | meaning |") :]
    table = table[: table.index("\n\n")]
    documented = {code: int(status) for code, status in _ROW.findall(table)}
    assert documented == {member.value: member.http_status for member in ErrorCode}


README = PROTOCOL.parent.parent / "README.md"
# Read by a library, not by Settings: prometheus-client takes its folder from the environment;
# and by the admin CLI alone (tests/test_contract_docs_config.py finds every such read).
READ_BY_LIBRARIES = {"PROMETHEUS_MULTIPROC_DIR", "SESSIONHUB_ADMIN_TOKEN"}
_CONFIG_ROW = re.compile(r"^\| (`[^|]*`) \| ([^|]*) \|", re.MULTILINE)
_VARIABLE = re.compile(r"`([A-Z][A-Z0-9_]*)`")


def _configuration_rows() -> dict[str, tuple[list[str], str]]:
    """README's configuration table: each variable a row names, with all the row names and its default cell."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)]
    rows: dict[str, tuple[list[str], str]] = {}
    for first, default in _CONFIG_ROW.findall(section):
        names = _VARIABLE.findall(first)
        for name in names:
            rows[name] = (names, default.strip())
    return rows


def _environment_names() -> dict[str, str]:
    """Every variable Settings reads, with the field it sets (both names of an aliased one)."""
    names: dict[str, str] = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update({choice: field_name for choice in alias.choices if isinstance(choice, str)})
        else:
            names[f"SESSIONHUB_{field_name.upper()}"] = field_name
    return names


def test_the_configuration_table_is_what_settings_read() -> None:
    documented = set(_configuration_rows())
    read = _environment_names()
    # A field read under two names (REDIS_URL or SESSIONHUB_REDIS_URL) is documented under one.
    documented_fields = {read[name] for name in documented if name in read}
    assert set(Settings.model_fields) - documented_fields == set()
    assert documented - set(read) - READ_BY_LIBRARIES == set()


def _spellings(value: object) -> set[str]:
    """How a default may be written in the table: `8080`, `0.5`, `5` for 5.0, `true`, `./var`."""
    if isinstance(value, bool):
        return {str(value).lower()}
    if isinstance(value, float) and value.is_integer():
        return {str(value), str(int(value))}
    if isinstance(value, Enum):
        return {str(value.value)}
    if isinstance(value, PurePath):
        return {str(value), f"./{value}"}
    return {str(value)}


def test_every_documented_default_is_the_real_one() -> None:
    read = _environment_names()
    checked = 0
    for name, (names, cell) in _configuration_rows().items():
        field = Settings.model_fields.get(read.get(name, ""))
        if field is None or field.default_factory is not None or field.default is None:
            continue  # a library's, or a default said in words (computed, generated, unset)
        # The cell's leading literals, before any explanation: `20` / `40` for a row of two.
        shown = re.findall(r"`([^`]*)`", re.split(r"[:(]", cell)[0])
        if len(shown) != len(names):
            continue  # a default said in words
        assert shown[names.index(name)] in _spellings(field.default), (name, cell, field.default)
        checked += 1
    assert checked > 90  # the table was read, not skipped


def _registered_events(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, bool]:
    """Every Socket.IO event the app registers, with whether it is session-scoped (building the
    app needs no Redis)."""
    seen: dict[str, bool] = {}
    register = SocketRouter.on

    def recording(self: SocketRouter, event: str, handler: Any, *, session_scoped: bool = True, **kw: Any) -> None:
        seen[event] = session_scoped
        register(self, event, handler, session_scoped=session_scoped, **kw)

    monkeypatch.setattr(SocketRouter, "on", recording)
    settings = helpers.test_settings("redis://127.0.0.1:9/0", tmp_path)
    build_app(
        settings,
        services=build_services(settings, redis=connect_redis(settings.redis_url), tokens=token_service(settings)),
    )
    return seen


def test_every_event_the_server_takes_is_documented(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    events = _registered_events(monkeypatch, tmp_path)
    assert len(events) > 20  # the registrations were seen
    assert {name for name in events if f"`{name}`" not in text} == set()
    # The events that take no field answer a missing payload as {}: the order of checks says which.
    no_field = re.search(r"the \w+ events that take no field, ((?:`\w+`,?\s+)+and\s+`\w+`)", text)
    assert no_field is not None
    # Of the events not scoped to a session, renew_token is the one that takes a field (its token).
    unscoped = {name for name, scoped in events.items() if not scoped}
    assert set(re.findall(r"`(\w+)`", no_field.group(1))) == unscoped - {"renew_token"}
