"""The blob store's place in the app's lifetime: a look at it as the app starts (a bucket that
is missing, refuses the credentials or does not answer is said in one WARNING line: the node
starts anyway, since the bucket may come later), and its threads let go as the app stops."""

from __future__ import annotations

import logging

from aiohttp import web

from handlers.background import for_app_lifetime
from handlers.context import Services

log = logging.getLogger(__name__)


class BlobStoreLifetime:
    """Checks the voice blob store once at start; closes it (the S3 store's threads) at cleanup."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def register(self, app: web.Application) -> None:
        """Look at the store as the app starts (without holding the start), close it as it stops."""

        async def close(_: web.Application) -> None:
            self._s.voice.blobs.close()

        for_app_lifetime(app, self._check)
        app.on_cleanup.append(close)

    async def _check(self) -> None:
        warning = await self._s.voice.blobs.check()
        if warning:
            log.warning("%s", warning)
