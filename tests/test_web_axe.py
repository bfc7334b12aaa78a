"""axe-core on every page, at a phone's size and a desktop's: no serious or critical violation.

axe-core comes from tools/web (npm ci by scripts/bootstrap.sh test) and is injected by Playwright;
each page is a test of its own, at both sizes, each in a fresh context of the one browser.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.browser import new_tab
from tests.helpers import Client, ServerUnderTest
from tests.web_pages import DESKTOP, PAGES, PHONE, visit

AXE = Path(__file__).resolve().parent.parent / "tools" / "web" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = {"serious", "critical"}
RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    targets: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
  }));
}"""


def axe_source() -> str:
    if not AXE.exists():
        reason = "axe-core is installed by scripts/bootstrap.sh test (npm ci in tools/web)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return AXE.read_text(encoding="utf-8")


# A test per page (both sizes): one test of every page took 30 s, and the last worker to pick it
# up held the whole suite's end for it.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(PAGES))
async def test_no_page_has_a_serious_accessibility_violation(
    name: str, server: ServerUnderTest, browser: Browser, clients: list[Client]
) -> None:
    source = axe_source()
    found: list[str] = []
    for size_name, size in (("phone", PHONE), ("desktop", DESKTOP)):
        # The page's CSP forbids inline scripts; only axe's injection needs it lifted.
        tab = await new_tab(browser, server, bypass_csp=True)
        try:
            await tab.page.set_viewport_size(size)
            page = await visit(tab, server, clients, name)
            await page.add_script_tag(content=source)
            violations = await page.evaluate(RUN_AXE)
            found += [
                f"{name} ({size_name}): {v['impact']} {v['id']} — {v['help']}: {v['targets']}"
                for v in violations
                if v["impact"] in BLOCKING
            ]
            assert not tab.errors, tab.errors
        finally:
            await tab.page.context.close()
    assert not found, "\n".join(found)
