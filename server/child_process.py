"""Children that die with their parent: ``PR_SET_PDEATHSIG`` (Linux), asked for in the child.

A ``serve`` killed with ``-9`` runs no clean-up of its own: its embedded redis-server would go on
holding the data folder's append-only file, and a transcription command would go on running
while the job it served is handed to another worker, which runs it again. The kernel sends the
child the chosen signal when its parent dies, however it dies. macOS and the others have no such
call: there the caller's other means (an orphan stopped at the next start) apply.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to send ``sig`` to the child when its parent dies; None elsewhere.

    The child must be forked from a thread that lives as long as the parent (the event loop's):
    the signal fires when the *thread* that forked it exits."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)  # loaded before fork
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig)
        # The parent may have died between fork and prctl: then nobody would ever send the signal.
        if os.getppid() != parent:
            os._exit(1)

    return preexec
