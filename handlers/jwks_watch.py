"""Keeps the external provider's JWKS current: every ``refresh_s``, and soon after an unknown ``kid``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from auth.jwks import JwksKeys
from handlers.background import STOP_WAIT_S, cancelled

log = logging.getLogger(__name__)

FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10)
MAX_DOCUMENT_BYTES = 256 * 1024


class JwksWatch:
    """Fetches ``keys.url`` while the app runs; a failed fetch keeps the keys it had."""

    def __init__(self, keys: JwksKeys) -> None:
        self._keys = keys

    def register(self, app: web.Application) -> None:
        """Run the refresher for the app's lifetime (the first fetch before the app serves)."""
        app.cleanup_ctx.append(self._lifetime)

    async def _lifetime(self, _: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(timeout=FETCH_TIMEOUT) as http:
            await self.fetch(http)
            task = asyncio.create_task(self._refresh_forever(http))
            yield
            task.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait({task}, timeout=STOP_WAIT_S)

    async def _refresh_forever(self, http: aiohttp.ClientSession) -> None:
        while not cancelled():
            self._keys.wanted.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._keys.wanted.wait(), self._keys.refresh_s)
            await self.fetch(http)
            # A flood of tokens with made-up kids must not turn into a flood of fetches.
            await asyncio.sleep(self._keys.min_interval_s)

    async def fetch(self, http: aiohttp.ClientSession) -> None:
        """One fetch of the JWKS document; logged, never raised."""
        try:
            async with http.get(self._keys.url) as response:
                response.raise_for_status()
                raw = await response.content.read(MAX_DOCUMENT_BYTES + 1)
                if len(raw) > MAX_DOCUMENT_BYTES:
                    raise ValueError("the JWKS document is too large")
                count = self._keys.replace(json.loads(raw))
            log.debug("JWKS: %d key(s) from %s", count, self._keys.url)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("JWKS %s: %s (keeping the keys fetched before)", self._keys.url, exc)
