"""The blob store's place in the app's lifetime: let go of its threads when the app stops."""

from __future__ import annotations

from aiohttp import web

from handlers.context import Services


class BlobStoreLifetime:
    """Closes the voice blob store (the S3 store's own threads) on the app's cleanup."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def register(self, app: web.Application) -> None:
        """Close the store as the app stops."""

        async def close(_: web.Application) -> None:
            self._s.voice.blobs.close()

        app.on_cleanup.append(close)
