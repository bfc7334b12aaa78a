"""``sessionhub admin metrics | export | orphans | dead-letters | grant | revoke``: administration
without a browser.

``metrics``, ``export``, ``orphans`` and ``dead-letters`` talk to a running server over HTTP (``--url``, default
this configuration's address) with ``--token`` / ``SESSIONHUB_ADMIN_TOKEN``, or a five-minute
admin token minted from the configured signing key. ``grant`` and ``revoke`` write the admin
permission of a user into Redis (``REDIS_URL``, or the embedded Redis of a running ``serve``):
the user's tokens carry it from their next refresh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import re
import sys
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote, urlsplit

from auth.claims import USER_ID_PATTERN, Permission
from server.identity import token_service
from server.settings import Settings
from storage.clock import Clock
from storage.identity.repository import Identities
from storage.keys import Keys

if TYPE_CHECKING:  # imported when a command runs: `sessionhub --help` does not import aiohttp
    import aiohttp

CLI_TOKEN_TTL_S = 300
TIMEOUT_S = 3600
CONNECT_TIMEOUT_S = 10
MAX_DAYS = 36_500  # the admin routes' own bound (handlers/admin/requests.py)


def _days(text: str) -> int:
    """``--days``: a whole number of days, 1 or more (0 was taken as "not given" by ``export``)."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_DAYS):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days in 1..{MAX_DAYS}")
    return int(text)


