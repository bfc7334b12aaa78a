"""docs/PROTOCOL.md's routes are the served ones (the OpenAPI document, itself held to the router
by tests/test_openapi.py): every operation is documented (an API route as ``METHOD /path``, a
page by its path), and every ``METHOD /path`` PROTOCOL.md names is served, but the refusals it
gives as examples."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_openapi_valid import WEBHOOK, WEBHOOK_PATH, document_of
from tests.test_protocol_doc import PROTOCOL

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# A route written as the document writes it: ``METHOD[/METHOD…] /path`` (``GET`/`PATCH`` pairs too).
_NAMED = re.compile(r"`((?:(?:GET|POST|PUT|PATCH|DELETE)(?:/| |`, `))+)(/[^`\s?…#]*)")
_API = ("/api/", "/voicebot", "/admin/", "/telegram", "/metrics", "/openapi.json", "/healthz", "/readyz")
# Requests PROTOCOL.md names to say how they are refused (a method a route does not take).
REFUSED_EXAMPLES = {("PUT", "/api/streams"), ("GET", "/api/sessions/{}/publish")}


def _template(path: str) -> str:
    """A path with every parameter (``{id}``, ``<id>``, the webhook's secret) as ``{}``."""
    path = re.sub(r"\{[^}]+\}|<[^>]+>", "{}", path.replace(WEBHOOK_PATH, "{}"))
    return path.rstrip("/") or "/"


def _served(tmp_path: Path) -> set[tuple[str, str]]:
    spec = document_of(tmp_path, **WEBHOOK)
    return {(m.upper(), _template(p)) for p, ops in spec["paths"].items() for m in ops if m.upper() in _METHODS}


def _named() -> set[tuple[str, str]]:
    named = set()
    text = PROTOCOL.read_text(encoding="utf-8")
    for match in _NAMED.finditer(text):
        path = _template(match.group(2))
        if text[match.end()] != "…":  # not an example id cut short (`/voicebot/sessions/6BA7B810-…`)
            named |= {(method, path) for method in re.findall("|".join(_METHODS), match.group(1))}
    return named


def test_every_served_operation_is_in_protocol(tmp_path: Path) -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    named = _named()
    pages = re.findall(r"`(/[^`\s?]*)", text)
    page_templates = {_template(page) for page in pages}
    missing = set()
    for method, path in _served(tmp_path):
        api = path.startswith(_API)
        if (api and (method, path) not in named) or (not api and path not in page_templates):
            missing.add((method, path))
    assert missing == set()


def test_every_route_protocol_names_is_served(tmp_path: Path) -> None:
    served = _served(tmp_path)
    named = _named()
    assert len(named) > 60  # the routes were read
    assert named - served - REFUSED_EXAMPLES == set()
