"""Live editing operations: their payloads (the state's limits) and how each one is stored.

Every operation says what its target should become ("step 5 of track A on"), never "flip
it", except ``toggle_step``, whose outcome the script adds to the event. Setting is
idempotent, so two players doing the same thing never cancel each other out.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool

from handlers.patterns.state import (
    Effects,
    LoopRegion,
    Pan,
    ParameterLock,
    PlaybackMode,
    SampleId,
    Scale,
    SessionName,
    StepCount,
    StepIndex,
    Strict,
    Swing,
    Tempo,
    Track,
    TrackId,
    TrackName,
    Transpose,
    Volume,
)
from storage.patterns.repository import Operation


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class SetStep(Strict):
    type: Literal["set_step"]
    trackId: TrackId
    step: StepIndex
    on: StrictBool


class ToggleStep(Strict):
    type: Literal["toggle_step"]
    trackId: TrackId
    step: StepIndex


class SetLock(Strict):
    type: Literal["set_lock"]
    trackId: TrackId
    step: StepIndex
    lock: ParameterLock | None


class SetTempo(Strict):
    type: Literal["set_tempo"]
    tempo: Tempo


class SetSwing(Strict):
    type: Literal["set_swing"]
    swing: Swing


class SetLoopRegion(Strict):
    type: Literal["set_loop_region"]
    loopRegion: LoopRegion | None


class SetEffects(Strict):
    type: Literal["set_effects"]
    effects: Effects


class SetScale(Strict):
    type: Literal["set_scale"]
    scale: Scale


class SetName(Strict):
    type: Literal["set_name"]
    name: SessionName | None


class AddTrack(Strict):
    type: Literal["add_track"]
    track: Track


class DeleteTrack(Strict):
    type: Literal["delete_track"]
    trackId: TrackId


class ClearTrack(Strict):
    type: Literal["clear_track"]
    trackId: TrackId


class RenameTrack(Strict):
    type: Literal["rename_track"]
    trackId: TrackId
    name: TrackName


class SetTrackSample(Strict):
    type: Literal["set_track_sample"]
    trackId: TrackId
    sampleId: SampleId


class SetTrackVolume(Strict):
    type: Literal["set_track_volume"]
    trackId: TrackId
    volume: Volume


class SetTrackPan(Strict):
    type: Literal["set_track_pan"]
    trackId: TrackId
    pan: Pan


class SetTrackMute(Strict):
    type: Literal["set_track_mute"]
    trackId: TrackId
    muted: StrictBool


class SetTrackSolo(Strict):
    type: Literal["set_track_solo"]
    trackId: TrackId
    soloed: StrictBool


class SetTrackTranspose(Strict):
    type: Literal["set_track_transpose"]
    trackId: TrackId
    transpose: Transpose


class SetTrackStepCount(Strict):
    type: Literal["set_track_step_count"]
    trackId: TrackId
    stepCount: StepCount


class SetTrackPlaybackMode(Strict):
    type: Literal["set_track_playback_mode"]
    trackId: TrackId
    playbackMode: PlaybackMode


Op = Annotated[
    SetStep
    | ToggleStep
    | SetLock
    | SetTempo
    | SetSwing
    | SetLoopRegion
    | SetEffects
    | SetScale
    | SetName
    | AddTrack
    | DeleteTrack
    | ClearTrack
    | RenameTrack
    | SetTrackSample
    | SetTrackVolume
    | SetTrackPan
    | SetTrackMute
    | SetTrackSolo
    | SetTrackTranspose
    | SetTrackStepCount
    | SetTrackPlaybackMode,
    Field(discriminator="type"),
]

# Operations that set one field of the whole state, and the field.
_STATE_FIELDS: dict[type[Strict], str] = {
    SetTempo: "tempo",
    SetSwing: "swing",
    SetLoopRegion: "loopRegion",
    SetEffects: "effects",
    SetScale: "scale",
}
# Operations that set one field of a track: the field, named as in the track and the payload.
_TRACK_FIELDS: dict[type[Strict], str] = {
    RenameTrack: "name",
    SetTrackSample: "sampleId",
    SetTrackVolume: "volume",
    SetTrackPan: "pan",
    SetTrackMute: "muted",
    SetTrackSolo: "soloed",
    SetTrackTranspose: "transpose",
    SetTrackStepCount: "stepCount",
    SetTrackPlaybackMode: "playbackMode",
}


def stored(op: Strict) -> Operation:
    """The script-level operation for a validated ``op``."""
    kind = type(op)
    if kind in _STATE_FIELDS:
        field = _STATE_FIELDS[kind]
        value = getattr(op, field)
        if isinstance(value, Strict):
            value = value.model_dump(exclude_none=True)
        return Operation("field", target=field, value_json=_json(value))
    if kind in _TRACK_FIELDS:
        field = _TRACK_FIELDS[kind]
        return Operation("track_field", track_id=op.trackId, target=field, value_json=_json(getattr(op, field)))  # type: ignore[attr-defined]
    if isinstance(op, SetStep):
        return Operation("step", track_id=op.trackId, target=str(op.step), value_json=_json(op.on))
    if isinstance(op, ToggleStep):
        return Operation("toggle_step", track_id=op.trackId, target=str(op.step))
    if isinstance(op, SetLock):
        lock = op.lock.to_json() if op.lock else None
        return Operation("lock", track_id=op.trackId, target=str(op.step), value_json=_json(lock))
    if isinstance(op, SetName):
        return Operation("name", value_json=op.name or "")
    if isinstance(op, AddTrack):
        return Operation("add_track", value_json=_json(op.track.to_json()))
    if isinstance(op, DeleteTrack | ClearTrack):
        return Operation("delete_track" if isinstance(op, DeleteTrack) else "clear_track", track_id=op.trackId)
    raise TypeError(f"no storage for {kind.__name__}")


def wire(op: Strict) -> dict[str, Any]:
    """The operation as players receive it: normalized the way it was stored."""
    if isinstance(op, AddTrack):
        return {"type": op.type, "track": op.track.to_json()}
    if isinstance(op, SetLock):
        return {"type": op.type, "trackId": op.trackId, "step": op.step, "lock": op.lock.to_json() if op.lock else None}
    if isinstance(op, SetName):
        return {"type": op.type, "name": op.name or None}
    out = op.model_dump()
    for field in ("loopRegion", "effects", "scale"):
        if isinstance(out.get(field), dict):
            out[field] = {k: v for k, v in out[field].items() if v is not None}
    return out
