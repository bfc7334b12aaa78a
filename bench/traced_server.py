"""``sessionhub serve`` under tracemalloc, for bench/connections.py's memory breakdown.

Each SIGUSR1 writes a tracemalloc snapshot to ``$SESSIONHUB_BENCH_SNAPSHOTS/<n>.snap``
(n = 1, 2, ...). tracemalloc slows the server and adds its own memory, so a traced run gives
where the memory goes, never the per-client figure itself (that comes from an untraced run).
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

FRAMES = 12


def main() -> int:
    """Start tracing, install the snapshot signal, run ``sessionhub`` with our arguments."""
    folder = Path(os.environ["SESSIONHUB_BENCH_SNAPSHOTS"])
    counter = itertools.count(1)
    tracemalloc.start(FRAMES)

    def dump(_signum: int, _frame: FrameType | None) -> None:
        path = folder / f"{next(counter)}.snap"
        tracemalloc.take_snapshot().dump(str(path.with_suffix(".tmp")))
        os.replace(path.with_suffix(".tmp"), path)  # a reader never sees half a snapshot

    signal.signal(signal.SIGUSR1, dump)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from server.cli import main as sessionhub

    return sessionhub(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