def _base_url(text: str) -> str:
    """``--url``: an absolute http(s) address (another ended in a traceback)."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// address")
    return text


def add_parser(sub: Any) -> None:
    """Add ``admin`` and its commands to the ``sessionhub`` parser."""
    admin = sub.add_parser("admin", help="admin metrics, export, orphans and dead letters over HTTP")
    admin.add_argument("--url", type=_base_url, help="the server (default: SESSIONHUB_PUBLIC_URL or http://HOST:PORT)")
    admin.add_argument("--token", help="an admin token (default: SESSIONHUB_ADMIN_TOKEN, or one minted here)")
    commands = admin.add_subparsers(dest="admin_command", required=True)
    commands.add_parser("metrics", help="print GET /admin/metrics")
    export = commands.add_parser("export", help="stream every session (or only orphans) as JSON lines")
    export.add_argument("--orphans", action="store_true")
    export.add_argument(
        "--days", type=_days, help="orphans: not accessed for this many days (default: the server's orphan threshold)"
    )
    export.add_argument("--output", "-o", help="file to write (default: standard output)")
    orphans = commands.add_parser("orphans", help="count orphans; --delete --confirm N deletes them")
    orphans.add_argument(
        "--days", type=_days, help="not accessed for this many days (default: the server's orphan threshold)"
    )
    orphans.add_argument("--delete", action="store_true")
    orphans.add_argument("--confirm", type=int, help="the count of a dry run (required with --delete)")
    _add_dead_letters(commands)
    for name, text in (("grant", "give a user the admin permission"), ("revoke", "take the admin permission back")):
        command = commands.add_parser(name, help=f"{text} (from the user's next token refresh)")
        command.add_argument("user", help="the user id (shown under the name on every page)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run one admin command; the exit status."""
    if args.admin_command in ("grant", "revoke"):
        return asyncio.run(_set_admin(settings, args.user, args.admin_command == "grant"))
    url = (args.url or settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    token = args.token or os.environ.get("SESSIONHUB_ADMIN_TOKEN") or _mint(settings)
    return asyncio.run(_dispatch(args, url, token))


def _mint(settings: Settings) -> str:
    minted, _ = token_service(settings).mint(
        user_id="cli-admin", now_s=Clock().now_s(), ttl_s=CLI_TOKEN_TTL_S, perms=(Permission.ADMIN,)
    )
    return minted


async def _dispatch(args: argparse.Namespace, url: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S)
    async with aiohttp.ClientSession(base_url=url, headers=headers, timeout=timeout) as http:
        try:
            if args.admin_command == "metrics":
                return await _print_json(http, "GET", "/admin/metrics")
            if args.admin_command == "export":
                return await _export(http, args)
            if args.admin_command == "dead-letters":
                return await _dead_letters(http, args)
            return await _orphans(http, args)
        except aiohttp.ClientError as exc:
            print(f"sessionhub admin: {url}: {exc}", file=sys.stderr)
            return 1


async def _failed(response: aiohttp.ClientResponse) -> int:
    print(f"sessionhub admin: HTTP {response.status}: {await response.text()}", file=sys.stderr)
    return 1


async def _print_json(http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> int:
    async with http.request(method, path, json=body) as response:
        if response.status != 200:
            return await _failed(response)
        print(json.dumps(await response.json(), indent=2))
        return 0


async def _export(http: aiohttp.ClientSession, args: argparse.Namespace) -> int:
    params = {"scope": "orphans" if args.orphans else "all"}
    if args.days is not None:
        params["older_than_days"] = str(args.days)
    out: TextIO = sys.stdout
    if args.output:
        try:  # before the request: a folder that is not there ended in a traceback after it
            out = open(args.output, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            print(f"sessionhub admin: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 1
    async with http.get("/admin/export", params=params) as response:
        if response.status != 200:
            if args.output:
                out.close()
                os.unlink(args.output)
            return await _failed(response)
        total = int(response.headers.get("X-Total-Count", "0"))
        try:
            written = -1  # the header line is not a session
            async for line in response.content:
                out.write(line.decode())
                written += 1
                if args.output and written % 500 == 0:
                    print(f"exported {max(written, 0)} / {total}", file=sys.stderr)
        finally:
            if args.output:
                out.close()
        print(f"exported {max(written, 0)} session(s)", file=sys.stderr)
        return 0


async def _orphans(http: aiohttp.ClientSession, args: argparse.Namespace) -> int:
    if args.delete and args.confirm is None:
        print("sessionhub admin: --delete needs --confirm <the count of a dry run>", file=sys.stderr)
        return 2
    # Without --days the server's own orphan threshold applies (SESSIONHUB_ADMIN_ORPHAN_DAYS): a
    # fixed 90 here counted other orphans than the dashboard's.
    days = {} if args.days is None else {"older_than_days": args.days}
    if not args.delete:
        return await _print_json(http, "POST", "/admin/orphans/delete", {**days, "dry_run": True})
    body = {**days, "confirm_count": args.confirm}
    async with http.post("/admin/orphans/delete", json=body) as response:
        if response.status != 200:
            return await _failed(response)
        async for line in response.content:
            print(line.decode().rstrip(), flush=True)
    return 0


def _add_dead_letters(commands: Any) -> None:
    dead = commands.add_parser(
        "dead-letters", help="list dead-lettered jobs (JSON lines, newest first); retry or discard them"
    )
    dead.add_argument("--limit", type=int, default=100, help="how many to list (1..100, default 100)")
    dead.add_argument("--offset", type=int, default=0, help="how many of the newest to skip")
    action = dead.add_mutually_exclusive_group()
    action.add_argument("--retry", metavar="JOB_ID", help="queue this job again, from its first attempt")
    action.add_argument("--discard", metavar="JOB_ID", help="drop this dead letter")
    action.add_argument("--discard-all", action="store_true", help="drop every dead letter (with --confirm N)")
    dead.add_argument("--confirm", type=int, help="with --discard-all: the count of dead letters listed")
    dead.add_argument(
        "--newest",
        default="",
        help="with --discard-all: the newest entry as listed (the listing prints it); refused if another is newest now",
    )


async def _dead_letters(http: aiohttp.ClientSession, args: argparse.Namespace) -> int:
    # Ids go into the path quoted: a typo is refused by the server (400), not sent elsewhere.
    if args.retry:
        return await _print_json(http, "POST", f"/admin/jobs/dead/{quote(args.retry, safe='')}/retry")
    if args.discard:
        return await _print_json(http, "DELETE", f"/admin/jobs/dead/{quote(args.discard, safe='')}")
    if args.discard_all:
        if args.confirm is None:
            print("sessionhub admin: --discard-all needs --confirm <the count listed>", file=sys.stderr)
            return 2
        query = f"confirm={args.confirm}" + (f"&newest={quote(args.newest, safe='')}" if args.newest else "")
        return await _print_json(http, "DELETE", f"/admin/jobs/dead?{query}")
    params = {"limit": str(args.limit), "offset": str(args.offset)}
    async with http.get("/admin/jobs/dead", params=params) as response:
        if response.status != 200:
            return await _failed(response)
        page = await response.json()
    for letter in page["dead_letters"]:
        print(json.dumps(letter, separators=(",", ":")))
    more = "" if page["next_offset"] is None else f"; more from --offset {page['next_offset']}"
    print(f"{page['total']} dead letter(s) in all{more}", file=sys.stderr)
    if page["total"]:
        # Both, so that a letter buried after this listing is not discarded unseen.
        clear = f"--discard-all --confirm {page['total']} --newest {page['newest']}"
        print(f"to discard them all as listed: sessionhub admin dead-letters {clear}", file=sys.stderr)
    return 0


async def _set_admin(settings: Settings, user_id: str, admin: bool) -> int:
    # Imported here: the CLI's parser imports this module, and must stay light (sessionhub --help).
    from server.commands import redis_for
    from server.services import identity_config_from
    from storage.admin.repository import write_audit
    from storage.clock import follow_redis

    if not re.match(USER_ID_PATTERN, user_id):
        print(f"sessionhub admin: {user_id!r} is not a user id", file=sys.stderr)
        return 2
    keys, clock = Keys(settings.key_prefix), Clock()
    async with redis_for(settings, may_embed=False) as redis:
        # On Redis' clock, as the nodes that mint tokens are: a revoke dated by a host behind it
        # missed the admin tokens minted within that difference before it (audit verify40).
        await follow_redis(clock, redis)
        identities = Identities(redis=redis, keys=keys, clock=clock, config=identity_config_from(settings))
        known = await identities.known(user_id)
        await identities.set_admin(user_id, admin)
        # Who ran it, as the system knows them: the audit log's actor of an operator's command.
        actor = f"cli:{_os_user()}"
        detail = {"known_user": known}
        action = "grant_admin" if admin else "revoke_admin"
        await write_audit(redis, keys, clock, actor=actor, action=action, target=user_id, detail=detail)
    # A token `sessionhub token` minted has no device and no grant behind it: it is kept until it
    # expires (the CLI said every earlier token was refused: audit "verify49").
    withdrawn = (
        "its devices' earlier tokens refused within a poll on every node of this release;"
        " a token minted with `sessionhub token` keeps its rights until it expires"
    )
    when = "from the next token refresh" if admin else withdrawn
    print(f"{user_id}: admin {'granted' if admin else 'revoked'} ({when})")
    if not known:
        print(f"sessionhub admin: no user {user_id!r} has signed in here yet (a typo?)", file=sys.stderr)
    return 0


def _os_user() -> str:
    """The account running the command, by its uid: not $USER or $LOGNAME (getpass reads those
    first), which anyone running it may set to any name (audit "verify39b")."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no name for this uid (a container)
        return str(os.getuid())
