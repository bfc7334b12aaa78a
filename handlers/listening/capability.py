"""Installs listening histories on a server: the kind, events, routes, pages and the sweeper."""

from __future__ import annotations

from aiohttp import web

from handlers.context import Services
from handlers.listening.config import ListeningSettings
from handlers.listening.day_cap import GuestDayCap
from handlers.listening.events import ListeningEvents
from handlers.listening.http import ListeningRoutes
from handlers.listening.kind import ListeningKind
from handlers.listening.operations import OPERATIONS
from handlers.listening.sweeper import Sweeper
from handlers.openapi_registry import document
from handlers.socket_router import SocketRouter
from handlers.web_pages import add_page
from storage.listening.repository import ListeningHistories


def install(services: Services, router: SocketRouter, app: web.Application, *, settings: ListeningSettings) -> None:
    """Register everything listening histories serve, with ``settings``' rules and caps."""
    histories = ListeningHistories(services.store, rules=settings.rules())
    services.kinds.register(ListeningKind(histories))
    cap = GuestDayCap(services.limiter, settings.guest_sessions_per_day)
    ListeningEvents(histories, services.clock, cap).register(router)
    ListeningRoutes(services, histories, cap, reports_per_min=settings.http_reports_per_min).register(app)
    document(app, OPERATIONS)
    add_page(app, "/history", services.web_dir / "history.html")
    add_page(app, "/player", services.web_dir / "player.html")
    Sweeper(histories, interval_s=settings.sweep_interval_s).register(app)
