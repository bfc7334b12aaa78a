"""Who clicked, as the streamer reads it: a clip's viewer by their current display name.

A clip stores the viewer's user id, never their name: a rename shows on the next load of the
review or the next export. The names of every viewer on a page of clips come in one batched read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage.identity.repository import Identities
from storage.streams.records import Clip


async def viewer_names(identities: Identities, clips: Sequence[Clip]) -> dict[str, str]:
    """Display names by user id of the viewers of ``clips`` (those who chose one)."""
    return await identities.names(c.submitted_by for c in clips)


def attributed(clip: Clip, names: dict[str, str]) -> dict[str, Any]:
    """The owner's view of a clip, with ``viewer_name`` (None when the viewer chose no name)."""
    return {**clip.for_owner(), "viewer_name": names.get(clip.submitted_by)}


def viewer_label(clip: Clip, names: dict[str, str]) -> str:
    """The viewer as a person reads it: their name, else the clip's short viewer tag."""
    return names.get(clip.submitted_by) or f"viewer {clip.viewer_tag}"
