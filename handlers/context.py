"""What handlers are given: services built once in server/, and the limits they enforce."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from auth.tokens import TokenService
from storage.clock import Clock
from storage.events import EventLog
from storage.jobs import JobQueue
from storage.login_tokens import LoginTokens
from storage.ratelimit import RateLimiter
from storage.voice import VoiceSessions


class Subscriptions(Protocol):
    """The node's bus as handlers see it (implemented by server.bus.Bus)."""

    async def open(self, session_id: str, sid: str) -> None: ...

    def send(self, sid: str, event: str, data_json: str) -> None: ...

    def go_live(self, session_id: str, sid: str, after_offset: int) -> None: ...

    def leave(self, session_id: str, sid: str) -> bool: ...

    def leave_all(self, sid: str) -> None: ...

    def sessions_of(self, sid: str) -> set[str]: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps and rates enforced at the edge."""

    max_payload_bytes: int = 16384
    event_rate_per_s: float = 20.0
    event_burst: int = 40
    max_subscriptions: int = 100
    guest_token_ttl_s: int = 3600
    guests_per_min: int = 30
    creates_per_min: int = 10
    list_limit: int = 200
    max_materials: int = 10_000
    login_link_ttl_s: int = 600
    login_token_ttl_s: int = 86400


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a handler may call."""

    clock: Clock
    tokens: TokenService
    voice: VoiceSessions
    log: EventLog
    jobs: JobQueue
    limiter: RateLimiter
    bus: Subscriptions
    login_tokens: LoginTokens
    limits: Limits
    public_url: str = ""
    trust_forwarded_for: bool = False

    def session_url(self, session_id: str) -> str:
        """Canonical link of a voice session page (absolute when a public URL is set)."""
        return f"{self.public_url.rstrip('/')}/session/{session_id}"
