"""Installs admin and operations on a server: the admin API and page, Prometheus, heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

from aiohttp import web

from handlers.admin.alerts import Alerts
from handlers.admin.bulk import BulkRoutes
from handlers.admin.config import AdminConfig
from handlers.admin.dead_letters import DeadLetterRoutes
from handlers.admin.deletion import SessionDeleter
from handlers.admin.http import AdminRoutes
from handlers.admin.nodes import NodeHeartbeat
from handlers.admin.openapi import OpenApiRoutes
from handlers.admin.operations import OPERATIONS
from handlers.admin.requests import SessionsQuery, sessions_query_for
from handlers.admin.prom import PrometheusRoutes
from handlers.admin.request_log import add_request_id, log_front_answer, request_log
from handlers.http_common import FRONT_HOOKS
from handlers.context import Services
from handlers.openapi_registry import document
from handlers.socket_router import SocketRouter
from handlers.web_pages import add_page
from storage.admin.repository import AdminStore
from storage.admin.recalc import AdminRecalc
from storage.dead_letters import DeadLetters
from storage.patterns.remix_tree import RemixTree


SETTLE_ON_EXIT_S = 5.0


def install(services: Services, router: SocketRouter, app: web.Application, *, config: AdminConfig) -> None:
    """Register everything admin serves (no session kind: admin reads every kind's sessions)."""
    store = AdminStore(
        redis=services.redis,
        keys=services.keys,
        log=services.log,
        clock=services.clock,
        sessions=services.sessions,
        orphan_days=config.orphan_days,
    )
    recalc = AdminRecalc(redis=services.redis, keys=services.keys, clock=services.clock, sessions=services.sessions)
    nodes = NodeHeartbeat(services, interval_s=config.node_heartbeat_s)
    nodes.register(app)

    async def settle_touches(_: web.Application) -> None:
        # Before the Redis client closes; bounded, so a stuck Redis never holds up a shutdown.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(services.sessions.close(), SETTLE_ON_EXIT_S)

    app.on_cleanup.append(settle_touches)
    alerts = Alerts(services, store, config, nodes)
    tree = RemixTree(redis=services.redis, keys=services.keys)
    deleter = SessionDeleter(services, store)
    # Admin installs last (server.app.capabilities), so every kind is registered by now.
    sessions_query = sessions_query_for(services.kinds.names())
    AdminRoutes(
        services, store=store, recalc=recalc, config=config, nodes=nodes, alerts=alerts, tree=tree, deleter=deleter,
        sessions_query=sessions_query,
    ).register(app)  # fmt: skip
    BulkRoutes(services, store=store, recalc=recalc, config=config, deleter=deleter).register(app)
    letters = DeadLetters(redis=services.redis, keys=services.keys, clock=services.clock)
    DeadLetterRoutes(services, store=store, letters=letters, config=config).register(app)
    PrometheusRoutes(services, store=store, config=config, alerts=alerts).register(app)
    OpenApiRoutes(services.web_dir, services.limits.list_limit).register(app)
    document(app, tuple(replace(op, query=sessions_query) if op.query is SessionsQuery else op for op in OPERATIONS))
    app.middlewares.append(request_log)
    app.setdefault(FRONT_HOOKS, []).append(log_front_answer)
    app.on_response_prepare.append(add_request_id)
    add_page(app, "/admin", services.web_dir / "admin.html")
