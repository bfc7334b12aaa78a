"""The one dependency bundle handlers and job processors get, and the limits they enforce.

Everything here is built once in ``server/`` (``server.services``) and passed in; no module
keeps a client or other process-wide state of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from redis.asyncio import Redis

from auth.relying_party import RelyingParty
from auth.tokens import TokenService
from handlers.disk_room import DiskRoom
from handlers.kinds import KindRegistry
from handlers.metrics import Metrics
from handlers.storage_guard import StorageGuard
from storage.cleanups import OwedCleanups
from storage.clock import Clock
from storage.events import EventLog
from storage.identity.passkeys import Passkeys
from storage.identity.repository import Identities
from storage.jobs import JobQueue
from storage.keys import Keys
from storage.login_tokens import LoginTokens
from storage.ratelimit import RateLimiter
from storage.scripts import Scripts
from storage.sessions import SessionDirectory
from storage.store import Store
from storage.voice.repository import ActivePointer, VoiceSessions


class Subscriptions(Protocol):
    """The node's bus as handlers see it (implemented by server.bus.Bus)."""

    async def open(self, session_id: str, sid: str) -> None: ...

    def send(self, sid: str, event: str, data_json: str) -> None: ...

    def go_live(self, session_id: str, sid: str, after_offset: int) -> None: ...

    def leave(self, session_id: str, sid: str) -> bool: ...

    def leave_all(self, sid: str) -> None: ...

    async def follow_user(
        self, user_id: str, sid: str, read_name: Callable[[], Awaitable[str]]
    ) -> tuple[ActivePointer, str]: ...

    async def follow_name(self, user_id: str, sid: str, read_name: Callable[[], Awaitable[str]]) -> str: ...

    def sessions_of(self, sid: str) -> set[str]: ...

    def hold(self, session_id: str) -> object | None: ...

    def release(self, session_id: str, hold: object | None) -> None: ...


class NoSubscriptions:
    """The bus of a process that serves no Socket.IO clients (``sessionhub worker``)."""

    async def open(self, session_id: str, sid: str) -> None:
        raise RuntimeError("this process serves no subscriptions")

    def send(self, sid: str, event: str, data_json: str) -> None:
        """Nobody is connected here."""

    def go_live(self, session_id: str, sid: str, after_offset: int) -> None:
        """Nobody is connected here."""

    def leave(self, session_id: str, sid: str) -> bool:
        return False

    def leave_all(self, sid: str) -> None:
        """Nobody is connected here."""

    async def follow_user(
        self, user_id: str, sid: str, read_name: Callable[[], Awaitable[str]]
    ) -> tuple[ActivePointer, str]:
        raise RuntimeError("this process serves no subscriptions")

    async def follow_name(self, user_id: str, sid: str, read_name: Callable[[], Awaitable[str]]) -> str:
        raise RuntimeError("this process serves no subscriptions")

    def sessions_of(self, sid: str) -> set[str]:
        return set()

    def hold(self, session_id: str) -> object | None:
        return None

    def release(self, session_id: str, hold: object | None) -> None:
        """Nothing is held here."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps and rates enforced at the edge (built from Settings by server.services only)."""

    max_payload_bytes: int
    event_rate_per_s: float
    event_burst: int
    max_subscriptions: int
    guest_token_ttl_s: int
    guests_per_min: int
    guests_per_day: int
    creates_per_min: int
    creates_per_min_per_address: int
    # Sessions of every kind created per client address per UTC day (SESSIONHUB_PATTERNS_CREATES_PER_DAY).
    creates_per_day: int
    list_limit: int
    max_materials: int
    login_link_ttl_s: int
    login_token_ttl_s: int
    signins_per_min: int
    # Jobs the guests of one client address may queue per minute (SESSIONHUB_JOBS_PER_MIN_PER_ADDRESS).
    jobs_per_min_per_address: int = 60
    # New Idempotency-Keys the guests of one address claim per UTC day (answers kept a day).
    idempotency_keys_per_day_per_address: int = 20_000
    # Refusals over the event rate within the window that disconnect a connection ("flood").
    flood_refusals: int = 200
    flood_window_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a handler or a job processor may use."""

    redis: Redis
    keys: Keys
    clock: Clock
    scripts: Scripts
    log: EventLog
    sessions: SessionDirectory
    kinds: KindRegistry
    voice: VoiceSessions
    jobs: JobQueue
    limiter: RateLimiter
    login_tokens: LoginTokens
    identities: Identities
    passkeys: Passkeys
    passkey_rp: RelyingParty | None  # None: passkeys are off (no SESSIONHUB_PUBLIC_URL)
    cleanups: OwedCleanups
    tokens: TokenService
    limits: Limits
    bus: Subscriptions
    metrics: Metrics
    storage_guard: StorageGuard
    disk: DiskRoom  # the audio and data folders' disks against the upload reserve
    public_url: str
    trust_forwarded_for: int  # trusted proxies in front (0: none); handlers.http_common.address_of
    web_dir: Path

    @property
    def store(self) -> Store:
        """What a session kind's repository is built on."""
        return Store(
            redis=self.redis,
            keys=self.keys,
            scripts=self.scripts,
            log=self.log,
            clock=self.clock,
            sessions=self.sessions,
        )
