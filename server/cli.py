"""``sessionhub serve | worker | token | admin``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from redis.asyncio import Redis

from auth.claims import Permission
from handlers.context import Services
from jobs.processors import load_processors
from protocol.errors import CodedError
from server import admin_cli, logs
from server.app import build_app
from server.identity import token_service
from server.redis_embed import EmbeddedRedis
from server.services import build_services, connect_redis
from server.settings import Settings
from server.worker import Worker
from storage.clock import Clock

log = logging.getLogger("sessionhub")

REDIS_URL_FILE = "redis.url"


class StartupError(Exception):
    """A one-line reason the process cannot start."""


@asynccontextmanager
async def redis_for(settings: Settings, *, may_embed: bool) -> AsyncIterator[Redis]:
    """The configured Redis, or an embedded one; fails fast when it does not answer."""
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if not url:
        if not may_embed:
            url_file = settings.data_dir / REDIS_URL_FILE
            if not url_file.exists():
                raise StartupError("REDIS_URL is not set and no embedded Redis of `sessionhub serve` was found")
            url = url_file.read_text(encoding="utf-8").strip()
        else:
            embedded = EmbeddedRedis(settings.data_dir)
            url = await embedded.start()
            url_file = settings.data_dir / REDIS_URL_FILE
            url_file.touch(mode=0o600)
            url_file.write_text(url + "\n", encoding="utf-8")
    redis = connect_redis(url, max_connections=settings.redis_max_connections, cluster=settings.redis_cluster)
    try:
        try:
            await asyncio.wait_for(redis.ping(), 5)
        except Exception as exc:
            raise StartupError(f"cannot reach Redis at {_redacted(url)}: {exc}") from exc
        yield redis
    finally:
        await redis.aclose()
        if embedded is not None:
            (settings.data_dir / REDIS_URL_FILE).unlink(missing_ok=True)
            await embedded.stop()


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _worker(services: Services, settings: Settings) -> Worker:
    return Worker(
        services=services,
        processors=load_processors(settings.processors),
        max_attempts=settings.job_max_attempts,
        backoff_base_ms=settings.job_backoff_base_ms,
        visibility_ms=settings.job_visibility_ms,
    )


async def serve(settings: Settings) -> None:
    """Run the HTTP + Socket.IO server (and its in-process workers) until SIGINT/SIGTERM."""
    async with redis_for(settings, may_embed=True) as redis:
        services = build_services(settings, redis=redis, tokens=token_service(settings))
        try:
            await services.log.check_durability()
        except CodedError as exc:
            raise StartupError(exc.message) from exc
        app = build_app(settings, services=services)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        stop_workers = asyncio.Event()
        workers = [
            asyncio.create_task(_worker(services, settings).run(stop_workers))
            for _ in range(settings.inprocess_workers)
        ]
        log.info("sessionhub serving on http://%s:%d", settings.host, settings.port)
        print(f"sessionhub serving on http://{settings.host}:{settings.port}", flush=True)
        try:
            await _wait_for_signal()
        finally:
            stop_workers.set()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await runner.cleanup()


async def work(settings: Settings) -> None:
    """Run one job worker until SIGINT/SIGTERM."""
    async with redis_for(settings, may_embed=False) as redis:
        worker = _worker(build_services(settings, redis=redis, tokens=token_service(settings)), settings)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        print(f"sessionhub worker {worker.consumer} running", flush=True)
        try:
            await _wait_for_signal()
        finally:
            stop.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def mint(settings: Settings, args: argparse.Namespace) -> None:
    """Print a token for ``--user`` with the given permissions."""
    tokens = token_service(settings)
    perms = tuple(Permission(p) for p in (args.perm or []))
    token, _ = tokens.mint(
        user_id=args.user,
        now_s=Clock().now_s(),
        ttl_s=args.ttl,
        perms=perms,
        name=args.name or "",
        telegram_user_id=args.telegram_user_id or "",
    )
    print(token)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sessionhub", description="Real-time session server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="run the HTTP + Socket.IO server")
    serve_p.add_argument("--host")
    serve_p.add_argument("--port", type=int)
    sub.add_parser("worker", help="run a post-processing job worker")
    token_p = sub.add_parser("token", help="mint a JWT for an operator or a test")
    token_p.add_argument("--user", required=True)
    token_p.add_argument("--perm", action="append", choices=[p.value for p in Permission])
    token_p.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    token_p.add_argument("--name")
    token_p.add_argument("--telegram-user-id")
    admin_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sessionhub`` console script."""
    args = _parser().parse_args(argv)
    settings = Settings()
    if getattr(args, "host", None):
        settings.host = args.host
    if getattr(args, "port", None):
        settings.port = args.port
    logs.configure(settings.log_level, settings.log_format)
    try:
        if args.command == "serve":
            asyncio.run(serve(settings))
        elif args.command == "worker":
            asyncio.run(work(settings))
        elif args.command == "admin":
            return admin_cli.run(settings, args)
        else:
            mint(settings, args)
    except StartupError as exc:
        print(f"sessionhub: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
