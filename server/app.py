"""The app factory: builds every dependency once and wires HTTP, Socket.IO and the bus."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis

from auth.tokens import TokenService
from handlers.auth_http import AuthRoutes
from handlers.connection import Connections
from handlers.connection_events import ConnectionEvents
from handlers.context import Limits, Services
from handlers.health import HealthRoutes
from handlers.socket_router import SocketRouter
from handlers.subscriptions import SubscriptionEvents
from handlers.voice_events import VoiceEvents
from handlers.voice_bot import BotRoutes
from handlers.voice_http import VoiceRoutes
from handlers.web_pages import WebPages
from server.bus import Bus
from server.outlet import DirectWebSocket
from server.settings import Settings
from server.sio import SessionServer
from storage.clock import Clock
from storage.events import EventLog
from storage.jobs import JobQueue
from storage.keys import Keys
from storage.login_tokens import LoginTokens
from storage.ratelimit import RateLimiter
from storage.scripts import Scripts
from storage.voice import VoiceSessions

log = logging.getLogger(__name__)

# Engine.IO's hard limit: a message above it closes the connection. The soft, answering
# limit is Settings.max_payload_bytes (see server.sio).
HARD_MESSAGE_LIMIT_BYTES = 1 << 20

SERVICES_KEY = web.AppKey("services", Services)
BUS_KEY = web.AppKey("bus", Bus)
SIO_KEY = web.AppKey("sio", SessionServer)


@dataclass(frozen=True, slots=True)
class Storage:
    """The Redis-backed repositories, built on one client."""

    redis: Redis
    keys: Keys
    clock: Clock
    scripts: Scripts
    log: EventLog
    voice: VoiceSessions
    jobs: JobQueue
    limiter: RateLimiter

    @classmethod
    def build(cls, redis: Redis, settings: Settings, clock: Clock | None = None) -> Storage:
        """Repositories sharing ``redis`` (which must decode responses)."""
        clock = clock or Clock()
        keys = Keys(settings.key_prefix)
        scripts = Scripts.load(redis)
        event_log = EventLog(redis=redis, keys=keys, clock=clock, maxlen=settings.stream_maxlen)
        return cls(
            redis=redis,
            keys=keys,
            clock=clock,
            scripts=scripts,
            log=event_log,
            voice=VoiceSessions(redis=redis, keys=keys, scripts=scripts, log=event_log, clock=clock),
            jobs=JobQueue(redis=redis, keys=keys, scripts=scripts, clock=clock),
            limiter=RateLimiter(redis=redis, keys=keys, clock=clock),
        )


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


def build_app(settings: Settings, *, storage: Storage, tokens: TokenService) -> web.Application:
    """The whole server as an aiohttp application (started by ``web.run_app`` or a test runner)."""
    redis = storage.redis
    sio = SessionServer(
        max_payload_bytes=settings.max_payload_bytes,
        async_mode="aiohttp",
        max_http_buffer_size=HARD_MESSAGE_LIMIT_BYTES,
        ping_interval=settings.ping_interval_s,
        ping_timeout=settings.ping_timeout_s,
        logger=False,
        engineio_logger=False,
    )
    DirectWebSocket.slow_limit_bytes = settings.slow_client_buffer_bytes
    sio.eio._async["websocket"] = DirectWebSocket

    def resolve(sid: str) -> Any | None:
        eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
        return sio.eio.sockets.get(eio_sid) if eio_sid else None

    bus = Bus(redis=redis, keys=storage.keys, log=storage.log, resolve=resolve)
    services = Services(
        clock=storage.clock,
        tokens=tokens,
        voice=storage.voice,
        log=storage.log,
        jobs=storage.jobs,
        limiter=storage.limiter,
        bus=bus,
        login_tokens=LoginTokens(redis=redis, keys=storage.keys),
        limits=Limits(
            max_payload_bytes=settings.max_payload_bytes,
            event_rate_per_s=settings.event_rate_per_s,
            event_burst=settings.event_burst,
            guest_token_ttl_s=settings.guest_token_ttl_s,
            guests_per_min=settings.guests_per_min,
            creates_per_min=settings.creates_per_min,
            login_link_ttl_s=settings.login_link_ttl_s,
            login_token_ttl_s=settings.login_token_ttl_s,
        ),
        public_url=settings.public_url,
        trust_forwarded_for=settings.trust_forwarded_for,
    )
    connections = Connections()
    ConnectionEvents(services, connections).register(sio)
    router = SocketRouter(sio, services, connections)
    SubscriptionEvents(services).register(router)
    VoiceEvents(services).register(router)

    app = web.Application(client_max_size=HARD_MESSAGE_LIMIT_BYTES)
    app[SERVICES_KEY] = services
    app[BUS_KEY] = bus
    app[SIO_KEY] = sio
    sio.attach(app)
    AuthRoutes(services).register(app)
    VoiceRoutes(services).register(app)
    BotRoutes(services).register(app)
    HealthRoutes(redis_ping=redis.ping, bus_alive=lambda: bus.alive).register(app)
    WebPages(settings.web_dir).register(app)

    async def start_bus(_: web.Application) -> None:
        await bus.start()

    async def stop_bus(_: web.Application) -> None:
        await bus.stop()

    app.on_startup.append(start_bus)
    app.on_cleanup.append(stop_bus)
    return app
