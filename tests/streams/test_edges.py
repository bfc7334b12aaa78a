"""Stream sessions at their edges (issue 21): permissions, notes as people count them, exports
past 999 events, the delayed viewer after Pause/End, the breaks-kept timeline, CSV for Excel."""

from __future__ import annotations

from typing import Any

import aiohttp

from auth.claims import Permission
from tests.streams.helpers import connect, create_stream, http, started
from tests.helpers import Client, ServerUnderTest


def _token(server: ServerUnderTest, user: str, *perms: Permission) -> str:
    return server.token(user, perms=perms)


async def test_mutations_need_update_and_admin_grants_all(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await create_stream(server)
    read_only = _token(server, "alice", Permission.READ_OWN)
    status, body = await http(
        server, "POST", f"/api/streams/{session_id}/state", token=read_only, json={"action": "start"}
    )
    assert (status, body["error"]) == (403, "forbidden"), body
    admin = _token(server, "operator", Permission.ADMIN)
    status, body = await http(server, "POST", f"/api/streams/{session_id}/state", token=admin, json={"action": "start"})
    assert (status, body["state"]) == (200, "active"), body
    # The admin acts as the owner, and its dashboard says so; another user is not the owner.
    assert (await http(server, "GET", f"/api/streams/{session_id}", token=admin))[1]["is_owner"] is True
    other = _token(server, "bob", Permission.READ_OWN)
    assert (await http(server, "GET", f"/api/streams/{session_id}", token=other))[1]["is_owner"] is False

    ack = await _clip(server, clients, session_id, "viewer-1", "nice")
    clip_id = ack["clip"]["clip_id"]
    path = f"/api/streams/{session_id}/clips/{clip_id}"
    status, body = await http(server, "PATCH", path, token=read_only, json={"clipped": True})
    assert (status, body["error"]) == (403, "forbidden")
    status, body = await http(server, "DELETE", path, token=read_only)
    assert (status, body["error"]) == (403, "forbidden")
    status, body = await http(server, "PATCH", path, token=admin, json={"clipped": True})
    assert (status, body["clip"]["clipped"]) == (200, True), body
    status, body = await http(server, "GET", f"/api/streams/{session_id}/clips", token=admin)
    assert (status, body["clip_count"]) == (200, 1)
    status, body = await http(server, "DELETE", path, token=admin)
    assert (status, body["deleted"]) == (200, True)

    owner = Client(server.url, read_only)
    clients.append(owner)
    await owner.connect()
    ack = await owner.call("stream_set_state", {"session_id": session_id, "action": "pause"})
    assert (ack["ok"], ack["error"]) == (False, "forbidden")
    # Not found still comes before forbidden.
    missing = "00000000-0000-4000-8000-000000000000"
    status, body = await http(server, "POST", f"/api/streams/{missing}/state", token=read_only, json={"action": "end"})
    assert (status, body["error"]) == (404, "session_not_found")


async def test_note_counts_what_people_see_with_a_byte_cap(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id, _ = await started(server, clients, title="Flags")
    flags = "\U0001f1eb\U0001f1f7" * 100  # 100 flags, 200 code points
    viewer = await connect(server, clients, "viewer-1")
    ack = await viewer.call("clip_submit", {"session_id": session_id, "note": flags})
    assert ack["ok"] is True and ack["clip"]["note"] == flags, ack
    server.services.clock.shift_ms = 10_000  # past the cooldown
    try:
        ack = await viewer.call("clip_submit", {"session_id": session_id, "note": flags + "!"})
        assert (ack["ok"], ack["error"]) == (False, "invalid_payload")
        zalgo = "a" + "\u0301" * 1500  # one character on screen, 3,001 bytes
        ack = await viewer.call("clip_submit", {"session_id": session_id, "note": zalgo})
        assert (ack["ok"], ack["error"]) == (False, "invalid_payload")
    finally:
        server.services.clock.shift_ms = 0


async def _clip(server: ServerUnderTest, clients: list[Client], session_id: str, user: str, note: str = "") -> Any:
    viewer = await connect(server, clients, user)
    return await viewer.call("clip_submit", {"session_id": session_id, "note": note})


async def _acted(owner: Client, session_id: str, action: str) -> None:
    """The owner's ``action`` on the stream (start, pause, resume, end), answered ok."""
    assert (await owner.call("stream_set_state", {"session_id": session_id, "action": action}))["ok"]


async def test_delayed_viewer_clicks_after_pause_and_end_belong_to_the_segment(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    clock = server.services.clock
    session_id, owner = await started(server, clients, viewer_delay_s=30)
    try:
        clock.shift_ms = 100_000
        await _acted(owner, session_id, "pause")
        clock.shift_ms = 120_000  # viewers see 1:30 of segment 1
        ack = await _clip(server, clients, session_id, "v1")
        assert ack["ok"] is True, ack
        clip = ack["clip"]
        assert clip["segment_index"] == 1 and abs(clip["offset_ms"] - 90_000) < 1_000
        assert clip["stream_offset_ms"] == clip["offset_ms"]
        clock.shift_ms = 131_000  # the delay has passed: viewers see the break
        ack = await _clip(server, clients, session_id, "v2")
        assert (ack["ok"], ack["error"], ack["state"]) == (False, "invalid_state", "paused")
        clock.shift_ms = 200_000
        await _acted(owner, session_id, "resume")
        clock.shift_ms = 260_000
        await _acted(owner, session_id, "end")
        clock.shift_ms = 280_000  # viewers see 0:50 of segment 2
        ack = await _clip(server, clients, session_id, "v3")
        assert ack["ok"] is True, ack
        clip = ack["clip"]
        assert clip["segment_index"] == 2 and abs(clip["offset_ms"] - 50_000) < 1_000
        assert abs(clip["stream_offset_ms"] - 150_000) < 2_000
    finally:
        clock.shift_ms = 0


async def test_a_delayed_click_after_a_very_short_last_segment_belongs_to_the_one_it_saw(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """Paused, resumed and ended within the delay (a mistaken Resume): a click the viewer pressed
    at 1:30 of segment 1 was stored at 0:00 of segment 2, which it never saw (audit exports)."""
    clock = server.services.clock
    begun_s = clock.host_s()

    def at(ms: int) -> None:
        """The clock at ``ms`` after the start, whatever time the steps took: segment 2 is 50 ms
        long, and a loaded host took over a second between End and a click meant to be seen in
        the second before segment 2 (answered "ended")."""
        clock.shift_ms = ms - int((clock.host_s() - begun_s) * 1000)

    session_id, owner = await started(server, clients, viewer_delay_s=30)
    v1, v2, v3 = [await connect(server, clients, user) for user in ("v1", "v2", "v3")]
    try:
        for at_ms, action in ((100_000, "pause"), (102_000, "resume"), (102_050, "end")):
            at(at_ms)
            await _acted(owner, session_id, action)
        at(120_000)  # viewers see 1:30 of segment 1
        ack = await v1.call("clip_submit", {"session_id": session_id, "note": ""})
        assert ack["ok"] is True, ack
        assert ack["clip"]["segment_index"] == 1 and abs(ack["clip"]["offset_ms"] - 90_000) < 1_000, ack
        assert ack["clip"]["stream_offset_ms"] == ack["clip"]["offset_ms"]
        at(131_000)  # viewers see the break before segment 2
        ack = await v2.call("clip_submit", {"session_id": session_id, "note": ""})
        assert ack["ok"] is True and ack["clip"]["segment_index"] == 2, ack
        at(133_000)  # the delay has passed the end
        ack = await v3.call("clip_submit", {"session_id": session_id, "note": ""})
        assert (ack["ok"], ack["error"]) == (False, "invalid_state"), ack
    finally:
        clock.shift_ms = 0


async def _ended_with_a_break(server: ServerUnderTest, clients: list[Client], notes: list[str]) -> str:
    """Clips at 0:20, 0:40 of segment 1 (100 s), a 60 s break, then one per note at 0:20 of segment 2."""
    clock = server.services.clock
    session_id, owner = await started(server, clients, title="Breaks")
    try:
        for number, at_ms in enumerate((20_000, 40_000)):
            clock.shift_ms = at_ms
            assert (await _clip(server, clients, session_id, f"a{number}", notes[number]))["ok"]
        clock.shift_ms = 100_000
        await owner.call("stream_set_state", {"session_id": session_id, "action": "pause"})
        clock.shift_ms = 160_000
        await owner.call("stream_set_state", {"session_id": session_id, "action": "resume"})
        clock.shift_ms = 180_000
        assert (await _clip(server, clients, session_id, "b", notes[2]))["ok"]
        clock.shift_ms = 200_000
        await owner.call("stream_set_state", {"session_id": session_id, "action": "end"})
    finally:
        clock.shift_ms = 0
    return session_id


async def test_youtube_chapters_on_either_timeline_without_angle_brackets(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await _ended_with_a_break(server, clients, ["Boss fight <3", "<b>loot</b>", "win"])
    path = f"/api/streams/{session_id}/export?format=youtube"
    status, cut = await http(server, "GET", path)
    assert status == 200, cut
    assert cut == "0:00 Start\n0:20 Boss fight \u20393\n0:40 \u2039b\u203aloot\u2039/b\u203a\n2:00 win\n"
    status, kept = await http(server, "GET", path + "&timeline=kept")
    assert (status, kept.splitlines()[-1]) == (200, "3:00 win")
    status, body = await http(server, "GET", path + "&timeline=sideways")
    assert (status, body["error"]) == (400, "invalid_payload")


async def test_csv_with_a_bom_for_excel(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await _ended_with_a_break(server, clients, ["café", "naïve", "über"])
    async_path = f"/api/streams/{session_id}/export?format=csv"
    status, plain = await http(server, "GET", async_path)
    assert status == 200 and plain.startswith("segment_index,")
    status, excel = await http(server, "GET", async_path + "&bom=1")
    assert status == 200 and excel == "\ufeff" + plain
    status, markers = await http(server, "GET", f"/api/streams/{session_id}/export?format=premiere&bom=1")
    assert status == 200 and markers.startswith("\ufeffMarker Name,")


async def test_edl_past_999_events_goes_to_several_files(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id, _ = await started(server, clients, title="Raid")
    clock = server.services.clock
    # Six raiders: one viewer may store at most SESSIONHUB_CLIPS_MAX_PER_VIEWER (200) clips.
    raiders = [await connect(server, clients, f"raider-{n}") for n in range(6)]
    try:
        for number in range(1001):
            clock.shift_ms = 1_000 + number * 3_000  # past the cooldown each time
            ack = await raiders[number % 6].call("clip_submit", {"session_id": session_id, "note": f"n{number}"})
            assert ack["ok"] is True, ack
    finally:
        clock.shift_ms = 0
    for fmt in ("edl", "resolve"):
        base = f"/api/streams/{session_id}/export?format={fmt}"
        for part, expected in ((1, 999), (2, 2)):
            async with (
                aiohttp.ClientSession() as http_client,
                http_client.get(
                    server.url + base + f"&part={part}", headers={"Authorization": f"Bearer {server.token('alice')}"}
                ) as response,
            ):
                text = await response.text()
                assert response.status == 200, text
                assert response.headers["X-Export-Parts"] == "2"
                assert f"part{part}" in response.headers["Content-Disposition"]
            numbers = [line.split()[0] for line in text.splitlines() if line[:3].isdigit()]
            assert len(numbers) == expected and numbers[0] == "001" and max(len(n) for n in numbers) == 3
            assert f"(part {part} of 2)" in text.splitlines()[0]
        status, body = await http(server, "GET", base + "&part=3")
        assert (status, body["error"], body["parts"]) == (400, "invalid_payload", 2)
