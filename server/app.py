"""The app factory: Socket.IO, the node's bus, the capabilities and the HTTP routes, wired once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from aiohttp import web

from handlers.admin import capability as admin
from handlers.admin.config import AdminConfig
from handlers.auth_http import AuthRoutes
from handlers.streams import capability as clips
from handlers.streams.settings import ClipSettings
from handlers.cleanups import CleanupRetry
from handlers.connection import Connections
from handlers.connection_events import ConnectionEvents
from handlers.context import Services
from handlers.health import HealthRoutes
from handlers.http_common import UPGRADE_HOOKS
from handlers.home import HomeRoutes
from handlers.patterns import capability as patterns
from handlers.patterns.config import PatternConfig
from handlers.listening import capability as listening
from handlers.listening.config import ListeningSettings
from handlers.metrics import METRICS_KEY
from handlers.socket_router import SocketRouter
from handlers.subscriptions import SubscriptionEvents
from handlers.voice import capability as voice
from handlers.web_pages import WebPages
from server import logs
from server.bus import Bus
from server.transport.fastpath import FrontSite, SessionServer, check_versions
from server.services import limits_section
from server.settings import Settings

log = logging.getLogger(__name__)

# Where Socket.IO is served (python-socketio's default path, as its clients expect).
SOCKETIO_PATH = "/socket.io/"
# Engine.IO's hard limit: a message above it closes the connection. The soft, answering
# limit is Settings.max_payload_bytes (see server.transport.fastpath).
HARD_MESSAGE_LIMIT_BYTES = 1 << 20

SERVICES_KEY = web.AppKey("services", Services)
BUS_KEY = web.AppKey("bus", Bus)
SIO_KEY = web.AppKey("sio", SessionServer)
IDLE_TIMEOUT_KEY = web.AppKey("http_idle_timeout_s", float)

Capability = Callable[[Services, SocketRouter, web.Application], None]


def capabilities(settings: Settings) -> Sequence[Capability]:
    """Every capability the server serves, each with its limits: it installs its kind, events, routes."""
    return (
        voice.install,
        partial(patterns.install, config=limits_section(settings, "patterns_", PatternConfig)),
        partial(clips.install, settings=limits_section(settings, "clips_", ClipSettings)),
        partial(listening.install, settings=limits_section(settings, "listening_", ListeningSettings)),
        partial(admin.install, config=limits_section(settings, "admin_", AdminConfig)),
    )


def build_sio(settings: Settings) -> SessionServer:
    """The Socket.IO server with the direct WebSocket fan-out (``UnsupportedVersions`` when the
    installed libraries are outside the range the fast path was tested with)."""
    check_versions()
    sio = SessionServer(
        max_payload_bytes=settings.max_payload_bytes,
        slow_limit_bytes=settings.slow_client_buffer_bytes,
        connect_timeout_s=settings.connect_timeout_s,
        max_connections_per_address=settings.max_connections_per_address,
        trust_forwarded_for=settings.trust_forwarded_for,
        async_mode="aiohttp",
        max_http_buffer_size=HARD_MESSAGE_LIMIT_BYTES,
        ping_interval=settings.ping_interval_s,
        ping_timeout=settings.ping_timeout_s,
        logger=False,
        engineio_logger=False,
    )
    return sio


def attach_bus(services: Services, sio: SessionServer) -> tuple[Services, Bus]:
    """The node's bus delivering to ``sio``'s sockets, and the bundle that carries it."""

    def resolve(sid: str) -> Any | None:
        eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
        return sio.eio.sockets.get(eio_sid) if eio_sid else None

    bus = Bus(
        redis=services.redis,
        keys=services.keys,
        log=services.log,
        resolve=resolve,
        metrics=services.metrics,
        clock=services.clock,
    )
    return replace(services, bus=bus), bus


def add_routes(
    app: web.Application, services: Services, sio: SessionServer, bus: Bus, installs: Sequence[Capability]
) -> None:
    """Socket.IO events and HTTP routes of the shared parts and of every capability."""
    connections = Connections()
    ConnectionEvents(services, connections).register(sio)
    router = SocketRouter(sio, services, connections)
    SubscriptionEvents(services).register(router)
    for install in installs:
        install(services, router, app)
    AuthRoutes(services).register(app)
    HomeRoutes(services).register(app)
    HealthRoutes(redis_ping=services.redis.ping, bus_alive=lambda: bus.alive).register(app)
    WebPages(services.web_dir).register(app)


def build_app(settings: Settings, *, services: Services) -> web.Application:
    """The whole server as an aiohttp application (started by ``web.run_app`` or a test runner).

    ``services`` is the bundle of ``server.services.build_services``; the bus is added here.
    """
    logs.quiet_client_errors()  # a client's malformed request is no server ERROR
    sio = build_sio(settings)
    services, bus = attach_bus(services, sio)
    # keepalive_timeout also closes a connection that sends nothing, or trickles its headers,
    # for that long (aiohttp starts the timer when the connection is made).
    app = web.Application(
        client_max_size=HARD_MESSAGE_LIMIT_BYTES, handler_args={"keepalive_timeout": settings.http_idle_timeout_s}
    )
    app[SERVICES_KEY] = services
    app[BUS_KEY] = bus
    app[SIO_KEY] = sio
    app[METRICS_KEY] = services.metrics
    app[UPGRADE_HOOKS] = []
    app[IDLE_TIMEOUT_KEY] = settings.http_idle_timeout_s
    sio.attach(app, SOCKETIO_PATH.strip("/"))
    add_routes(app, services, sio, bus, capabilities(settings))

    async def start_bus(_: web.Application) -> None:
        await bus.start()

    async def stop_bus(_: web.Application) -> None:
        await bus.stop()

    app.on_startup.append(start_bus)
    app.on_cleanup.append(stop_bus)
    CleanupRetry(services, interval_s=settings.cleanup_retry_s).register(app)
    return app


def front_site(runner: web.AppRunner, host: str, port: int) -> FrontSite:
    """The listening site of a :func:`build_app` application (``runner`` set up): WebSocket opens
    answered by ``server.transport.front``, everything else by aiohttp."""
    app = runner.app
    return FrontSite(
        runner,
        host,
        port,
        upgrader=app[SIO_KEY].eio,
        path=SOCKETIO_PATH,
        idle_timeout_s=app[IDLE_TIMEOUT_KEY],
        observers=app[UPGRADE_HOOKS],
    )
