"""What the pattern editor's player sounds, rendered in Chromium's Web Audio (an
OfflineAudioContext fed by the page's own Player), not heard."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_http import full_state, track

WINDOW_S = 0.005  # the render is read as the loudness and zero crossings of 5 ms windows

RENDER = """async ({state, steps, seconds, windowS}) => {
  const { Player } = await import("/static/js/pattern_audio.js");
  const rate = 22050;
  const ctx = new OfflineAudioContext(1, Math.ceil(rate * seconds), rate);
  const player = new Player(() => state, () => {});
  player.ctx = ctx;
  const sixteenth = 60 / state.tempo / 4;
  for (let step = 0; step < steps; step += 1) player.play(state, step, step * sixteenth);
  const data = (await ctx.startRendering()).getChannelData(0);
  const size = Math.round(rate * windowS);
  const windows = [];
  for (let start = 0; start + size <= data.length; start += size) {
    let energy = 0;
    let crossings = 0;
    for (let i = start; i < start + size; i += 1) {
      energy += data[i] * data[i];
      if (i > start && (data[i - 1] < 0) !== (data[i] < 0)) crossings += 1;
    }
    windows.push([Math.sqrt(energy / size), crossings]);
  }
  return windows;
}"""


async def render(tab: Tab, state: dict[str, Any], steps: int, seconds: float) -> list[tuple[float, int]]:
    page = await tab.open("/")
    windows: list[list[float]] = await page.evaluate(
        RENDER, {"state": state, "steps": steps, "seconds": seconds, "windowS": WINDOW_S}
    )
    return [(w[0], int(w[1])) for w in windows]


def loudness(windows: list[tuple[float, int]], from_s: float, to_s: float) -> float:
    chosen = windows[round(from_s / WINDOW_S) : round(to_s / WINDOW_S)]
    return max(rms for rms, _ in chosen)


async def test_a_tied_step_holds_the_note_before_it_instead_of_striking_again(tab: Tab) -> None:
    # 120 BPM: a sixteenth is 0.125 s. Steps 0-2 are one note (1 and 2 tied), step 4 strikes
    # anew, and step 8's tie has no note before it to hold (step 7 is off), so it strikes.
    steps = [i in (0, 1, 2, 4, 8) for i in range(16)]
    locks: list[Any] = [None] * 16
    locks[1] = locks[2] = locks[8] = {"tie": True}
    lead = track(sampleId="synth:lead", steps=steps, parameterLocks=locks, volume=1)
    windows = await render(tab, full_state(tracks=[lead]), steps=16, seconds=1.2)
    struck = loudness(windows, 0.01, 0.03)
    # Held through steps 1 and 2: as loud just before each as just after (a new strike would
    # come after a note decayed to almost nothing: about 1/50 of it).
    for boundary in (0.125, 0.25):
        assert loudness(windows, boundary - 0.015, boundary - 0.005) > 0.5 * struck
        assert loudness(windows, boundary + 0.005, boundary + 0.015) < 1.2 * struck
    # Released after the tied steps (90 % of their 0.375 s), and struck again at steps 4 and 8.
    assert loudness(windows, 0.48, 0.495) < 0.05 * struck
    for strike in (0.5, 1.0):
        assert loudness(windows, strike - 0.02, strike - 0.005) < 0.1 * struck
        assert loudness(windows, strike + 0.005, strike + 0.02) > 0.5 * struck


async def test_an_fm_voice_sounds_as_its_tracks_fm_params(tab: Tab) -> None:
    # tone:fm-bass is 55 Hz. Without modulation it is a plain sine (11 zero crossings in 0.1 s);
    # Keyboardia's deepest modulation makes the same note far brighter.
    def fm_track(fm: dict[str, float]) -> dict[str, Any]:
        return track(sampleId="tone:fm-bass", steps=[True] + [False] * 15, fmParams=fm, volume=1)

    plain = await render(tab, full_state(tracks=[fm_track({"harmonicity": 1, "modulationIndex": 0})]), 1, 0.15)
    bright = await render(tab, full_state(tracks=[fm_track({"harmonicity": 3, "modulationIndex": 20})]), 1, 0.15)
    # 10 ms to 110 ms (a crossing that falls between two windows is missed: rare at 55 Hz).
    plain_crossings = sum(c for _, c in plain[2:22])
    bright_crossings = sum(c for _, c in bright[2:22])
    assert 8 <= plain_crossings <= 13, plain_crossings
    assert bright_crossings > 3 * plain_crossings, (plain_crossings, bright_crossings)


async def test_a_tracks_own_swing_moves_its_off_beats(tab: Tab) -> None:
    # The pattern has no swing; the track's full swing strikes step 1 half a sixteenth late
    # (0.125 s + 0.0625 s), as Keyboardia blends the two.
    lead = track(sampleId="synth:lead", steps=[True, True] + [False] * 14, swing=100, volume=1)
    windows = await render(tab, full_state(tracks=[lead]), steps=2, seconds=0.4)
    struck = loudness(windows, 0.01, 0.03)
    assert loudness(windows, 0.165, 0.18) < 0.1 * struck
    assert loudness(windows, 0.1925, 0.2075) > 0.5 * struck


# Every Web Audio source the page starts, with how late it was asked for (s): the scheduler's
# event list as the audio thread got it.
RECORD_STARTS = """(() => {
  const start = AudioScheduledSourceNode.prototype.start;
  window.__late = [];
  AudioScheduledSourceNode.prototype.start = function (when = 0, ...rest) {
    window.__late.push(this.context.currentTime - when);
    return start.call(this, when, ...rest);
  };
})();"""


async def test_a_page_held_up_skips_the_steps_it_missed_instead_of_a_burst(server: ServerUnderTest, tab: Tab) -> None:
    """After a long task (1 s here) the scheduler struck every step it had missed at once: about
    twelve kicks in the same instant at 180 BPM."""
    kick = track(steps=[True] * 16)
    async with aiohttp.ClientSession(base_url=server.url) as http:
        async with http.post("/api/sessions", json={"state": full_state(tracks=[kick], tempo=180)}) as r:
            session_id = (await r.json())["id"]
    await tab.page.add_init_script(RECORD_STARTS)
    page = await tab.open(f"/s/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await page.locator("#play").click()
    await page.wait_for_function("() => window.__late.length >= 4")  # playing
    held = await page.evaluate(
        "() => { const end = performance.now() + 1000; while (performance.now() < end); return window.__late.length; }"
    )
    await page.wait_for_function("(held) => window.__late.length >= held + 8", arg=held)  # after the hold
    late = await page.evaluate("() => window.__late")
    await page.locator("#play").click()
    # Struck after the hold, the missed steps were up to ~1 s late (a burst); skipped, none is.
    # The bound leaves room for a page's timer late by tens of ms on a busy machine (73 ms seen).
    assert [s for s in late if s > 0.25] == []


async def test_the_editor_adds_the_fm_voices_it_plays(server: ServerUnderTest, tab: Tab) -> None:
    """Playback has FM voices (tone:fm-*), but 'Add a track' offered none: only a pattern made
    elsewhere (Keyboardia's, the API) had one."""
    async with aiohttp.ClientSession(base_url=server.url) as http:
        async with http.post("/api/sessions", json={"state": full_state()}) as r:
            session_id = (await r.json())["id"]
    page = await tab.open(f"/s/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    for label in ("FM bass", "FM e-piano", "FM bell"):
        await page.locator("#add-sample").select_option(label=label)
        await page.locator("#add-track").click()
    await expect(page.locator(".track-row")).to_have_count(4)
    async with aiohttp.ClientSession(base_url=server.url) as http:
        for _ in range(100):  # stored once the three ops are applied
            async with http.get(f"/api/sessions/{session_id}") as r:
                tracks = (await r.json())["state"]["tracks"]
            if len(tracks) == 4:
                break
            await asyncio.sleep(0.05)
    assert [(t["sampleId"], t["name"]) for t in tracks[1:]] == [
        ("tone:fm-bass", "FM bass"),
        ("tone:fm-epiano", "FM e-piano"),
        ("tone:fm-bell", "FM bell"),
    ]
