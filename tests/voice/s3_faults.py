"""A bucket endpoint that fails the way a partitioned or overloaded S3 does: it takes each
connection and never answers (for the S3 blob store's outage tests)."""

from __future__ import annotations

import asyncio
import contextlib


class HungEndpoint:
    """A loopback TCP server that accepts, reads and discards, and never answers."""

    def __init__(self) -> None:
        self.accepted = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> HungEndpoint:
        """Listen on a free loopback port (``url``)."""
        self._server = await asyncio.start_server(self._take, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def _take(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    async def close(self) -> None:
        """Stop listening and cut every connection taken: the calls held fail at once."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
