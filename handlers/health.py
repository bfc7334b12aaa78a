"""``/healthz`` (the process is up) and ``/readyz`` (Redis answers and the bus listens)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel

from handlers.openapi_registry import Auth, Operation, document


class Liveness(BaseModel):
    """``/healthz``."""

    ok: bool


class Readiness(Liveness):
    """``/readyz``: ``ok`` when both parts are."""

    redis: bool
    bus: bool


OPERATIONS = (
    Operation(
        "get",
        "/healthz",
        "Liveness: 200 while the process serves requests",
        tag="health",
        auth=Auth.NONE,
        response=Liveness,
    ),
    Operation(
        "get",
        "/readyz",
        "Readiness: 200 when Redis answers and the bus listens, else 503",
        tag="health",
        auth=Auth.NONE,
        ok=(200, 503),  # both with the probe's own body
        response=Readiness,
    ),
)


class HealthRoutes:
    """Liveness and readiness probes."""

    def __init__(self, *, redis_ping: Callable[[], Awaitable[object]], bus_alive: Callable[[], bool]) -> None:
        self._redis_ping = redis_ping
        self._bus_alive = bus_alive

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        document(app, OPERATIONS)

    async def healthz(self, request: web.Request) -> web.Response:
        """Always 200 while the process serves requests."""
        return web.json_response(Liveness(ok=True).model_dump())

    async def readyz(self, request: web.Request) -> web.Response:
        """200 when Redis answers a PING and the bus listener is alive, else 503."""
        try:
            await self._redis_ping()
            redis_ok = True
        except Exception:  # any failure to reach Redis means not ready
            redis_ok = False
        bus_ok = self._bus_alive()
        ready = redis_ok and bus_ok
        answer = Readiness(ok=ready, redis=redis_ok, bus=bus_ok)
        return web.json_response(answer.model_dump(), status=200 if ready else 503)
