"""Percentiles and the printing of a result, the same in every benchmark."""

from __future__ import annotations

import json
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """The value at rank ``round(q * (n - 1))`` of the sorted values (``q`` in 0..1); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def percentile_upper(values: list[float], q: float) -> float:
    """The value at rank ``int(q * n)`` (one rank higher than :func:`percentile` for a p99 of 100).

    Kept apart because the listening, durability and admin benchmarks have always reported it:
    changing the rank would move their published figures without anything having changed.
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_json(result: dict[str, Any]) -> None:
    """A benchmark's figures as indented JSON on stdout (what scripts and notes read back)."""
    print(json.dumps(result, indent=2))
