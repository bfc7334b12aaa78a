"""The stock lane's listening site: aiohttp's request handler behind the same acceptor as the
fast lane's, through documented API only.

Without it the stock lane listened with aiohttp's own ``TCPSite``, and asyncio accepted every
connection: one address holding idle or trickling connections, or a few addresses together,
took every descriptor of the process, and then the server could open no Redis connection and
no file (pages answered 404, creates 500) and new connections went unanswered
(``bench/descriptor_flood.py``). That is what an install whose libraries float past the fast
lane's tested versions would run.

:class:`StockSite` binds with asyncio (``create_server(start_serving=False)``: never serving)
and accepts with ``server.transport.accept.Acceptor``, as the fast lane's ``FrontSite`` does:
``/healthz`` answered in the turn it is accepted, ``SESSIONHUB_MAX_HTTP_CONNECTIONS_PER_ADDRESS``
(``429``) and ``SESSIONHUB_DESCRIPTOR_RESERVE`` (``503``) applied before a connection costs a
transport, and a listen backlog of ``LISTEN_BACKLOG``. Each connection kept is served by
``runner.server``, aiohttp's low-level ``web.Server``, documented as a protocol factory for
``loop.create_server``; a counted one is wrapped in :class:`PlacedProtocol`, which gives its
address's place back when the connection closes, or when it becomes a Socket.IO WebSocket
(:func:`hand_over`; ``SESSIONHUB_MAX_CONNECTIONS_PER_ADDRESS`` counts it from there, as on the
fast lane).

The site registers with its runner through ``BaseSite.start``/``stop`` (the documented way a
site is started and stopped) and keeps its asyncio server in an attribute of its own, so
``runner.addresses`` (which reads a private attribute of aiohttp's sites) does not list it:
:attr:`StockSite.port` says where it listens, as ``TCPSite.port`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from handlers.http_common import FIXED_ANSWERS, FrontAnswer
from server.transport.accept import LISTEN_BACKLOG, Acceptor, ConnectionPlaces, accept_on


class PlacedProtocol(asyncio.Protocol):
    """aiohttp's handler of one connection, counted on its address and watched for how it ends:
    every call passed on, the place given back once, when the connection closes or is handed over
    (:meth:`give_back`), and ``lost`` told the error the connection was lost with (the write
    deadline's, to tell a connection the kernel's timeout ended; aiohttp keeps it to itself)."""

    __slots__ = ("_inner", "_lost", "_place", "_places", "_transport")

    def __init__(
        self,
        inner: asyncio.Protocol,
        places: ConnectionPlaces | None,
        place: str,
        lost: Callable[[asyncio.BaseTransport | None, BaseException | None], object] | None = None,
    ) -> None:
        self._inner = inner
        self._places = places
        self._place = place
        self._lost = lost  # told how each connection ended (the write deadline's `lost`)
        self._transport: asyncio.BaseTransport | None = None

    def give_back(self) -> None:
        """The connection no longer counts on its address (closed, or a WebSocket now)."""
        if self._place and self._places is not None:
            self._places.give_back(self._place)
            self._place = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.give_back()
        if self._lost is not None:
            self._lost(self._transport, exc)
        self._transport = None
        self._inner.connection_lost(exc)


def hand_over(transport: asyncio.BaseTransport | None) -> None:
    """The connection of ``transport`` is a Socket.IO WebSocket from now on: its HTTP place is
    given back (the Socket.IO cap counts it). Nothing for a connection that was not counted."""
    protocol = transport.get_protocol() if transport is not None else None
    if isinstance(protocol, PlacedProtocol):
        protocol.give_back()


class StockSite(web.BaseSite):
    """Listens on ``host``:``port`` and accepts through :class:`~server.transport.accept.Acceptor`
    (see the module docstring)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        observers: list[Callable[[FrontAnswer], None]],
        places: ConnectionPlaces | None = None,
        on_refused: Callable[[str], None] | None = None,
        descriptor_reserve: int | None = None,
        lost: Callable[[asyncio.BaseTransport | None, BaseException | None], object] | None = None,
    ) -> None:
        super().__init__(runner)
        self.lost = lost
        self.runner = runner
        self.host = host
        self.requested_port = port
        self.bound_port: int | None = None
        self.observers = observers
        self.places = places
        self.on_refused = on_refused
        self.descriptor_reserve = descriptor_reserve
        self.listening: asyncio.Server | None = None
        self.acceptors: list[Acceptor] = []

    @property
    def port(self) -> int:
        """The port listened on once started (the one asked for before)."""
        return self.bound_port if self.bound_port is not None else self.requested_port

    @property
    def name(self) -> str:
        return f"http://{self.host or '0.0.0.0'}:{self.port}"

    async def start(self) -> None:
        await super().start()
        http = self.runner.server
        assert http is not None, "runner.setup() first"
        places, lost = self.places, self.lost

        def protocol(place: str) -> asyncio.Protocol:
            handler = http()
            if (place and places is not None) or lost is not None:
                return PlacedProtocol(handler, places, place, lost)
            return handler

        # Bound by asyncio, never served by it (its factory is never called): the acceptors take
        # every connection. reuse_address as aiohttp's TCPSite (asyncio's default on POSIX).
        self.listening = await asyncio.get_running_loop().create_server(
            http, self.host, self.requested_port, start_serving=False
        )
        fixed = self.runner.app.get(FIXED_ANSWERS, {}) if isinstance(self.runner, web.AppRunner) else {}
        self.acceptors = accept_on(
            self.listening, protocol, fixed=fixed, observers=self.observers, places=places,
            on_refused=self.on_refused, backlog=LISTEN_BACKLOG, descriptor_reserve=self.descriptor_reserve,
        )  # fmt: skip
        sockets = self.listening.sockets
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.requested_port

    async def stop(self) -> None:
        for acceptor in self.acceptors:
            acceptor.stop()
        self.acceptors.clear()
        if self.listening is not None:
            self.listening.close()
            self.listening = None
        await super().stop()
