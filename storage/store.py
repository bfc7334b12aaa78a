"""What every repository of a session kind works with, passed as one value."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from storage.clock import Clock
from storage.events import EventLog
from storage.keys import Keys
from storage.scripts import Scripts
from storage.sessions import SessionDirectory


@dataclass(frozen=True, slots=True)
class Store:
    """Redis, its keys, the shared scripts, the event log, the clock and the session directory.

    Built once per process (``Services.store``); a repository keeps the parts it uses.
    """

    redis: Redis
    keys: Keys
    scripts: Scripts
    log: EventLog
    clock: Clock
    sessions: SessionDirectory
