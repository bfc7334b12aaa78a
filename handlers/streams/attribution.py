"""Who clicked, as the streamer reads it: a clip's viewer by their current display name.

A clip stores the viewer's user id, never their name: a rename shows on the next load of the
review or the next export. The names of the viewers of the clips come in batched reads of
``NAMES_SLICE`` viewers each: a raid's thousands of viewers in one pipeline held the loop while
redis-py packed and parsed them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from storage.identity.repository import Identities
from storage.streams.records import Clip
from storage.streams.slices import sorted_in_slices

NAMES_SLICE = 500


async def viewer_names(identities: Identities, clips: Sequence[Clip]) -> dict[str, str]:
    """Display names by user id of the viewers of ``clips`` (those who chose one)."""
    seen: set[str] = set()
    for start in range(0, len(clips), NAMES_SLICE * 4):
        if start:
            await asyncio.sleep(0)  # a raid's 200,000 clips in one set held the loop ~50 ms
        seen.update(c.submitted_by for c in clips[start : start + NAMES_SLICE * 4])
    viewers = await sorted_in_slices(list(seen), key=str)
    names: dict[str, str] = {}
    for start in range(0, len(viewers), NAMES_SLICE):
        if start:
            await asyncio.sleep(0)
        names.update(await identities.names(viewers[start : start + NAMES_SLICE]))
    return names


def attributed(clip: Clip, names: dict[str, str]) -> dict[str, Any]:
    """The owner's view of a clip, with ``viewer_name`` (None when the viewer chose no name)."""
    return {**clip.for_owner(), "viewer_name": names.get(clip.submitted_by)}


def viewer_label(clip: Clip, names: dict[str, str]) -> str:
    """The viewer as a person reads it: their name, else the clip's short viewer tag."""
    return names.get(clip.submitted_by) or f"viewer {clip.viewer_tag}"
