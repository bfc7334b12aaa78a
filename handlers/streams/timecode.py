"""Offsets as people and editors read them: ``H:MM:SS``, YouTube's ``M:SS`` and SMPTE timecode."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class FrameRate:
    """How a frame rate counts: ``base`` frames per timecode second, ``real`` per real second,
    and ``drop`` frame numbers skipped each minute but every tenth (drop-frame timecode)."""

    base: int
    real: Fraction
    drop: int = 0


# 23.976, 29.97 and 59.94 count frames at 24, 30 and 60 per timecode second: non-drop-frame,
# their timecode runs slower than the clock (3.6 s an hour). Drop-frame ("DF") skips frame
# numbers (never frames) so that 29.97 and 59.94 timecode keeps to the clock: SMPTE 12M.
FRAME_RATES: dict[str, FrameRate] = {
    "23.976": FrameRate(24, Fraction(24000, 1001)),
    "25": FrameRate(25, Fraction(25)),
    "29.97": FrameRate(30, Fraction(30000, 1001)),
    "29.97DF": FrameRate(30, Fraction(30000, 1001), drop=2),
    "30": FrameRate(30, Fraction(30)),
    "59.94": FrameRate(60, Fraction(60000, 1001)),
    "59.94DF": FrameRate(60, Fraction(60000, 1001), drop=4),
    "60": FrameRate(60, Fraction(60)),
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
    return int(Fraction(ms, 1000) * FRAME_RATES[fps].real)


def frames_at_hour(hours: int, fps: str) -> int:
    """The frame number whose timecode is ``HH:00:00:00`` (a timeline's usual start)."""
    rate = FRAME_RATES[fps]
    per_ten_minutes = rate.base * 600 - rate.drop * 9
    return hours * 6 * per_ten_minutes


def is_drop_frame(fps: str) -> bool:
    """True for a drop-frame rate (its timecodes are ``HH:MM:SS;FF``)."""
    return FRAME_RATES[fps].drop > 0


def smpte(frame: int, fps: str) -> str:
    """``HH:MM:SS:FF`` timecode of frame number ``frame`` (``HH:MM:SS;FF`` when drop-frame)."""
    rate = FRAME_RATES[fps]
    base, drop = rate.base, rate.drop
    if drop:
        # Frame numbers 0..drop-1 are skipped at the start of every minute but each tenth.
        per_minute = base * 60 - drop
        tens, within = divmod(frame, base * 600 - drop * 9)
        frame += drop * 9 * tens + (drop * ((within - drop) // per_minute) if within > drop else 0)
    seconds, ff = divmod(frame, base)
    separator = ";" if drop else ":"
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{separator}{ff:02d}"
