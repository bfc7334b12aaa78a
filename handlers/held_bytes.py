"""One node's budget of bytes held for requests that have not arrived whole.

A connection may hold up to a message's limit of what it has not finished sending: an
unfinished WebSocket frame (1 MiB), a long-polling POST's body (1 MiB), a route's JSON body
(64 KiB for a pattern). Anonymous clients opening many connections that each send most of one
and stall pinned that memory until each body's read deadline, and could open the next at once:
a route's bodies were counted by no budget (300 connections stalled at 64 KiB held 20 MB more;
an address's connection cap allows 260 MB; audit "slowbodies"). One :class:`HeldBytes` per
node, sized by ``SESSIONHUB_PARTIAL_FRAMES_BUDGET_BYTES``, counts all of them: the fast lane's
frames and polling bodies (``server.transport``) and the routes' bodies
(``handlers.http_common.read_body``). Past its limit, the request whose unfinished part grows
is refused; one that arrives whole in one read is never counted, so ordinary traffic never
meets it.
"""

from __future__ import annotations

from aiohttp import web


class HeldBytes:
    """Bytes held in unfinished frames and bodies across every connection of a node.

    Whoever holds some adds them to ``held`` and takes them off once the request is whole,
    refused or gone; past ``limit`` in total, the one whose part grows is refused.
    """

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def over(self) -> bool:
        """Whether more is held than the limit allows."""
        return self.held > self.limit


HELD_BYTES_KEY = web.AppKey("held_bytes", HeldBytes)
