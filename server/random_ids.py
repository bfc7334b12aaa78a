"""Unguessable session ids drawn from the OS a page at a time.

Engine.IO draws 12 random bytes per id and Socket.IO another id per connection: two
``getrandom()`` calls, about 3% of a connection's setup on the benchmark machine. The bytes
here come from ``os.urandom`` all the same, 4 KiB per call, each byte handed out once; a forked
child starts a page of its own, so parent and child never share one.
"""

from __future__ import annotations

import base64
import os

ID_BYTES = 15  # 120 bits, as Engine.IO's own ids (12 random + a 3-byte count); 20 characters
PAGE_BYTES = 4096


class RandomIds:
    """URL-safe ids of :data:`ID_BYTES` random bytes each."""

    def __init__(self) -> None:
        self._page = b""
        self._at = 0
        self.drawn = 0  # ids handed out, for tests that check the servers use this
        os.register_at_fork(after_in_child=self._drop)

    def _drop(self) -> None:
        self._page = b""
        self._at = 0

    def next(self) -> str:
        """A new id (never one handed out before by this process, short of a 120-bit collision)."""
        at = self._at
        if at + ID_BYTES > len(self._page):
            self._page = os.urandom(PAGE_BYTES)
            at = 0
        self._at = at + ID_BYTES
        self.drawn += 1
        return base64.urlsafe_b64encode(self._page[at : at + ID_BYTES]).decode()


IDS = RandomIds()
