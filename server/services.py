"""Builds the one dependency bundle (``handlers.context.Services``) from settings, once."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from auth.tokens import TokenService
from handlers.context import Limits, NoSubscriptions, Services, Subscriptions
from handlers.kinds import KindRegistry
from server.settings import Settings
from storage.clock import Clock
from storage.events import EventLog
from storage.jobs import JobQueue
from storage.keys import Keys
from storage.login_tokens import LoginTokens
from storage.ratelimit import RateLimiter
from storage.scripts import Scripts
from storage.sessions import SessionDirectory
from storage.voice import VoiceSessions


def connect_redis(url: str, *, max_connections: int = 512) -> Redis:
    """The Redis client every component shares.

    The pool blocks (up to 5 s) when all its connections are busy, instead of failing: a burst
    of reconnecting clients must wait its turn, not get ``internal_error``.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        decode_responses=True,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    return Redis.from_pool(pool)


def limits_from(settings: Settings) -> Limits:
    """The edge limits: the only place where settings become limits (defaults live in Settings)."""
    return Limits(
        max_payload_bytes=settings.max_payload_bytes,
        event_rate_per_s=settings.event_rate_per_s,
        event_burst=settings.event_burst,
        max_subscriptions=settings.max_subscriptions,
        guest_token_ttl_s=settings.guest_token_ttl_s,
        guests_per_min=settings.guests_per_min,
        creates_per_min=settings.creates_per_min,
        creates_per_min_per_address=settings.creates_per_min_per_address,
        list_limit=settings.list_limit,
        max_materials=settings.max_materials,
        login_link_ttl_s=settings.login_link_ttl_s,
        login_token_ttl_s=settings.login_token_ttl_s,
    )


def build_services(
    settings: Settings,
    *,
    redis: Redis,
    tokens: TokenService,
    bus: Subscriptions | None = None,
    clock: Clock | None = None,
) -> Services:
    """Every repository on ``redis`` (which must decode responses), with the node's bus."""
    clock = clock or Clock()
    keys = Keys(settings.key_prefix)
    scripts = Scripts.load(redis)
    event_log = EventLog(redis=redis, keys=keys, clock=clock, maxlen=settings.stream_maxlen)
    sessions = SessionDirectory(redis=redis, keys=keys)
    return Services(
        redis=redis,
        keys=keys,
        clock=clock,
        scripts=scripts,
        log=event_log,
        sessions=sessions,
        kinds=KindRegistry(sessions),
        voice=VoiceSessions(redis=redis, keys=keys, scripts=scripts, log=event_log, clock=clock, sessions=sessions),
        jobs=JobQueue(redis=redis, keys=keys, clock=clock),
        limiter=RateLimiter(redis=redis, keys=keys, clock=clock),
        login_tokens=LoginTokens(redis=redis, keys=keys),
        tokens=tokens,
        limits=limits_from(settings),
        bus=bus if bus is not None else NoSubscriptions(),
        public_url=settings.public_url,
        trust_forwarded_for=settings.trust_forwarded_for,
        web_dir=settings.web_dir,
    )
