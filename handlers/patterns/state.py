"""The pattern state of seed 004 (plus what the origin app grew since), validated strictly.

Whole numbers are whole (``1.5`` and ``true`` are not step counts), numbers are finite and in
range, unknown fields are refused (which also refuses prototype names such as ``__proto__``),
and names refuse markup, ``javascript:`` and control characters. Validation errors carry the
offending field's path, which the HTTP API reports as ``loopRegion.end`` and the live events
as part of their ``invalid_payload`` message.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SerializerFunctionWrapHandler,
    StrictBool,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_serializer,
)

from protocol.seen_text import BYTES_PER_CHARACTER, grapheme_count

STEPS = 128
MAX_TRACKS = 16
STEP_COUNTS = frozenset({*range(3, 17), 18, 20, 21, 24, 27, 28, 32, 36, 48, 64, 96, 128})
ROOTS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SCALE_IDS = (
    "chromatic",
    "major",
    "minor",
    "dorian",
    "phrygian",
    "lydian",
    "mixolydian",
    "locrian",
    "harmonic-minor",
    "melodic-minor",
    "natural-minor",
    "major-pentatonic",
    "minor-pentatonic",
    "blues",
    "whole-tone",
)
# Keyboardia's own (its invariants.ts: the note values and 1m, 2m, 4m bars) and the dotted ones
# sessionhub took before, which stored patterns may hold.
DELAY_TIMES = ("1m", "2m", "4m", "1n", "2n", "4n", "8n", "16n", "32n", "2t", "4t", "8t", "16t", "4n.", "8n.", "16n.")
# A new session's, as the origin app makes one (session-defaults.ts, effects-defaults.ts,
# scale-defaults.ts): every effect dry, the scale locked to a consonant one.
DEFAULT_SCALE: dict[str, Any] = {"root": "C", "scaleId": "minor-pentatonic", "locked": True}
DEFAULT_EFFECTS: dict[str, Any] = {
    "bypass": False,
    "reverb": {"decay": 2, "wet": 0},
    "delay": {"time": "8n", "feedback": 0.3, "wet": 0},
    "chorus": {"frequency": 1.5, "depth": 0.5, "wet": 0},
    "distortion": {"amount": 0.4, "wet": 0},
}
DEFAULTS: dict[str, Any] = {
    "tracks": [],
    "tempo": 120,
    "swing": 0,
    "version": 1,
    "effects": DEFAULT_EFFECTS,
    "scale": DEFAULT_SCALE,
}
COMPLETE = ("tracks", "tempo", "swing", "version")
# Set only by live edits in the origin app (its own client saves just COMPLETE): a replacement
# that leaves one out keeps the stored value (Keyboardia's mergeStateReplacement). An explicit
# null loopRegion clears the loop; effects and scale refuse null, as Keyboardia's API does.
KEPT_WHEN_ABSENT = ("effects", "scale", "loopRegion")

NUMBER_DIGITS = 14
# Control characters, separators, and the bidi embeddings, overrides and isolates that reorder
# what follows them (a name shown as something it is not).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SCRIPT_URL = re.compile(r"javascript\s*:", re.IGNORECASE)
TEXT_PATTERN = r"^(?![\s\S]*[jJ][aA][vV][aA][sS][cC][rR][iI][pP][tT]\s*:)[^\x00-\x1f\x7f-\x9f\u2028\u2029<>]*$"


def _number(low: float, high: float) -> Any:
    def check(value: object) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        # Bounds before finiteness: isfinite() of an int beyond a float (10^400, valid JSON)
        # raises OverflowError, which is no validation error (a 500).
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
        # Kept to 14 significant digits, all the precision Redis' Lua JSON encoder writes: a live
        # op's echo, a PUT and every later op's re-encoding of the state then agree exactly.
        return float(f"{value:.{NUMBER_DIGITS}g}") if isinstance(value, float) else value

    # A plain validator publishes no schema of its own: say what it checks (docs/PROTOCOL.md's
    # OpenAPI document is generated from these models).
    schema = {"type": "number", "minimum": low, "maximum": high}
    return Annotated[int | float, PlainValidator(check), WithJsonSchema(schema)]


def _whole(low: int, high: int) -> Any:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return Annotated[int, PlainValidator(check), WithJsonSchema({"type": "integer", "minimum": low, "maximum": high})]


def bounded_text(max_length: int) -> Any:
    """A trimmed string of at most ``max_length`` characters as people see them (grapheme
    clusters, with ``BYTES_PER_CHARACTER`` bytes of UTF-8 each behind them) with no markup,
    control characters or script URLs.

    Counted in code points, a Hindi track name of 24 letters was "over 32 characters" and five
    family emoji were refused, while the page's field cut a flag in half (audit "patternworld"):
    the names a person types are counted as the account's name, a stream title and a clip's note
    are (protocol/seen_text.py)."""
    max_bytes = max_length * BYTES_PER_CHARACTER

    def check(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        text = value.strip()
        if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
            raise ValueError(f"must be at most {max_bytes} bytes of UTF-8")
        if len(text) > max_length and grapheme_count(text) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        if _CONTROL.search(text) or "<" in text or ">" in text or _SCRIPT_URL.search(text):
            raise ValueError("must not contain markup, control characters or script URLs")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate (JSON's "\ud800"): no character, and Redis' cjson refuses it
                raise ValueError("must be text (a lone UTF-16 surrogate is not)") from None
        return text

    # No control characters, no < or >, no "javascript:" (the schema's pattern is a JavaScript
    # regular expression, as JSON Schema's are); trimmed, so the schema's length is the stricter.
    # JSON Schema's maxLength counts code points: the bytes bound them (a character as seen is
    # what the description says, and what the check counts).
    schema = {
        "type": "string",
        "maxLength": max_bytes,
        "pattern": TEXT_PATTERN,
        "description": f"at most {max_length} characters as seen (grapheme clusters) and {max_bytes} bytes of UTF-8",
    }
    return Annotated[str, PlainValidator(check), WithJsonSchema(schema)]


def _step_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in STEP_COUNTS:
        raise ValueError(f"must be one of {sorted(STEP_COUNTS)}")
    return value


TrackId = Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_\-.:]{1,64}$")]
SampleId = Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_\-.:]{1,64}$")]
TrackName = bounded_text(32)
SessionName = bounded_text(100)
StepIndex = _whole(0, STEPS - 1)
StepCount = Annotated[int, PlainValidator(_step_count), WithJsonSchema({"enum": sorted(STEP_COUNTS)})]
Volume = _number(0, 1)
Pan = _number(-1, 1)
Transpose = _whole(-24, 24)
Tempo = _number(60, 180)
Swing = _number(0, 100)
PlaybackMode = Literal["oneshot", "gate"]
LockPitch = _whole(-24, 24)
LockVolume = _number(0, 2)
Version = _whole(1, 1_000_000)


def no_null_defaults(schema: dict[str, Any]) -> None:
    """A ``None`` default here means "absent", not null: a published ``default: null`` would say
    null is a value the field takes (and is no valid default of an array or a number)."""
    for prop in schema.get("properties", {}).values():
        nullable = prop.get("type") == "null" or {"type": "null"} in prop.get("anyOf", [])
        if "default" in prop and prop["default"] is None and not nullable:
            del prop["default"]


class Strict(BaseModel):
    """Unknown fields refused, no coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=no_null_defaults)


