"""The reference: stock python-socketio (AsyncServer + AsyncRedisManager), a plain room broadcast.

It speaks the same protocol subset as sessionhub for the benchmark: ``connect`` verifies the
same JWT, ``subscribe_on_session`` enters the session's room and acks, ``set_session_status``
emits ``session_status`` (same payload shape, with an offset counter) to the room with a
plain ``await sio.emit(..., room=...)`` and acks with the offset. No Redis state, no log, no
validation beyond what the benchmark needs: only the broadcast machinery is compared.

    SESSIONHUB_JWT_SECRET=... python bench/stock_server.py --port P --redis-url redis://127.0.0.1:R/0
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import socketio
from aiohttp import web

from protocol.errors import CodedError
from auth.tokens import TokenConfig, TokenService

EPOCH = "stock"


@dataclass(slots=True)
class SessionState:
    """In-process status and offset counter of one session."""

    status: str = "ready"
    offset: int = 0


class StockServer:
    """The handlers, on one ``socketio.AsyncServer``."""

    def __init__(self, *, redis_url: str, tokens: TokenService) -> None:
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            client_manager=socketio.AsyncRedisManager(redis_url),
            logger=False,
            engineio_logger=False,
        )
        self._tokens = tokens
        self._sessions: dict[str, SessionState] = {}
        self.sio.on("connect", self.connect)
        self.sio.on("subscribe_on_session", self.subscribe)
        self.sio.on("set_session_status", self.set_status)

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        """Accept the same bearer JWT as sessionhub (``auth.token``)."""
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            self._tokens.verify(token)
        except CodedError as exc:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized", {"message": exc.message}) from None

    async def subscribe(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        """Enter the session's room."""
        session_id = str(data["session_id"])
        await self.sio.enter_room(sid, session_id)
        state = self._sessions.setdefault(session_id, SessionState())
        return {"ok": True, "session_id": session_id, "epoch": EPOCH, "offset": state.offset}

    async def set_status(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        """Change the status and broadcast it to the room; the ack carries the offset."""
        session_id, status = str(data["session_id"]), str(data["status"])
        state = self._sessions.setdefault(session_id, SessionState())
        previous = state.status
        ack = {"ok": True, "session_id": session_id, "status": status, "previous": previous}
        if status == previous:
            return {**ack, "changed": False, "offset": 0}
        state.status = status
        state.offset += 1
        offset = state.offset
        event = {
            "session_id": session_id,
            "epoch": EPOCH,
            "offset": offset,
            "type": "session_status",
            "ts": int(time.time() * 1000),
            "data": {"status": status, "previous": previous},
        }
        await self.sio.emit("session_status", event, room=session_id)
        return {**ack, "changed": True, "offset": offset}


async def readyz(_: web.Request) -> web.Response:
    """200 once serving (parity with sessionhub's probe)."""
    return web.json_response({"ok": True})


async def serve(host: str, port: int, redis_url: str) -> None:
    """Serve until SIGINT/SIGTERM."""
    secret = os.environ["SESSIONHUB_JWT_SECRET"]
    tokens = TokenService(TokenConfig(algorithm="HS256", verify_key=secret, signing_key=None))
    server = StockServer(redis_url=redis_url, tokens=tokens)
    app = web.Application()
    server.sio.attach(app)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"stock serving on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    """Parse options and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.redis_url))


if __name__ == "__main__":
    main()
