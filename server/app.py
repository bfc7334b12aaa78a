"""The app factory: Socket.IO, the node's bus, the capabilities and the HTTP routes, wired once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from functools import partial

from aiohttp import web
from redis.asyncio.cluster import RedisCluster

from handlers.admin import capability as admin
from handlers.admin.config import AdminConfig
from handlers.account_http import AccountRoutes
from handlers.auth_http import AuthRoutes
from handlers.streams import capability as clips
from handlers.streams.settings import ClipSettings
from handlers.cleanups import CleanupRetry
from handlers.guest_retention import GuestSweeper
from handlers.connection import Connections
from handlers.connection_events import ConnectionEvents
from handlers.context import Services
from handlers.health import MEMORY_READ_BOUND_S, HealthRoutes
from handlers.http_common import FRONT_HOOKS, defer_continue, session_use_middleware
from handlers.head_requests import head_requests
from handlers.home import HomeRoutes
from handlers.jwks_watch import JwksWatch
from handlers.unread_bodies import close_after_unread_bodies
from handlers.paced_bodies import paced_bodies
from handlers.held_bytes import HELD_BYTES_KEY, HeldBytes
from handlers.write_deadline import WRITE_DEADLINE_KEY, WriteDeadline
from handlers.passkeys_http import PasskeyRoutes
from handlers.patterns import capability as patterns
from handlers.revocation_watch import RevocationWatch
from handlers.patterns.config import PatternConfig
from handlers.listening import capability as listening
from handlers.listening.config import ListeningSettings
from handlers.metrics import METRICS_KEY
from handlers.bodyless import bodyless_cap
from handlers.route_errors import route_errors
from handlers.socket_router import SocketRouter
from storage.clock import follow_redis, keep_following
from handlers.subscriptions import SubscriptionEvents
from handlers.token_renewal import TokenRenewal
from handlers.user_events import UserEvents
from handlers.voice import capability as voice
from handlers.web_pages import WebPages
from server import logs
from server.bus import Bus
from server.data_loss_watch import DataLossWatch
from server.services import limits_section
from server.settings import Settings
from server.transport import SocketServer, build_server, choose_lane
from server.transport.contract import ListeningSite
from storage.events import Durability
from storage.memory import memory_infos, replication_infos

log = logging.getLogger(__name__)

# Where Socket.IO is served (python-socketio's default path, as its clients expect).
SOCKETIO_PATH = "/socket.io/"
# Engine.IO's hard limit: a message above it closes the connection. The soft, answering
# limit is Settings.max_payload_bytes (applied by the fast lane, server.transport.fastpath).
HARD_MESSAGE_LIMIT_BYTES = 1 << 20

SERVICES_KEY = web.AppKey("services", Services)
BUS_KEY = web.AppKey("bus", Bus)
SIO_KEY = web.AppKey("sio", SocketServer)
IDLE_TIMEOUT_KEY = web.AppKey("http_idle_timeout_s", float)
# At shutdown, how long the Socket.IO events being handled get to finish: what `serve` gives an
# HTTP request (server.commands.SHUTDOWN_TIMEOUT_S).
HANDLERS_FINISH_S = 3.0
# How long the rest of a request's body is still read (and dropped) after an early answer (a
# 413, a refusal before the body was looked at), so that the client, still sending, gets the
# answer instead of a connection reset; then the connection is closed. aiohttp's own 10 s let
# one connection stream an endless body at the server for that long (13.5 GB on loopback).
LINGER_S = 2.0

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


def build_sio(
    settings: Settings, write_deadline: WriteDeadline | None = None, held_bytes: HeldBytes | None = None
) -> SocketServer:
    """The Socket.IO server of the lane ``settings.transport`` chooses (``server.transport``):
    the fast one, or the stock one when the libraries are untested (``UnsupportedVersions``
    when ``fast`` was asked for then; ``serve`` logs why once it serves). ``held_bytes``: the
    node's budget of unfinished requests, shared with its routes (one of the setting's size
    when not given)."""
    lane, _ = choose_lane(settings.transport)
    if held_bytes is None:
        held_bytes = HeldBytes(settings.partial_frames_budget_bytes)
    sio = build_server(
        lane,
        max_payload_bytes=settings.max_payload_bytes,
        slow_limit_bytes=settings.slow_client_buffer_bytes,
        connect_timeout_s=settings.connect_timeout_s,
        max_connections_per_address=settings.max_connections_per_address,
        max_http_connections_per_address=settings.http_connections_per_address,
        descriptor_reserve=settings.kept_descriptors,
        trust_forwarded_for=settings.forwarded_hops,
        held_bytes=held_bytes,
        outbound_budget_bytes=settings.outbound_budget_bytes,
        write_deadline=write_deadline,
        async_mode="aiohttp",
        max_http_buffer_size=HARD_MESSAGE_LIMIT_BYTES,
        ping_interval=settings.ping_interval_s,
        ping_timeout=settings.ping_timeout_s,
        logger=False,
        engineio_logger=False,
    )
    return sio


def attach_bus(services: Services, sio: SocketServer) -> tuple[Services, Bus]:
    """The node's bus delivering to ``sio``'s connections (their outlets), and the bundle that carries it."""
    bus = Bus(
        redis=services.redis,
        keys=services.keys,
        log=services.log,
        resolve=sio.outlet,
        metrics=services.metrics,
        clock=services.clock,
        read_active=services.voice.active_pointer,
    )
    sio.count_with(services.metrics.sent, services.metrics.refused)
    return replace(services, bus=bus), bus


async def _handlers_finished(router: SocketRouter, _app: web.Application) -> None:
    # An event being handled when the server stops finishes first (within the bound): its change
    # is made whole, its ack is sent before the transport closes the connection (this runs
    # before the transport ends its sessions), and the Redis client closed at cleanup is not
    # opened again by it. Events arriving meanwhile are answered `unavailable`, not run: under
    # steady traffic the handlers would otherwise never all be finished at once.
    router.stop_taking()
    left = await router.finished(HANDLERS_FINISH_S)
    if left:
        log.warning("stopping with %d Socket.IO events still being handled after %.0f s", left, HANDLERS_FINISH_S)


def add_routes(
    app: web.Application, services: Services, sio: SocketServer, bus: Bus, installs: Sequence[Capability]
) -> None:
    """Socket.IO events and HTTP routes of the shared parts and of every capability."""
    connections = Connections()
    ConnectionEvents(services, connections).register(sio)
    router = SocketRouter(sio, services, connections)
    # First of all: before the transport ends its sessions (registered when Socket.IO was
    # attached), so the acks of the events finishing still reach their clients.
    app.on_shutdown.insert(0, partial(_handlers_finished, router))
    SubscriptionEvents(services).register(router)
    UserEvents(services).register(router)
    TokenRenewal(services).register(router)
    for install in installs:
        install(services, router, app)
    auth_routes = AuthRoutes(services)
    auth_routes.register(app)
    AccountRoutes(services).register(app)
    PasskeyRoutes(services, auth_routes).register(app)
    if services.tokens.jwks is not None:
        JwksWatch(services.tokens, services.tokens.jwks).register(app)
    interval_s = services.identities.config.revocation_poll_s
    RevocationWatch(services, connections, sio, interval_s=interval_s).register(app)
    if not isinstance(services.redis, RedisCluster):
        # Not on a cluster: a FLUSHALL there is one shard's, and the watch's command to the shard
        # holding the secret, failing in a failover, made redis-py read the whole map again, which
        # marks the bus's shard links for a reconnect (a follower fell behind in the motion tests).
        DataLossWatch(services.log, bus).register(app)
    HomeRoutes(services).register(app)
    memory = partial(memory_infos, services.redis, MEMORY_READ_BOUND_S)
    replication = (
        partial(replication_infos, services.redis, MEMORY_READ_BOUND_S)
        if services.log.durability is Durability.REPLICA
        else None
    )
    HealthRoutes(
        redis_ping=services.redis.ping, bus_alive=lambda: bus.alive, redis_memory=memory, redis_replication=replication
    ).register(app)
    WebPages(services.web_dir).register(app)
    app.middlewares.append(bodyless_cap(services.limits.max_payload_bytes))
    app.middlewares.append(head_requests)  # a HEAD of a GET that writes is refused, never run
    app.middlewares.append(route_errors)  # innermost: the others see its JSON answers


def build_app(settings: Settings, *, services: Services) -> web.Application:
    """The whole server as an aiohttp application (started by ``web.run_app`` or a test runner).

    ``services`` is the bundle of ``server.services.build_services``; the bus is added here.
    """
    logs.quiet_client_errors()  # a client's malformed request is no server ERROR
    write_deadline = WriteDeadline(settings.write_stall_timeout_s)
    # One budget of bytes held for unfinished requests: the fast lane's frames and polling
    # bodies, and the routes' bodies (handlers.held_bytes).
    held_bytes = HeldBytes(settings.partial_frames_budget_bytes)
    sio = build_sio(settings, write_deadline, held_bytes)
    services, bus = attach_bus(services, sio)
    # keepalive_timeout also closes a connection that sends nothing, or trickles its headers,
    # for that long (aiohttp starts the timer when the connection is made).
    app = web.Application(
        client_max_size=HARD_MESSAGE_LIMIT_BYTES,
        handler_args={"keepalive_timeout": settings.http_idle_timeout_s, "lingering_time": LINGER_S},
    )
    app[SERVICES_KEY] = services
    app[BUS_KEY] = bus
    app[SIO_KEY] = sio
    app[METRICS_KEY] = services.metrics
    app[FRONT_HOOKS] = []
    app[IDLE_TIMEOUT_KEY] = settings.http_idle_timeout_s
    app[WRITE_DEADLINE_KEY] = write_deadline
    app[HELD_BYTES_KEY] = held_bytes
    app.middlewares.append(paced_bodies)  # outermost: every route's large answer, errors' included
    app.middlewares.append(close_after_unread_bodies)  # what paced_bodies writes keeps its close
    app.middlewares.append(session_use_middleware(services.sessions))
    sio.attach(app, SOCKETIO_PATH.strip("/"))
    add_routes(app, services, sio, bus, capabilities(settings))
    defer_continue(app)  # 100 Continue once a handler reads the body, its checks passed

    async def start_bus(_: web.Application) -> None:
        await bus.start()

    async def stop_bus(_: web.Application) -> None:
        await bus.stop()

    async def stop_engine(_: web.Application) -> None:
        # Engine.IO's ping-timeout task runs until told to stop: left running, it holds the whole
        # app (its Redis client included) for as long as the event loop lives.
        await sio.shutdown()
        write_deadline.stop()  # its timer, likewise

    app.on_startup.append(start_bus)
    app.on_shutdown.append(stop_engine)
    app.on_cleanup.append(stop_bus)
    CleanupRetry(services, interval_s=settings.cleanup_retry_s).register(app)
    GuestSweeper(services, interval_s=settings.cleanup_retry_s).register(app)
    app.cleanup_ctx.append(_on_redis_time)
    return app


async def _on_redis_time(app: web.Application) -> AsyncIterator[None]:
    """The node's clock follows its Redis' (``storage.clock``) for the app's lifetime."""
    services = app[SERVICES_KEY]
    with contextlib.suppress(Exception):  # Redis away at start: the bus says so; the loop retries
        await follow_redis(services.clock, services.redis)
    task = asyncio.create_task(keep_following(services.clock, services.redis))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def front_site(runner: web.AppRunner, host: str, port: int) -> ListeningSite:
    """The listening site of a :func:`build_app` application (``runner`` set up): on the fast
    lane WebSocket opens are answered by ``server.transport.front``, everything else by aiohttp."""
    app = runner.app
    return app[SIO_KEY].site(
        runner,
        host,
        port,
        path=SOCKETIO_PATH,
        idle_timeout_s=app[IDLE_TIMEOUT_KEY],
        observers=app[FRONT_HOOKS],
    )
