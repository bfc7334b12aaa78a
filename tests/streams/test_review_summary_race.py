"""The review's summary and the session it answers with: never older than the summary's position.

The dashboard takes the summary's session and applies only the live events after the summary's
``offset``. A state change that landed after the session was read but before the summary's
position was taken was in neither: the page dropped it as already there and showed a stream that
had just started as 'Not started' until a reload (a browser test saw it 1 run in 3:
tests/admin/test_web_deleted_open.py presses Start as soon as the dashboard shows it).
"""

from __future__ import annotations

from typing import Any

import pytest

from storage.streams.review import ReviewIndex
from tests.helpers import ServerUnderTest
from tests.streams.helpers import create_stream, http


async def test_a_state_change_landing_during_the_summary_is_in_its_session_or_after_its_offset(
    server: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = await create_stream(server)
    summary = ReviewIndex.summary
    started: list[Any] = []

    async def start_meanwhile(self: ReviewIndex, *args: Any, **kwargs: Any) -> Any:
        if not started:  # the streamer's Start lands while the summary is being made
            status, body = await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
            assert status == 200, body
            started.append(body)
        return await summary(self, *args, **kwargs)

    monkeypatch.setattr(ReviewIndex, "summary", start_meanwhile)
    status, body = await http(server, "GET", f"/api/streams/{session_id}/review")
    assert status == 200, body
    assert started
    # The start is before the summary's position (a page drops it from the live events): the
    # session the summary answers with must have it.
    assert body["offset"] >= 1, body
    assert body["session"]["state"] == "active", (body["session"]["state"], body["offset"])
    assert [s["index"] for s in body["segments"]] == [s["index"] for s in body["session"]["segments"]]
