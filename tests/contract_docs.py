"""What docs/PROTOCOL.md says of each Socket.IO event, read the way a contract suite reads it: the
payload's fields (``"name"``, ``"name"?`` when optional) and the fields of the success ack.

An event is defined where the document gives its payload: a heading naming it (the payload is
the first ``{…}`` under it, its acks every ``{"ok": true, …}`` of its section), a table row
``| `event` | payload | ack |``, or a bullet ``- `event` `{…}` → `{…}```. A payload may spread
a shape defined once as a bullet elsewhere (``{"session_id", …report}``: the ``- Report:``
bullet), an ack another event's (``as a report, … plus `"duplicate"```).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from tests.test_protocol_doc import PROTOCOL

_NAME = re.compile(r'"(…?\w+)"(\?)?')
_SPREAD = re.compile(r"…(\w+)")
_HEADING = re.compile(r"^#{3,4} .*$", re.M)


@dataclass
class DocumentedEvent:
    """One event as the document defines it."""

    name: str
    fields: dict[str, bool] = field(default_factory=dict)  # name -> required
    ack: set[str] = field(default_factory=set)
    text: str = ""  # the definition: its section, row or bullet, and the shapes it spreads


def braces(text: str, start: int = 0) -> list[str]:
    """Every top-level ``{…}`` of ``text`` from ``start``, outer braces included."""
    found: list[str] = []
    depth, opened = 0, -1
    for index in range(start, len(text)):
        char = text[index]
        if char == "{":
            if depth == 0:
                opened = index
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                found.append(text[opened : index + 1])
    return found


def top_level_names(shape: str) -> dict[str, bool]:
    """The field names of one ``{…}`` at its own level (a nested object's are its own; a value's
    words, ``"start" | "pause"``, are not names), with whether each is required (no ``?``)."""
    inner, depth, flat = shape[1:-1], 0, []
    for char in inner:
        depth += char in "{[(<"
        depth -= char in "}])>"
        flat.append(char if depth == 0 or (char in "{[(<" and depth == 1) else " ")
    names: dict[str, bool] = {}
    for item in "".join(flat).split(","):
        named = _NAME.match(item.strip())
        if named is not None:
            names[named.group(1)] = named.group(2) is None
    return names


def _bullet(text: str, word: str) -> str:
    """The bullet whose first word is ``word`` (``- Report: {…}``), else ``{"…word"}``: a field
    no model has, so a spread the document does not define is a difference."""
    found = re.search(rf"^- {word}\b.*?(?=^- |^\n|\Z)", text, re.M | re.I | re.S)
    return found.group() if found is not None else f'{{"…{word}"}}'


def _event(text: str, name: str, shape: str, ack: set[str], definition: str) -> DocumentedEvent:
    names = top_level_names(shape)
    for spread in _SPREAD.findall(shape):
        bullet = _bullet(text, spread)
        names.update(top_level_names(braces(bullet)[0]))
        definition += "\n" + bullet
    return DocumentedEvent(name, names, ack, definition)


def _acks(section: str) -> set[str]:
    names: set[str] = set()
    for shape in braces(section):
        if re.match(r'\{"ok": true', shape):
            names.update(top_level_names(shape))
    return names - {"ok"}


def _sections(text: str) -> list[tuple[str, str]]:
    """Each heading line with the text up to the next heading of level 3 or 4."""
    starts = [match.start() for match in _HEADING.finditer(text)] + [len(text)]
    return [(text[a : text.index("\n", a)], text[a:b]) for a, b in itertools.pairwise(starts)]


def documented_events() -> dict[str, DocumentedEvent]:
    """Every event the document defines, by name (the first definition of a name wins)."""
    text = PROTOCOL.read_text(encoding="utf-8")
    events: dict[str, DocumentedEvent] = {}
    for heading, section in _sections(text):
        named = re.findall(r"`([a-z_]+)`", heading)
        if len(named) == 1 and (shapes := braces(section, len(heading))):
            events.setdefault(named[0], _event(text, named[0], shapes[0], _acks(section), section))
    for row in re.finditer(r"^\| `([a-z_]+)` \| (`\{.*)$", text, re.M):
        name, cells = row.groups()
        payload_cell, ack_cell = [*cells.split(" | "), ""][:2]
        ack = set(top_level_names(braces(ack_cell)[0])) - {"ok"} if braces(ack_cell) else set()
        if ack_cell.startswith("as a report") and "listening_report" in events:
            ack |= events["listening_report"].ack | set(re.findall(r'plus `"(\w+)"', ack_cell))
        events.setdefault(name, _event(text, name, braces(payload_cell)[0], ack, row.group()))
    for bullet in re.finditer(r"^- `([a-z_]+)` (`\{.*?)(?=^- |^\n|\Z)", text, re.M | re.S):
        name, body = bullet.groups()
        shapes = braces(body)
        acks = {n for shape in shapes[1:] if shape.startswith('{"ok": true') for n in top_level_names(shape)}
        events.setdefault(name, _event(text, name, shapes[0], acks - {"ok"}, bullet.group()))
    return events
