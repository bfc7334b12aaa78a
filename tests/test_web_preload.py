"""Every page names, in its <head>, every module its scripts import, however deep (modulepreload).

Without the hints a browser learns of a module only once the one importing it has arrived: on a
slow phone network (2 s a round trip) ``/history`` asked for ``client.js`` at 8.4 s and for the
Socket.IO client at 11.3 s, one round trip per level of imports. The graph is read from the JS
files here, so a new import without its hint fails, and so does a hint for a module no longer
imported (bytes a phone would fetch for nothing); a browser loading each page checks the reading.
"""

from __future__ import annotations

import posixpath
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from playwright.async_api import Request

from tests.browser import Tab

WEB = Path(__file__).resolve().parent.parent / "web"
STATIC = "/static/"
PAGES = sorted(path.name for path in WEB.glob("*.html"))
# Where each page is served (handlers.web_pages.add_page callers); the id pages with any id.
ROUTES = {
    "admin.html": "/admin",
    "api-docs.html": "/api-docs",
    "history.html": "/history",
    "index.html": "/",
    "pattern.html": "/patterns",
    "player.html": "/player",
    "session.html": "/session",
    "stream.html": "/streams/00000000-0000-4000-8000-000000000000",
    "streams.html": "/streams",
    "tg_auth.html": "/tg_auth",
    "watch.html": "/watch/00000000-0000-4000-8000-000000000000",
}
# A static import or re-export at the start of a line (a comment line starts with // or *):
# `import {a,\n b} from "./x.js"`, `import "./x.js"`, `export {a} from "./x.js"`. A string after
# `export const` is no specifier: quotes end the search before any `from`.
IMPORT = re.compile(
    r"""^\s*(?:import|export)\b[^;"'`()]*?\bfrom\s*["']([^"']+)["']|^\s*import\s*["']([^"']+)["']""", re.M
)
DYNAMIC = re.compile(r"""\bimport\s*\(""")


class HeadTags(HTMLParser):
    """A page's module scripts and modulepreload hints, by URL."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.preloads: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and named.get("type") == "module" and named.get("src"):
            self.scripts.append(str(named["src"]))
        if tag == "link" and named.get("rel") == "modulepreload":
            self.preloads.append(str(named.get("href")))


def head_tags(page: str) -> HeadTags:
    tags = HeadTags()
    tags.feed((WEB / page).read_text())
    return tags


def imports(url: str) -> list[str]:
    """The URLs the module at ``url`` imports statically, resolved against it."""
    source = (WEB / url.removeprefix(STATIC)).read_text()
    assert not DYNAMIC.search(source), f"{url}: a dynamic import: teach this test (and its hints) about it"
    specifiers = [left or right for left, right in IMPORT.findall(source)]
    assert all(s.startswith(("./", "../")) for s in specifiers), f"{url}: only relative imports are ours: {specifiers}"
    return [posixpath.normpath(posixpath.join(posixpath.dirname(url), s)) for s in specifiers]


def module_graph(entries: list[str]) -> set[str]:
    """Every module ``entries`` import, transitively (entries not included unless imported)."""
    found: set[str] = set()
    todo = [url for entry in entries for url in imports(entry)]
    for _ in range(1000):  # a bound well past the number of files in web/
        if not todo:
            return found
        url = todo.pop()
        if url not in found:
            found.add(url)
            todo.extend(imports(url))
    raise AssertionError("the import graph did not end")


def expected_preloads(page: str) -> set[str]:
    tags = head_tags(page)
    return module_graph(tags.scripts) - set(tags.scripts)


def test_the_import_reader() -> None:
    source = (
        'import {\n  a,\n  b,\n} from "./client.js";\nimport "./side.js";\nexport { c } from "../vendor/x.js";\n'
        '// import { d } from "./commented.js";\n * a device link from "Link another device"\n'
        'export const LABEL = "not/a/module.js";\nconst s = `import { e } from "./in_string.js"`;\n'
    )
    specifiers = [left or right for left, right in IMPORT.findall(source)]
    assert specifiers == ["./client.js", "./side.js", "../vendor/x.js"]


@pytest.mark.parametrize("page", PAGES)
def test_every_imported_module_is_preloaded(page: str) -> None:
    tags = head_tags(page)
    assert tags.scripts, f"{page} loads no module"
    expected = expected_preloads(page)
    assert sorted(set(tags.preloads)) == sorted(expected), (
        f'{page}: its <head> must say <link rel="modulepreload" href=...> for exactly the modules its '
        f"scripts import (missing {sorted(expected - set(tags.preloads))}, "
        f"not imported {sorted(set(tags.preloads) - expected)})"
    )
    assert len(tags.preloads) == len(set(tags.preloads)), f"{page}: a hint given twice"
    for url in tags.preloads:  # same origin (the CSP's 'self') and a file that is there
        assert url.startswith(STATIC) and (WEB / url.removeprefix(STATIC)).is_file(), url


def test_every_page_has_a_route() -> None:
    assert sorted(ROUTES) == PAGES


async def test_the_browser_fetches_what_the_graph_says(tab: Tab) -> None:
    for page, route in sorted(ROUTES.items()):
        asked: list[str] = []

        def record(request: Request, into: list[str] = asked) -> None:
            path = request.url.removeprefix(tab.base_url)
            if path.endswith(".js"):
                into.append(path)

        tab.page.on("request", record)
        await tab.page.goto(tab.base_url + route, wait_until="load")
        tab.page.remove_listener("request", record)
        tags = head_tags(page)
        assert set(asked) == module_graph(tags.scripts) | set(tags.scripts), page
        assert len(asked) == len(set(asked)), f"{page}: a module fetched twice (a hint the page did not use?)"
