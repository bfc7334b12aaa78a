"""How a pattern's state lies in its session hash (issue 26): split, so a live op costs the same
at any state size.

A live op (``lua/op.lua``) touches only the fields it changes instead of decoding and
re-encoding one JSON document inside Redis (which blocked every session on that Redis for
milliseconds at the larger states). The fields, all in the session hash (so deletion, sizes and
the cluster slot stay the record's):

- ``st:f:<name>``: each pattern-level value (tempo, swing, scale, …) as JSON;
- ``st:order``: the track ids in order, joined by ``,`` (a track id holds no comma);
- ``st:t:<id>``: a track's head (the track without its steps and locks) as JSON;
- ``st:s:<id>``: its steps, one ``1`` or ``0`` per step;
- ``st:l:<id>:<chunk>``: its parameter locks of steps 16·chunk … 16·chunk+15 as a JSON array
  (a track has one lock slot per step), only for chunks with a lock set: a set_lock decodes 16
  locks at most, and the hash keeps few fields (one per lock took twice the state's memory);
- ``st:bytes``: the state's size as compact JSON, kept by deltas: live edits may not grow it
  past what a PUT may store.

A new session, a remix and a PUT write the split form directly (:func:`split`), so no live op
pays a conversion after them. The whole form (one JSON document in the field ``state``) is what
patterns stored before the split hold (and a state without a track list, which the split form
cannot tell from an empty one); the first live op splits it, once (``lua/op.lua``). Exactly one
form is stored at a time.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

PREFIX = "st:"
BYTES = "st:bytes"  # present: the state is split
ORDER = "st:order"
_FIELD = "st:f:"
_HEAD = "st:t:"
_STEPS = "st:s:"
_LOCK = "st:l:"
CHUNK = 16  # steps per lock field (lua/op.lua's CHUNK)


def is_split(fields: dict[str, str]) -> bool:
    """True when the hash holds the split form."""
    return BYTES in fields


def assemble(fields: dict[str, str]) -> dict[str, Any]:
    """The state from the split fields of a session hash (as HGETALL returns them).

    The parts are JSON texts already: they are joined into one document and parsed once, by
    orjson (a 60 KB state: ~0.6 ms with ``json.loads``, a quarter of an anonymous GET's cost); a
    text it refuses (an integer past 64 bits, which Python's parser takes) goes to ``json.loads``.
    """
    text = _joined(fields)
    try:
        state: dict[str, Any] = orjson.loads(text)
    except orjson.JSONDecodeError:
        state = json.loads(text)
    return state


def _joined(fields: dict[str, str]) -> str:
    """The split fields joined into the state's compact JSON text."""
    members = [
        f"{json.dumps(name[len(_FIELD) :])}:{value}" for name, value in fields.items() if name.startswith(_FIELD)
    ]
    tracks: list[str] = []
    order = fields.get(ORDER, "")
    for track_id in order.split(",") if order else []:
        head = fields[_HEAD + track_id]
        bits = fields.get(_STEPS + track_id, "")
        steps = ",".join([_BOOLEANS[bit] for bit in bits])
        chunks = []
        for chunk, first in enumerate(range(0, len(bits), CHUNK)):
            text = fields.get(f"{_LOCK}{track_id}:{chunk}")
            chunks.append(text[1:-1] if text else ",".join(["null"] * min(CHUNK, len(bits) - first)))
        comma = "," if head != "{}" else ""
        tracks.append(f'{head[:-1]}{comma}"steps":[{steps}],"parameterLocks":[{",".join(chunks)}]}}')
    members.append(f'"tracks":[{",".join(tracks)}]')
    return "{" + ",".join(members) + "}"


_BOOLEANS = {"1": "true", "0": "false"}


def _json(value: Any) -> str:
    # Raw UTF-8 like Lua's cjson: the sizes kept by deltas count the bytes the parts take.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def split(state: dict[str, Any]) -> list[str] | None:
    """The split fields of ``state`` as flat name, value pairs (what ``lua/op.lua`` would write
    when splitting it), ``st:bytes`` included; None when the state has no track list (stored
    whole: the split form always reads back one).

    The parts are the ones :func:`assemble` joins: a track's head without steps and locks, its
    steps as ``1``/``0``, its locks in chunks of :data:`CHUNK` (only chunks holding a lock; a
    lock is an object, anything else is stored as null, as ``lua/op.lua`` does).
    """
    tracks = state.get("tracks")
    if not isinstance(tracks, list):
        return None
    out: list[str] = []
    for name, value in state.items():
        if name != "tracks":
            out += [_FIELD + name, _json(value)]
    ids: list[str] = []
    for track in tracks:
        track_id = str(track["id"])
        ids.append(track_id)
        head = {k: v for k, v in track.items() if k not in ("steps", "parameterLocks")}
        steps = track.get("steps") or []
        locks = track.get("parameterLocks") or []
        out += [_HEAD + track_id, _json(head), _STEPS + track_id, "".join(["1" if s is True else "0" for s in steps])]
        for chunk, first in enumerate(range(0, len(steps), CHUNK)):
            items = [
                lock if isinstance(lock, (dict, list)) else None
                for lock in (
                    locks[first + i] if first + i < len(locks) else None for i in range(min(CHUNK, len(steps) - first))
                )
            ]
            if any(item is not None for item in items):
                out += [f"{_LOCK}{track_id}:{chunk}", _json(items)]
    out += [ORDER, ",".join(ids)]
    fields = dict(zip(out[::2], out[1::2], strict=True))
    # The size of the document the parts join into (exactly what assemble parses).
    out += [BYTES, str(len(_joined(fields).encode("utf-8")))]
    return out


def compact_size(state: dict[str, Any]) -> int:
    """The size ``st:bytes`` tracks: ``state`` as compact JSON with tracks' steps and locks last
    (what ``lua/op.lua`` counts from the parts, given the same number encodings)."""
    compact = json.dumps(state, separators=(",", ":"), ensure_ascii=False)
    return len(compact.encode("utf-8"))