class ParameterLock(Strict):
    """A step's override of pitch (semitones) and volume (multiplier); ``tie`` holds the note
    from the step before instead of striking a new one."""

    pitch: LockPitch | None = None  # type: ignore[valid-type]
    volume: LockVolume | None = None  # type: ignore[valid-type]
    tie: StrictBool | None = None

    def to_json(self) -> dict[str, Any] | None:
        """Only the fields given; an empty lock is no lock."""
        out = self.model_dump(exclude_none=True)
        return out or None


class FMParams(Strict):
    """An FM synth voice's sound (Keyboardia's ``tone:fm-*`` presets): modulator-to-carrier
    frequency ratio and modulation depth, in Keyboardia's ranges."""

    harmonicity: _number(0.5, 10)  # type: ignore[valid-type]
    modulationIndex: _number(0, 20)  # type: ignore[valid-type]


class Track(Strict):
    """One instrument row."""

    id: TrackId
    name: TrackName  # type: ignore[valid-type]
    sampleId: SampleId
    steps: list[StrictBool] = Field(max_length=STEPS)
    parameterLocks: list[ParameterLock | None] = Field(default_factory=list, max_length=STEPS)
    volume: Volume  # type: ignore[valid-type]
    muted: StrictBool = False
    soloed: StrictBool = False
    transpose: Transpose = 0  # type: ignore[valid-type]
    stepCount: StepCount = 16
    pan: Pan | None = None  # type: ignore[valid-type]
    playbackMode: PlaybackMode | None = None
    fmParams: FMParams | None = None
    swing: Swing | None = None  # type: ignore[valid-type]  # its own swing; 0 or none: the pattern's

    def to_json(self) -> dict[str, Any]:
        """The stored shape: steps and locks padded to 128, optional fields only when given."""
        steps = [*self.steps, *([False] * (STEPS - len(self.steps)))]
        locks = [lock.to_json() if lock else None for lock in self.parameterLocks]
        locks += [None] * (STEPS - len(locks))
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "sampleId": self.sampleId,
            "steps": steps,
            "parameterLocks": locks,
            "volume": self.volume,
            "muted": self.muted,
            "soloed": self.soloed,
            "transpose": self.transpose,
            "stepCount": self.stepCount,
        }
        if self.pan is not None:
            out["pan"] = self.pan
        if self.playbackMode is not None:
            out["playbackMode"] = self.playbackMode
        if self.fmParams is not None:
            out["fmParams"] = self.fmParams.model_dump()
        if self.swing is not None:
            out["swing"] = self.swing
        return out


