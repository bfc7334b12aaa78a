"""A tiny tmpfs of the test's own, and a file that fills it: a disk that really refuses writes.

Mounting needs root (CI runs as root); elsewhere the tests that need it are skipped, saying why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FILLER = "filler"


@contextlib.contextmanager
def small_disk(path: Path, size_bytes: int) -> Iterator[Path]:
    """``path`` mounted as a tmpfs of ``size_bytes``, unmounted afterwards (whatever is left on it
    goes with it). Skips the test when this process may not mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that really fills) needs root; CI runs as root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:  # root without CAP_SYS_ADMIN (an unprivileged container)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        # A process still holding a file there (a redis-server the test failed to stop) makes a
        # plain umount fail: detach it lazily then, so no mount outlives the test.
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)


def fill(folder: Path) -> Path:
    """Write ``folder/filler`` until the disk refuses (ENOSPC); the file, to remove to free it."""
    filler = folder / FILLER
    with filler.open("ab", buffering=0) as out:
        for size in (65536, 1):  # big blocks, then the last few bytes one by one
            block = b"\0" * size
            try:
                while out.write(block):
                    pass
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler
