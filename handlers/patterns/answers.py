"""``GET /api/sessions/<id>``'s answer as /openapi.json types it: the whole session, its state as stored.

The stored state is not the shape a write takes (``handlers.patterns.state``): a track's steps
and locks are padded to 128, its ``muted``, ``soloed``, ``transpose`` and ``stepCount`` always
there, an empty lock is stored as null, and no field is null but ``loopRegion``. Every object in
it refused unknown fields on its way in, so none holds one (``additionalProperties: false``).

The handler sends the record as read (``views.full_view``), not through these models: a state
was checked when it was written, and checking its 16 tracks (some 4,000 values) again on every
load buys nothing. ``tests/test_openapi_answers.py`` holds live answers to these models.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, StrictBool, WithJsonSchema

from handlers.answers import Answer, no_defaults
from handlers.ids import UUID4_PATTERN
from handlers.patterns.state import (
    MAX_TRACKS,
    STEPS,
    TEXT_PATTERN,
    Chorus,
    Delay,
    Distortion,
    FMParams,
    LockPitch,
    LockVolume,
    Pan,
    PlaybackMode,
    Reverb,
    SampleId,
    Scale,
    StepCount,
    StepIndex,
    Swing,
    Tempo,
    TrackId,
    TrackName,
    Transpose,
    Version,
    Volume,
)

PatternId = Annotated[str, Field(pattern=UUID4_PATTERN, description="a UUID v4, lower-case")]
# A session's name as stored: trimmed, empty stored as none (null), the text rule of state.py
# (its pattern has a look-ahead, which pydantic's own regex engine refuses: published only).
Name = Annotated[str, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 100, "pattern": TEXT_PATTERN})]


def _a_lock(schema: dict[str, Any]) -> None:
    no_defaults(schema)
    schema["minProperties"] = 1  # {} is stored as null


class Stored(Answer):
    """A part of the stored state: it holds no field the server did not check."""

    model_config = ConfigDict(extra="forbid")


class StoredLock(Stored):
    """A step's parameter lock as stored: at least one of its fields (``{}`` is stored as null)."""

    model_config = ConfigDict(json_schema_extra=_a_lock)

    pitch: LockPitch = None
    volume: LockVolume = None
    tie: StrictBool = None  # type: ignore[assignment]


class StoredTrack(Stored):
    """A track as stored: steps and locks padded to 128; the optional fields absent, never null."""

    id: TrackId
    name: TrackName
    sampleId: SampleId
    steps: list[StrictBool] = Field(min_length=STEPS, max_length=STEPS)
    parameterLocks: list[StoredLock | None] = Field(min_length=STEPS, max_length=STEPS)
    volume: Volume
    muted: StrictBool
    soloed: StrictBool
    transpose: Transpose
    stepCount: StepCount
    pan: Pan = None
    playbackMode: PlaybackMode = None  # type: ignore[assignment]
    fmParams: FMParams = None  # type: ignore[assignment]
    swing: Swing = Field(default=None, description="its own swing; absent or 0: the pattern's")


class StoredEffects(Stored):
    """The effects as stored: ``bypass`` is absent when the write that set them left it out."""

    reverb: Reverb
    delay: Delay
    chorus: Chorus
    distortion: Distortion
    bypass: StrictBool = None  # type: ignore[assignment]


class StoredLoopRegion(Stored):
    """The loop: ``start`` ≤ ``end`` (checked on the way in; no JSON Schema says it)."""

    start: StepIndex
    end: StepIndex


_OLD_EFFECTS = "a new session's defaults; absent in a session made before they were defaults and never given any"
_OLD_SCALE = "a new session's default; absent only where a PUT left it out before PUTs kept the stored one"


class StoredPatternState(Stored):
    """The pattern's state as stored: every write since the first stored tracks, tempo, swing and
    version (a new session's defaults fill them, a PUT needs them)."""

    tracks: list[StoredTrack] = Field(max_length=MAX_TRACKS)
    tempo: Tempo
    swing: Swing
    version: Version
    effects: StoredEffects = Field(default=None, description=_OLD_EFFECTS)  # type: ignore[assignment]
    scale: Scale = Field(default=None, description=_OLD_SCALE)  # type: ignore[assignment]
    loopRegion: StoredLoopRegion | None = Field(default=None, description="absent or null: no loop")


# remixedFrom and remixedFromName are null together (a session made afresh) or set together (a
# remix or a published copy; the name then never null: see views.parent_name_now).
_LINEAGE = [
    {"properties": {"remixedFrom": {"type": "null"}, "remixedFromName": {"type": "null"}}},
    {"properties": {"remixedFrom": {"type": "string"}, "remixedFromName": {"type": "string"}}},
]


def _lineage_together(schema: dict[str, Any]) -> None:
    no_defaults(schema)
    schema["anyOf"] = _LINEAGE


class PatternSession(Answer):
    """``GET /api/sessions/<id>``: the whole session (``views.full_view``), ms timestamps."""

    model_config = ConfigDict(json_schema_extra=_lineage_together)

    id: PatternId
    name: Name | None = Field(description="null: unnamed (shown as 'Untitled Session')")
    createdAt: int = Field(ge=0)
    updatedAt: int = Field(ge=0, description="the last change of state or name")
    lastAccessedAt: int = Field(ge=0, description="this load's time (loading marks the session accessed)")
    remixedFrom: PatternId | None = Field(description="the session this one was remixed or published from")
    remixedFromName: Name | None = Field(
        description="the parent's name now, else the one cached at the remix (its first track's name or"
        " 'Untitled Session' when it had none), 'Unknown Session' once the parent is gone"
    )
    remixCount: int = Field(ge=0)
    immutable: bool = Field(description="a published copy: read-only")
    orphaned: bool = Field(
        description="the access before this load (a load, an edit, any use) was longer ago than the orphan days"
    )
    state: StoredPatternState
