"""The bot's ``/session`` finds a session quoted in a replied-to message in linear time, and one
user's commands are rate-limited (SESSIONHUB_VOICE_BOT_COMMANDS_PER_MIN).

The search was one pattern, ``(?:https?://\\S+?)?/session/…``, whose lazy ``\\S+?`` rescanned
the rest of the word from every ``http://``: 4 KB of ``http://`` (the most ``reply_to_text``
carries) cost ~30 ms of the event loop per command against ~0.1 ms for ordinary text, and
nothing limited how many commands one guest sent.
"""

from __future__ import annotations

import random
import re
import time

import aiohttp

from handlers.voice.bot import _find_reference
from tests.helpers import ServerUnderTest, to_window_start

# The pattern the search replaced: what it found is what the new search must find.
OLD_PATTERN = re.compile(r"(?:https?://\S+?)?/session/[0-9A-Fa-f-]{36}|[0-9A-Fa-f]{8}-[0-9A-Fa-f-]{27}")
ID = "0f3a9c1e-2b4d-4e6f-8a0b-1c2d3e4f5a6b"
PIECES = (
    "http://", "https://", "/session/", ID, ID[:20], "-", "a", "F", "0", " ", "\n", "\u00a0", "\u2003",
    "s", "x.org", "/", ":", "h", "ttp", "é", f"/session/{ID}", f"http://h/session/{ID}",
)  # fmt: skip
WORST = ("http://" * 586)[:4096]  # the auditor's reply_to_text
ORDINARY = ("see the notes at https://voice.example.org/page, then reply " * 80)[:4096]
DEFAULT_PER_MIN = 60  # SESSIONHUB_VOICE_BOT_COMMANDS_PER_MIN's default


def old_reference(text: str) -> str:
    found = OLD_PATTERN.search(text)
    return found.group(0) if found else ""


def test_the_search_finds_what_the_old_pattern_found() -> None:
    """Texts made of the pieces that matter (schemes, paths, ids, parts of ids, white space of
    several kinds, non-ASCII) give the same answer as the old pattern, and so do the examples."""
    examples = [
        f"here: https://voice.example.org/session/{ID} ok",
        f"/session/{ID}",
        f"an id {ID.upper()} alone",
        f"http://session/{ID}",  # the path starts inside the scheme's "//": no link
        f"http://a/{ID}/session/{ID}",  # an id before the path, both in the link
        f"http:///session/{ID}",  # nothing between scheme and path: the path alone
        f"https://x/session/{ID}\u00a0/session/{ID}",
        "",
        "nothing here",
    ]
    rng = random.Random(20240917)
    texts = examples + ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 12))) for _ in range(20_000)]
    for text in texts:
        assert _find_reference(text) == old_reference(text), text


def _cost_s(text: str, runs: int = 15) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        _find_reference(text)
        best = min(best, time.perf_counter() - started)
    return best


def test_the_worst_quoted_text_costs_what_ordinary_text_costs() -> None:
    """4 KB of ``http://`` against 4 KB of ordinary prose with links, timed in the same run (the
    best of several, so a busy machine does not decide): the old pattern took ~300 times as long
    on the first; now both are linear. Other repeated shapes are held to the same bound."""
    ordinary_s = _cost_s(ORDINARY)
    for worst in (WORST, "https://" * 512, ("http://x/session/" * 241)[:4096], ("http://a" + "0" * 7 + "-") * 255):
        assert len(worst) <= 4096
        ratio = _cost_s(worst) / ordinary_s
        assert ratio < 5, (worst[:20], ratio)


async def _command(
    http: aiohttp.ClientSession, server: ServerUnderTest, user: str, body: dict[str, str]
) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {server.token(user)}"}
    async with http.post(f"{server.url}/voicebot/bot/command", json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_commands_past_the_per_minute_limit_are_rate_limited(server: ServerUnderTest) -> None:
    """The auditor's command, repeated: each is answered at once, the minute's 61st is ``429
    rate_limited`` with the minute's rest (an unknown command counts too), another user is not
    held by it, and a refused ``/session`` changes nothing."""
    to_window_start(server.services.clock)
    worst = {"text": "/session", "reply_to_text": WORST}
    async with aiohttp.ClientSession() as http:
        for n in range(DEFAULT_PER_MIN - 1):
            status, body = await _command(http, server, "alice", worst)
            assert (status, body["active_session"]) == (200, None), (n, body)
        status, body = await _command(http, server, "alice", {"text": "/frobnicate"})
        assert (status, body["error"]) == (400, "invalid_payload"), body
        session_id = await server.create_session("alice")
        status, body = await _command(http, server, "alice", {"text": f"/session {session_id}"})
        assert status == 429, body
        assert body["error"] == "rate_limited" and 0 < int(str(body["retry_after_s"])) <= 60, body
        assert await server.services.voice.active_id("alice") is None
        status, body = await _command(http, server, "bob", worst)
        assert status == 200, body
