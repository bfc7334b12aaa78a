"""The stream dashboard's export, pressed as a person would: once the page stands still.

The export form sat under the review (web/stream.html), which is drawn again at times no test
action waits for: its first drawing after the page opens, and the moments regrouped 0.4 s after
each clip (web/js/stream.js, scheduleMoments), tens to hundreds of pixels each. A press that
landed on Download just before such a drawing had its release land beside the button: the browser
sent the click to what held both, the form was not submitted, and Playwright's click, which checks
only where the press lands, returned as if it had clicked. A loaded CI machine then waited 10 s
for a download that was never asked for. The form now sits above the moments (a person's pointer
had the same trouble); the tests still press once the page says its review is drawn as it stands
(``#segments`` ``data-review`` and ``data-moments``, "settled"), which is what a person sees.
"""

from __future__ import annotations

from playwright.async_api import Download, Page, expect


async def review_settled(page: Page, *, timeout_ms: float | None = None) -> None:
    """Wait until the dashboard's review and its moments are drawn as they stand."""
    segments = page.locator("#segments")
    await expect(segments).to_have_attribute("data-review", "settled", timeout=timeout_ms)
    await expect(segments).to_have_attribute("data-moments", "settled", timeout=timeout_ms)


async def press_export(page: Page, *, tap: bool = False, settle_timeout_ms: float | None = None) -> None:
    """Press Download (a tap on a touch device) once nothing above it moves."""
    await review_settled(page, timeout_ms=settle_timeout_ms)
    button = page.locator("#export-button")
    await (button.tap() if tap else button.click())


async def downloaded(page: Page, *, tap: bool = False, settle_timeout_ms: float | None = None) -> Download:
    """Press Download once the page stands still; the file the page saves."""
    await review_settled(page, timeout_ms=settle_timeout_ms)
    async with page.expect_download() as download_info:
        await press_export(page, tap=tap)
    return await download_info.value