class Reverb(Strict):
    decay: _number(0.1, 10)  # type: ignore[valid-type]
    wet: _number(0, 1)  # type: ignore[valid-type]


class Delay(Strict):
    time: Literal[DELAY_TIMES]  # type: ignore[valid-type]
    feedback: _number(0, 0.95)  # type: ignore[valid-type]
    wet: _number(0, 1)  # type: ignore[valid-type]


class Chorus(Strict):
    frequency: _number(0.1, 10)  # type: ignore[valid-type]
    depth: _number(0, 1)  # type: ignore[valid-type]
    wet: _number(0, 1)  # type: ignore[valid-type]


class Distortion(Strict):
    amount: _number(0, 1)  # type: ignore[valid-type]
    wet: _number(0, 1)  # type: ignore[valid-type]


class Effects(Strict):
    """All four effects, each an object of bounded numbers."""

    reverb: Reverb
    delay: Delay
    chorus: Chorus
    distortion: Distortion
    bypass: StrictBool | None = None


class Scale(Strict):
    root: Literal[ROOTS]  # type: ignore[valid-type]
    scaleId: Literal[SCALE_IDS]  # type: ignore[valid-type]
    locked: StrictBool


class LoopRegion(Strict):
    # `end` is validated first so that `start` is checked against it: a backwards region names
    # `loopRegion.start` in the error, as Keyboardia does. Written out start first all the same.
    end: StepIndex  # type: ignore[valid-type]
    start: StepIndex  # type: ignore[valid-type]

    @field_validator("start")
    @classmethod
    def _ordered(cls, start: int, info: ValidationInfo) -> int:
        end = info.data.get("end")
        if isinstance(end, int) and start > end:
            raise ValueError("must not be after end")
        return start

    @model_serializer(mode="wrap")
    def _start_first(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        return {"start": dumped["start"], "end": dumped["end"]}


class PatternState(Strict):
    """A state as sent: every field optional here; ``complete`` says which a PUT needs."""

    # Absent fields stay None; an explicit null is refused by the field's own validator.
    tracks: list[Track] = Field(default=None, max_length=MAX_TRACKS)  # type: ignore[arg-type]
    tempo: Tempo = Field(default=None)  # type: ignore[valid-type]
    swing: Swing = Field(default=None)  # type: ignore[valid-type]
    effects: Effects = Field(default=None)  # type: ignore[assignment]
    scale: Scale = Field(default=None)  # type: ignore[assignment]
    loopRegion: LoopRegion | None = None
    version: Version = Field(default=None)  # type: ignore[valid-type]

    @field_validator("tracks")
    @classmethod
    def _first_of_each_id(cls, tracks: list[Track] | None) -> list[Track] | None:
        if tracks is None:
            return None
        seen: set[str] = set()
        kept = []
        for track in tracks:
            if track.id not in seen:  # a duplicate id keeps the first
                seen.add(track.id)
                kept.append(track)
        return kept

    def missing(self) -> list[str]:
        """The fields a complete state needs that this one lacks."""
        return [name for name in COMPLETE if name not in self.model_fields_set]

    def kept_when_absent(self) -> tuple[str, ...]:
        """The fields a replacement by this state keeps from the stored state: those it lacks."""
        return tuple(name for name in KEPT_WHEN_ABSENT if name not in self.model_fields_set)

    def initial(self) -> dict[str, Any]:
        """A new session's stored state: the given fields over :data:`DEFAULTS`; effects given
        without ``bypass`` get it off, as the origin app stores them."""
        out = self.to_json(DEFAULTS)
        if "effects" in self.model_fields_set:
            out["effects"] = {"bypass": False, **out["effects"]}
        return out

    def to_json(self, base: dict[str, Any] | None = None) -> dict[str, Any]:
        """The given fields over ``base`` (the defaults for a new session)."""
        out: dict[str, Any] = dict(base or {})
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "tracks":
                out[name] = [track.to_json() for track in value or []]
            elif name == "loopRegion":
                out[name] = value.model_dump() if value is not None else None
            elif isinstance(value, BaseModel):
                out[name] = value.model_dump(exclude_none=True)
            else:
                out[name] = value
        return out
