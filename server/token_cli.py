"""``sessionhub token``: a token printed for ``--user``, without the app.

Kept apart from ``server.commands`` (aiohttp, python-socketio, every capability: ~1 s of CPU a
process): minting needs the settings and the token service only, and every operator's
``sessionhub token`` and many test children run it.
"""

from __future__ import annotations

import argparse
import re

from pydantic import ValidationError

from auth.claims import USER_ID_PATTERN, Permission
from server.cli import StartupError, validation_message
from server.identity import token_service
from server.settings import Settings
from storage.clock import Clock


def mint(settings: Settings, args: argparse.Namespace) -> None:
    """Print a token for ``--user`` with the given permissions."""
    if not re.fullmatch(USER_ID_PATTERN, args.user):  # not match: its $ lets "alice\n" through
        raise StartupError(f"--user {args.user!r}: a user id is 1-128 of A-Z a-z 0-9 _ . : @ -")
    if not args.perm:
        raise StartupError("a token with no permission is refused everywhere: give at least one --perm")
    if args.ttl <= 0:
        raise StartupError(f"--ttl {args.ttl}: the token would be expired already; give a positive number of seconds")
    tokens = token_service(settings)
    try:
        token, _ = tokens.mint(
            user_id=args.user,
            now_s=Clock().now_s(),
            ttl_s=args.ttl,
            perms=tuple(Permission(p) for p in args.perm),
            name=args.name or "",
            telegram_user_id=args.telegram_user_id or "",
        )
    except ValidationError as exc:
        options = {"sub": "user", "exp": "ttl", "telegram_user_id": "telegram-user-id"}
        raise StartupError(validation_message(exc, prefix="--", names=options)) from None
    print(token)
