"""Installs voice sessions on a server: the kind, the socket events, the REST and bot routes,
audio chunks and the Telegram webhook."""

from __future__ import annotations

from aiohttp import web

from handlers.context import Services
from handlers.openapi_registry import document
from handlers.socket_router import SocketRouter
from handlers.voice.blob_store import BlobStoreLifetime
from handlers.voice.bot import BotRoutes
from handlers.voice.chunks import ChunkRoutes
from handlers.voice.events import VoiceEvents
from handlers.voice.http import VoiceRoutes
from handlers.voice.kind import VoiceKind
from handlers.voice.materials import MaterialRoutes
from handlers.voice.operations import OPERATIONS
from handlers.voice.recording import RecordingKeeper
from handlers.voice.retention import RetentionRoutes
from handlers.voice.telegram import TelegramWebhook


def install(services: Services, router: SocketRouter, app: web.Application) -> None:
    """Register everything voice sessions serve."""
    services.kinds.register(VoiceKind(services))
    recording = RecordingKeeper(services)
    recording.register(app)
    VoiceEvents(services, recording).register(router)
    VoiceRoutes(services).register(app)
    bot = BotRoutes(services)
    bot.register(app)
    ChunkRoutes(services).register(app)
    MaterialRoutes(services).register(app)
    BlobStoreLifetime(services).register(app)
    services.disk.register(app)  # a disk already short of the upload reserve is said at start
    RetentionRoutes(services).register(app)
    TelegramWebhook(services, bot).register(app)
    document(app, OPERATIONS)
