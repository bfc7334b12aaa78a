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

The whole form (one JSON document in the field ``state``) is what a new session, a remix and a
PUT write (whole-state writes, O(state) anyway), and what patterns stored before the split
hold; the first live op splits it, once. Exactly one form is stored at a time.
"""

from __future__ import annotations

import json
from typing import Any

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

    The parts are JSON texts already: they are joined into one document and parsed once.
    """
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
    state: dict[str, Any] = json.loads("{" + ",".join(members) + "}")
    return state


_BOOLEANS = {"1": "true", "0": "false"}


def compact_size(state: dict[str, Any]) -> int:
    """The size ``st:bytes`` tracks: ``state`` as compact JSON with tracks' steps and locks last
    (what ``lua/op.lua`` counts from the parts, given the same number encodings)."""
    compact = json.dumps(state, separators=(",", ":"), ensure_ascii=False)
    return len(compact.encode("utf-8"))
