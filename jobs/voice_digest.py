"""What post-processing computes from a voice session's materials and audio chunks.

Pure functions over stored records, so each rule is tested without a worker:

- :func:`digest`: counts, durations, speakers and the text materials in order.
- :func:`extract_tasks`: tasks from text by explicit line rules (see ``TASK_RULES``).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

# How many text materials and transcripts a digest quotes, and how much of each: the digest
# travels in snapshots and events, so it stays well under the slow-client buffer (1 MiB).
DIGEST_TEXT_LIMIT = 100
DIGEST_TEXT_CHARS = 1000
MAX_TASKS = 200

# A line is a task when it starts with one of these (after list bullets and spaces). The rule's
# name is stored with the task, so a reader sees why a line was taken.
TASK_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("checkbox", re.compile(r"^(?:[-*+]\s*)?\[ \]\s*(?P<text>.+)$")),
    ("todo", re.compile(r"^(?:[-*+]\s*)?TODO\b[:\s-]*(?P<text>.+)$", re.IGNORECASE)),
    (
        "marker",
        re.compile(
            r"^(?:[-*+]\s*)?(?:task|action(?: item)?|ai|задача|сделать)\s*:\s*(?P<text>.+)$",
            re.IGNORECASE,
        ),
    ),
    ("imperative", re.compile(r"^(?:[-*+]\s*)?(?P<text>(?:please|нужно|надо|необходимо)\s+.+)$", re.IGNORECASE)),
)


def extract_tasks(text: str) -> list[tuple[str, int, str]]:
    """``(rule, line number from 1, task text)`` for every task line of ``text``."""
    return list(iter_tasks(text))


def iter_tasks(text: str) -> Iterator[tuple[str, int, str]]:
    """:func:`extract_tasks` one line at a time, so a caller that has enough may stop early."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        for rule, pattern in TASK_RULES:
            match = pattern.match(line)
            if match and match.group("text").strip():
                yield rule, number, match.group("text").strip()[:500]
                break


def task_records(source_id: str, source: str, text: str) -> list[dict[str, Any]]:
    """Tasks of one text, each linked to its chunk or material (ids stable across reruns)."""
    return list(iter_task_records(source_id, source, text))


def iter_task_records(source_id: str, source: str, text: str) -> Iterator[dict[str, Any]]:
    """:func:`task_records` one at a time, so a caller that has enough may stop early."""
    for rule, line, task_text in iter_tasks(text):
        task_id = hashlib.sha256(f"{source_id}:{line}:{task_text}".encode()).hexdigest()[:16]
        yield {
            "task_id": task_id,
            "chunk_id": source_id,
            "source": source,
            "line": line,
            "rule": rule,
            "text": task_text,
            "status": "open",
        }


def texts_of(materials: list[dict[str, Any]], chunks: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Every text a task can come from: ``id -> (source, text)`` (text materials, the captions of
    the others, transcripts)."""
    texts: dict[str, tuple[str, str]] = {}
    for material in materials:
        # A caption (a photo's, a voice note's, a document's) is text the person wrote too.
        if material.get("text"):
            texts[str(material["material_id"])] = ("material", str(material["text"]))
    for chunk in chunks:
        if chunk.get("transcript"):
            texts[str(chunk["chunk_id"])] = ("chunk", str(chunk["transcript"]))
    return texts


def _speakers(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order: list[str] = []
    audio: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for chunk in chunks:
        name = str(chunk.get("speaker") or "")
        if name not in counts:
            order.append(name)
        counts[name] += 1
        audio[name] += int(chunk.get("duration_ms") or 0)
    return [{"speaker": name, "chunks": counts[name], "audio_ms": audio[name]} for name in order]


def digest(materials: list[dict[str, Any]], chunks: list[dict[str, Any]], *, transcription: str) -> dict[str, Any]:
    """The session digest (chunks in start order, materials in arrival order)."""
    kinds = Counter(str(m.get("kind")) for m in materials)
    texts = [
        {"material_id": m["material_id"], "text": str(m["text"])[:DIGEST_TEXT_CHARS], "added_at": m.get("added_at")}
        for m in materials
        if m.get("kind") == "text"
    ]
    transcripts = [
        {"chunk_id": c["chunk_id"], "text": str(c["transcript"])[:DIGEST_TEXT_CHARS]}
        for c in chunks
        if c.get("transcript")
    ]
    return {
        "chunk_count": len(chunks),
        "audio_ms": sum(int(c.get("duration_ms") or 0) for c in chunks),
        "storage_bytes": sum(int(c.get("size_bytes") or 0) for c in chunks),
        "first_chunk_start_ms": min((int(c["start_ms"]) for c in chunks), default=None),
        "last_chunk_end_ms": max((int(c["end_ms"]) for c in chunks), default=None),
        "speakers": _speakers(chunks),
        "material_count": len(materials),
        "materials_by_kind": {kind: kinds.get(kind, 0) for kind in ("voice", "text", "photo", "document")},
        "material_voice_s": round(
            sum(float(m.get("duration_s") or 0) for m in materials if m.get("kind") == "voice"), 3
        ),
        "texts": texts[:DIGEST_TEXT_LIMIT],
        "texts_total": len(texts),
        "transcripts": transcripts[:DIGEST_TEXT_LIMIT],
        "transcription": transcription,
    }
