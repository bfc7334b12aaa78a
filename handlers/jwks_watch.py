"""Keeps the external provider's JWKS current: every ``refresh_s``, and within the request that
brings a token with an unknown ``kid`` (see ``auth.jwks``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from functools import partial

import aiohttp
from aiohttp import web

from auth.jwks import JwksKeys
from auth.tokens import TokenService
from handlers.background import STOP_WAIT_S, cancelled
from handlers.http_common import RouteHandler

log = logging.getLogger(__name__)

FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10)
MAX_DOCUMENT_BYTES = 256 * 1024


class JwksWatch:
    """Fetches ``keys.url`` while the app runs; a failed fetch keeps the keys it had."""

    def __init__(self, tokens: TokenService, keys: JwksKeys) -> None:
        self._tokens = tokens
        self._keys = keys

    def register(self, app: web.Application) -> None:
        """Run the refresher for the app's lifetime (the first fetch before the app serves), and
        let a request whose bearer token names an unknown ``kid`` wait for a fresh document."""
        app.cleanup_ctx.append(self._lifetime)
        app.middlewares.append(self._learn_key)

    @web.middleware
    async def _learn_key(self, request: web.Request, handler: RouteHandler) -> web.StreamResponse:
        # The routes verify tokens synchronously (handlers.http_common.bearer_claims); the one
        # await a new key needs happens here, before them. Socket.IO connects do it themselves.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            await self._tokens.learn_key(token.strip())
        return await handler(request)

    async def _lifetime(self, _: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(timeout=FETCH_TIMEOUT) as http:
            await self.fetch(http)
            self._keys.fetcher = partial(self.fetch, http)
            task = asyncio.create_task(self._refresh_forever(http))
            yield
            self._keys.fetcher = None
            task.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait({task}, timeout=STOP_WAIT_S)

    async def _refresh_forever(self, http: aiohttp.ClientSession) -> None:
        while not cancelled():
            await asyncio.sleep(self._keys.refresh_s)
            await self.fetch(http)

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
