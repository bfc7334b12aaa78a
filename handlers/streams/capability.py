"""Installs stream sessions on a server: the kind, the socket events, the HTTP routes, the pages."""

from __future__ import annotations

from aiohttp import web

from handlers.streams.day_cap import ClipsDayCap
from handlers.streams.events import StreamEvents
from handlers.streams.export import ExportRoutes
from handlers.streams.http import StreamRoutes
from handlers.streams.kind import StreamAudienceKind, StreamKind
from handlers.streams.operations import OPERATIONS
from handlers.streams.review import ReviewRoutes
from handlers.streams.settings import ClipSettings
from handlers.context import Services
from handlers.openapi_registry import document
from handlers.socket_router import SocketRouter
from handlers.web_pages import add_page
from storage.streams.repository import StreamSessions


def install(services: Services, router: SocketRouter, app: web.Application, *, settings: ClipSettings) -> None:
    """Register everything stream sessions serve, within ``settings``' limits."""
    streams = StreamSessions(services.store, cached_clips=settings.cached)
    services.kinds.register(StreamKind(services, streams))
    services.kinds.register(StreamAudienceKind(streams))
    day_cap = ClipsDayCap(services.limiter, settings.max_per_address_per_day)  # one per node: its reserve
    StreamEvents(streams, settings, day_cap).register(router)
    StreamRoutes(services, streams, settings, day_cap).register(app)
    ExportRoutes(services, streams, settings).register(app)
    ReviewRoutes(services, streams).register(app)
    document(app, OPERATIONS)
    add_page(app, "/streams", services.web_dir / "streams.html")
    add_page(app, r"/streams/{session_id}", services.web_dir / "stream.html")
    add_page(app, r"/watch/{session_id}", services.web_dir / "watch.html")
