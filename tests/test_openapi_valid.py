"""The OpenAPI document is valid OpenAPI 3.1, on every version of pydantic pyproject allows.

Kept apart from tests/test_openapi.py (schemathesis and its fuzzing) so that `make
test-versions` runs it on the lowest and newest sets with one small tool more: pydantic 2.6 wrote
a ``default: null`` into a number's schema that later versions do not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openapi_spec_validator import OpenAPIV31SpecValidator

from handlers.openapi_document import build_document
from handlers.openapi_registry import installed
from server.app import build_app
from server.identity import token_service
from server.services import build_services, connect_redis
from tests import helpers

WEBHOOK_PATH = "hook-0123456789abcdef"
WEBHOOK_SECRET = "secret-0123456789abcdef"
# The settings of a node with the Telegram webhook (its secret token is required with its path).
WEBHOOK: dict[str, Any] = {"voice_telegram_webhook_path": WEBHOOK_PATH, "voice_telegram_secret_token": WEBHOOK_SECRET}


def document_of(tmp: Path, **overrides: Any) -> dict[str, Any]:
    """The document a server with these settings serves (building the app needs no Redis)."""
    server_settings = helpers.test_settings("redis://127.0.0.1:9/0", tmp, **overrides)
    services = build_services(
        server_settings, redis=connect_redis(server_settings.redis_url), tokens=token_service(server_settings)
    )
    return build_document(
        installed(build_app(server_settings, services=services)), list_limit=server_settings.list_limit
    )


def test_the_document_passes_the_openapi_validator(tmp_path: Path) -> None:
    spec = document_of(tmp_path, **WEBHOOK)
    assert [error.message for error in OpenAPIV31SpecValidator(spec).iter_errors()] == []
