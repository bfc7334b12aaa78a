"""``sessionhub serve | worker | token | admin``: the command line.

Imports are lazy: the command line is parsed before the app is imported, so ``sessionhub --help``,
``--version`` and ``token --help`` load neither aiohttp, python-socketio, redis-py nor pydantic
(about 1 s of CPU, paid by every child process an operator or a test starts). ``serve`` chooses
its transport lane (``server.transport.versions``, from the installed versions' metadata) before
any of them is imported: an untested library version makes the server slower (the stock lane),
never down, and ``SESSIONHUB_TRANSPORT=fast`` turns that into a one-line refusal. The commands
themselves are in ``server.commands``; ``admin``'s in ``server.admin_cli``; ``token``'s in
``server.token_cli``, which loads neither the app nor its web stack.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from auth.permissions import GRANTS, Permission


class StartupError(Exception):
    """A one-line reason the process cannot start."""


# Kept in step with server/admin_cli.py's; its parser (and aiohttp) is loaded only for `admin`.
ADMIN_HELP = "admin metrics, export, orphans and admin grants"


def _port(text: str) -> int:
    """An argparse type: a TCP port (argparse prints the error on one line and exits 2)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port < 65536:  # 0: any free port, as PORT=0
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535)")
    return port


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sessionhub")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _token_epilog() -> str:
    width = max(len(p.value) for p in Permission)
    lines = [f"  {p.value:<{width}}  {GRANTS[p]}" for p in Permission]
    return "permissions (--perm, repeatable; at least one):\n" + "\n".join(lines)


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sessionhub", description="Real-time session server")
    parser.add_argument("--version", action="version", version=f"sessionhub {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="run the HTTP + Socket.IO server")
    serve_p.add_argument("--host")
    serve_p.add_argument("--port", type=_port)
    sub.add_parser("worker", help="run a post-processing job worker")
    token_p = sub.add_parser(
        "token",
        help="mint a JWT for an operator or a test",
        epilog=_token_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    token_p.add_argument("--user", required=True, help="the token's subject (1-128 of A-Z a-z 0-9 _ . : @ -)")
    token_p.add_argument("--perm", action="append", choices=[p.value for p in Permission], help="a permission (below)")
    token_p.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    token_p.add_argument("--name")
    token_p.add_argument("--telegram-user-id")
    if argv[:1] == ["admin"]:
        from server import admin_cli

        admin_cli.add_parser(sub)
    else:
        sub.add_parser("admin", help=ADMIN_HELP)
    return parser


def validation_message(exc: Exception, *, prefix: str = "SESSIONHUB_", names: dict[str, str] | None = None) -> str:
    """One line naming each refused setting or option (a pydantic ValidationError); ``names``
    renames a model's field to the option that gave it (a token's ``exp`` is ``--ttl``)."""
    errors: list[dict[str, object]] = getattr(exc, "errors", list)()
    parts = []
    for error in errors:
        loc = error.get("loc", ())
        name = ".".join(str(part) for part in loc) if isinstance(loc, tuple) else "value"
        name = (names or {}).get(name, name)
        if not name:  # a check across settings: its message names them itself
            parts.append(str(error.get("msg")).removeprefix("Value error, "))
            continue
        if prefix == "SESSIONHUB_" and name.isupper():  # an alias, the variable's own name (PORT, REDIS_URL)
            parts.append(f"{name}: {error.get('msg')}")
            continue
        name = name.upper() if prefix == "SESSIONHUB_" else name.replace("_", "-")
        parts.append(f"{prefix}{name}: {error.get('msg')}")
    return "; ".join(parts) or str(exc).splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sessionhub`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv).parse_args(argv)
    from pydantic import ValidationError

    from server import logs
    from server.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        return _refuse(validation_message(exc), logs.format_from_environment())
    # Set when given, 0 and "" too (0: any free port, as PORT=0; an empty host is refused, as
    # SESSIONHUB_HOST="" is): a falsy value was dropped, and the default served instead.
    if getattr(args, "host", None) is not None:
        if not args.host.strip():
            return _refuse("--host: an empty host names no interface", logs.format_from_environment())
        settings.host = args.host
    if getattr(args, "port", None) is not None:
        settings.port = args.port
    logs.configure(settings.log_level, settings.log_format)
    if args.command == "serve":
        from server.transport.versions import UnsupportedVersions, choose_lane

        try:
            choose_lane(settings.transport)  # before anything starts (the embedded Redis included)
        except UnsupportedVersions as exc:
            return _refuse(str(exc), settings.log_format)
    if args.command == "admin":
        from server import admin_cli

        try:
            return admin_cli.run(settings, args)
        except StartupError as exc:  # Redis unreachable or refusing: one line, as serve says it
            return _refuse(str(exc), settings.log_format)
        except KeyboardInterrupt:
            return 130
    try:
        if args.command == "token":
            from server.token_cli import mint

            mint(settings, args)
            return 0
        from server import commands  # heavy: aiohttp, redis-py, the chosen lane's python-socketio

        if args.command == "serve":
            asyncio.run(commands.serve(settings))
        else:
            asyncio.run(commands.work(settings))
    except StartupError as exc:
        return _refuse(str(exc), settings.log_format)
    except KeyboardInterrupt:
        return 130
    return 0


def _refuse(reason: str, log_format: str) -> int:
    """Say on one line why the process cannot start (a JSON line in JSON mode); exit status 1."""
    if log_format == "json":
        from server import logs

        print(logs.json_line("ERROR", "sessionhub", reason), file=sys.stderr, flush=True)
    else:
        print(f"sessionhub: {reason}", file=sys.stderr, flush=True)
    return 1
