"""Offsets as people and editors read them: ``H:MM:SS``, YouTube's ``M:SS`` and SMPTE timecode."""

from __future__ import annotations

from fractions import Fraction

# Frame rate label -> (timecode base, real frames per second). 23.976 and 29.97 count frames
# at 24 and 30 per timecode second (non-drop-frame), so a real second is not a timecode second.
FRAME_RATES: dict[str, tuple[int, Fraction]] = {
    "23.976": (24, Fraction(24000, 1001)),
    "25": (25, Fraction(25)),
    "29.97": (30, Fraction(30000, 1001)),
    "30": (30, Fraction(30)),
    "60": (60, Fraction(60)),
}
DEFAULT_FPS = "30"


def hms(ms: int) -> str:
    """``H:MM:SS`` (whole seconds, rounded down): how offsets are shown everywhere."""
    seconds = ms // 1000
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def youtube(ms: int) -> str:
    """YouTube's chapter stamp: ``M:SS`` under an hour, ``H:MM:SS`` from one hour on."""
    seconds = ms // 1000
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return hms(ms)


def frames(ms: int, fps: str) -> int:
    """The frame that shows the moment ``ms`` after the start (rounded down)."""
    _, rate = FRAME_RATES[fps]
    return int(Fraction(ms, 1000) * rate)


def smpte(frame: int, fps: str) -> str:
    """``HH:MM:SS:FF`` non-drop-frame timecode of frame number ``frame``."""
    base, _ = FRAME_RATES[fps]
    seconds, ff = divmod(frame, base)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}:{ff:02d}"
