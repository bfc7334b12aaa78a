"""At most a few reads of *every* clip of a stream at once per user on a process; the others wait.

``GET …/clips`` and ``GET …/moments`` read every clip: a stream of more than 1,000 is first
copied in Redis (``storage/streams/repository.StreamSessions.clips``: a consistent copy read in
pages, deleted after), and the clips are then parsed and held in the process. Nothing bounded
how many such reads one user ran at once: measured, 200 concurrent reviews of a 2,500-clip
stream by its owner held 200 copies at once, 245 MB more of Redis (and the process held 200
lists of the clips); the HTTP connections of one address (1000) would hold five times that, at
``noeviction``, until every write of everyone failed. A user's reads past :data:`AT_ONCE` wait for
one to finish (a streamer's tabs regrouping moments at once are served in turn), at most
:data:`WAIT_S`, then ``rate_limited``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from protocol.errors import CodedError, ErrorCode

AT_ONCE = 2
WAIT_S = 10.0
RETRY_AFTER_S = 5


@dataclass(slots=True)
class _Gate:
    running: asyncio.Semaphore
    users: int = 0  # requests holding or waiting for this gate


@dataclass(slots=True)
class WholeReads:
    """Per-user gates, each letting :data:`AT_ONCE` reads run at once (forgotten when idle)."""

    at_once: int = AT_ONCE
    wait_s: float = WAIT_S
    _gates: dict[str, _Gate] = field(default_factory=dict)

    @asynccontextmanager
    async def slot(self, user_id: str) -> AsyncIterator[None]:
        """Hold one of ``user_id``'s reads for the block, waiting for one if all run."""
        gate = self._gates.get(user_id)
        if gate is None:
            gate = self._gates[user_id] = _Gate(asyncio.Semaphore(self.at_once))
        gate.users += 1
        try:
            try:
                async with asyncio.timeout(self.wait_s):
                    await gate.running.acquire()
            except TimeoutError:
                raise CodedError(
                    ErrorCode.RATE_LIMITED,
                    f"at most {self.at_once} reads of every clip at once; this one waited {self.wait_s:.0f} s",
                    retry_after_s=RETRY_AFTER_S,
                ) from None
            try:
                yield
            finally:
                gate.running.release()
        finally:
            gate.users -= 1
            if gate.users == 0:
                del self._gates[user_id]
