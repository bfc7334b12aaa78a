"""``sessionhub serve | worker | token | admin``: the command line.

This module imports nothing heavy: ``sessionhub --help`` answers without importing aiohttp or
python-socketio, and ``serve`` chooses its transport lane (``server.transport.versions``, from
the installed versions' metadata) before they are imported. An untested library version makes
the server slower (the stock lane), never down; ``SESSIONHUB_TRANSPORT=fast`` turns that into a
one-line refusal. The commands themselves are in ``server.commands``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from auth.claims import Permission
from server import admin_cli, logs
from server.settings import Settings
from server.transport.versions import UnsupportedVersions, choose_lane


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
    if args.command == "serve":
        try:
            choose_lane(settings.transport)  # before anything starts (the embedded Redis included)
        except UnsupportedVersions as exc:
            print(f"sessionhub: {exc}", file=sys.stderr)
            return 1
    if args.command == "admin":
        try:
            return admin_cli.run(settings, args)
        except KeyboardInterrupt:
            return 130
    from server import commands  # heavy: aiohttp, redis-py, the chosen lane's python-socketio

    try:
        if args.command == "serve":
            asyncio.run(commands.serve(settings))
        elif args.command == "worker":
            asyncio.run(commands.work(settings))
        else:
            commands.mint(settings, args)
    except commands.StartupError as exc:
        print(f"sessionhub: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
