"""The dashboard says how much of a long export has arrived (a stream's cap goes up to a
million clips: its export is tens of MB), in steps a screen reader can follow."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import started, store_clips, stored_clip

CLIPS = 3_000
NOTE = "n" * 1_500  # ~4.6 MB of CSV: many reads of the body

# Every text the export's status shows, in order (the status is a live region).
WATCH_STATUS = """() => {
  const status = document.getElementById("export-status");
  window.__statuses = [];
  new MutationObserver(() => window.__statuses.push(status.textContent)).observe(status, {
    childList: true, characterData: true, subtree: true,
  });
}"""


async def test_a_long_export_says_how_much_has_arrived(
    server: ServerUnderTest, tab: Tab, clients: list[Client], tmp_path: Path
) -> None:
    session_id, _ = await started(server, clients)
    await store_clips(
        server,
        session_id,
        [
            stored_clip(seq, segment_index=1, offset_ms=seq * 700, note=f"{seq} {NOTE}", clipped=False)
            for seq in range(1, CLIPS + 1)
        ],
    )
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await page.evaluate(WATCH_STATUS)
    await page.locator("#format-select").select_option("csv")
    async with page.expect_download() as download_info:
        await page.locator("#export-button").focus()
        await page.keyboard.press("Enter")  # by keyboard, as a form's submit
    saved = tmp_path / "export.csv"
    await (await download_info.value).save_as(saved)
    await expect(page.locator("#export-status")).to_have_text("Export downloaded.")
    statuses: list[str] = await page.evaluate("window.__statuses")
    size_mb = f"{saved.stat().st_size / 1_000_000:.1f}"
    progress = [re.fullmatch(r"Downloading: (\d+)% \(([\d.]+) of ([\d.]+) MB\)…", s) for s in statuses]
    shown = [m for m in progress if m is not None]
    assert shown, statuses  # the file arrived in many reads: at least one step was said
    assert all(m.group(3) == size_mb for m in shown), (statuses, size_mb)  # of the whole file
    percents = [int(m.group(1)) for m in shown]
    assert percents == sorted(set(percents)) and percents[-1] < 100, statuses  # steps, each once
    assert len(shown) <= 10, statuses  # a tenth at a time, not one per read
    assert statuses[0] == "Preparing the export…" and statuses[-1] == "Export downloaded.", statuses
    assert len(saved.read_text(encoding="utf-8").splitlines()) == CLIPS + 1
