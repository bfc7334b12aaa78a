"""A user's connections follow the user's active voice session live (seed 002).

The active session is a per-user pointer (``storage.voice``). Each change is one script that
sets (or clears) the pointer, counts the change (``seq``) and publishes ``{"session_id", "seq"}``
on the user's channel, so the pointer and its announcement never disagree. A connection asks to
follow it (``follow_active_session``); the node then subscribes the user's channel, a side
channel of its bus, and keeps it until the last following connection of that user here leaves.
The answer is the pointer as it stands, read once the channel is subscribed (nothing published
after the subscription can fall between the read and live delivery); every later change is an
``active_session`` event.

Order: changes arriving while a connection's read is in flight are kept, and its answer is the
newest of the read and them; afterwards a connection is sent nothing at or below the highest
``seq`` it was given. The pub/sub link and the link a read goes over are two connections, so a
change published just before a read can arrive after the read's answer: it is then older than
what the connection has, and skipped. A read that answers less than this node has seen is made
again; a second read issued after the higher ``seq`` arrived cannot be behind it unless Redis lost
writes (a failover to a lagging replica), and then its pointer is what every member is given.

A channel confirmed again after the pub/sub link dropped may have missed changes: every member
is sent the pointer read anew.

The channel carries the clips the user stores in stream sessions too (``{"own_clip": {"session_id",
"clip"}}``, published after the clip's step): each is sent at once to every connection of the
user following here (whether it follows the active session or the renames only), as an
``own_clip`` event, so the user's other /watch pages show it live. Nobody else follows the
channel: a viewer's note never reaches another viewer. A channel confirmed again after the link
dropped sends them ``own_clips_resync`` (a clip announced meanwhile reached nobody): the pages
read their own clips again.

The user's channel also carries the user's renames (``{"user_id", "name"}``, published by the
rename script): each is sent at once to every connection of the user following here, as a
``user_renamed`` event. A connection may follow the renames alone (``follow_user``: every page's
identity badge), which costs the node the user's channel (shared by all of the user's connections
here) and a name read per follow, and nothing per event of any session. A follow's answer carries
the name as it stands once the channel is subscribed: a rename made between the page's own read
of its name and its follow is not missed. A name carries no count: the channel delivers them in
the order they were stored, so a rename that arrives while a follow's read is in flight is
newer than anything published before the subscription, and is the answer's name (the read, on
another Redis link, may have gone before it was stored); one stored after the read arrives after
the answer, as an event.

A Redis that lost writes (a restart from an AOF missing its last second, a failover to a lagging
replica) counts again from where it went back, so a change made after that can carry a ``seq``
this node has seen already, with another session: the node keeps the session of the highest
``seq`` it has seen, and the same ``seq`` naming another one -- read, or announced -- means Redis
went back. Its pointer is then what every member is given (a connection given ``seq`` 5 for
session B must still learn that the new 5 is C). Lost two changes or more, Redis counts the next
one below what this node has seen: an announcement of a lower ``seq`` has the pointer read (twice,
as above), which tells a late announcement from a count gone back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from handlers.metrics import Metrics
from protocol.errors import CodedError, ErrorCode
from protocol.events import ACTIVE_SESSION, OWN_CLIP, OWN_CLIPS_RESYNC, USER_RENAMED
from server.transport.contract import Outlet, Packet
from storage.failures import REDIS_AWAY
from storage.keys import Keys
from storage.voice.repository import ActivePointer

log = logging.getLogger(__name__)

# A follow's subscription not confirmed in time, or Redis away (a cluster with no node answering
# raises an error of its own): asked again after RETRY_S, the loop never ends on it.
_ASK_AGAIN: tuple[type[Exception], ...] = (CodedError, *REDIS_AWAY)

# A feed whose channel could not be subscribed, or whose read failed, tries again after this pause.
RETRY_S = 0.5
# A follow waits this long at most for the user's channel to be subscribed and the pointer read
# (then: unavailable, and the connection does not follow).
FOLLOW_WAIT_S = 10.0


# Reads the display name of a following connection's user (its profile's, else its token's).
ReadName = Callable[[], Awaitable[str]]


class Sides(Protocol):
    """The bus's side channels (``server.bus.Bus``)."""

    async def open_side(self, channel: str, owner: Any) -> None: ...

    def close_side(self, channel: str) -> None: ...


@dataclass(slots=True, eq=False)
class _Feed:
    """One user's connections on this node and what each was sent."""

    user_id: str
    channel: str
    feeds: ActiveFeeds
    sent: dict[str, int] = field(default_factory=dict)  # sid -> highest seq sent to it (-1: nothing yet)
    named: set[str] = field(default_factory=set)  # sids that follow the renames only (follow_user)
    renamed: dict[str, str | None] = field(default_factory=dict)  # joining sid -> last rename meanwhile
    joining: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # sid -> changes kept for its answer
    seen: int = -1  # highest seq this node has seen for the user (announced or read)
    seen_id: str | None = None  # the session that change named (same seq, another one: Redis went back)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # The name the members were last given, and how the latest follow read it (the profile's name
    # is every connection's; without a profile there is no rename to miss): a link back reads it
    # again, as a rename announced while the link was down reached nobody here.
    name: str | None = None
    read_name: ReadName | None = None

    def on_message(self, data: str) -> None:
        """A change announced on the user's channel."""
        self.feeds.announced(self, data)

    def on_resubscribed(self) -> None:
        """The channel is subscribed (again): a first confirmation that came late, or a link back."""
        if not self.subscribed.is_set():
            self.subscribed.set()
            return
        self.feeds.catch_up(self, [sid for sid in self.sent if sid not in self.joining])
        self.feeds.catch_up_name(self)
        self.feeds.own_clips_resync(self)


class ActiveFeeds:
    """The node's users' active-session feeds: joined by a connection's follow, left at its end."""

    def __init__(
        self,
        *,
        sides: Sides,
        keys: Keys,
        read: Callable[[str], Awaitable[ActivePointer]],
        resolve: Callable[[str], Outlet | None],
        metrics: Metrics,
    ) -> None:
        self._sides = sides
        self._keys = keys
        self._read = read  # user id -> its pointer (storage.voice's VoiceSessions.active_pointer)
        self._resolve = resolve
        self._metrics = metrics
        self._feeds: dict[str, _Feed] = {}  # user id -> feed
        self._user_of: dict[str, str] = {}  # sid -> user id

    async def follow(self, user_id: str, sid: str, read_name: ReadName) -> tuple[ActivePointer, str]:
        """The user's active session and name now; every change of either after it is sent to
        ``sid`` until :meth:`leave` (see the module docstring)."""
        feed = self._feed(user_id, sid)
        named = sid in feed.named
        feed.named.discard(sid)  # followed in full from now: its renames come as a member's
        feed.sent.setdefault(sid, -1)
        feed.joining[sid] = []
        feed.renamed[sid] = None
        try:
            async with asyncio.timeout(FOLLOW_WAIT_S):  # the channel subscribed, the pointer read
                await feed.subscribed.wait()
                (pointer, went_back), read = await asyncio.gather(self._current(feed), read_name())
        except BaseException as exc:
            feed.joining.pop(sid, None)
            feed.renamed.pop(sid, None)
            if named:  # it still follows the renames, as it did before
                feed.sent.pop(sid, None)
                feed.named.add(sid)
            else:
                self.leave(sid)
            if isinstance(exc, TimeoutError):
                raise CodedError(ErrorCode.UNAVAILABLE, "cannot follow the active session now; try again") from None
            raise
        name = _newest_name(feed, sid, read)
        feed.name, feed.read_name = name, read_name
        if went_back:
            self._reset(feed, pointer)
        _saw(feed, pointer.seq, pointer.session_id)
        for seq, data in feed.joining.pop(sid, []):  # changes that arrived during the read
            if seq > pointer.seq:
                pointer = ActivePointer(session_id=json.loads(data)["session_id"], seq=seq)
        if sid in feed.sent:
            feed.sent[sid] = pointer.seq
        return pointer, name

    async def follow_name(self, user_id: str, sid: str, read_name: ReadName) -> str:
        """The user's display name now (``read_name``'s, or a rename that arrived meanwhile); every
        later rename is sent to ``sid`` until :meth:`leave`. Nothing else of the user's channel
        is (a connection that follows the active session gets its renames as such already)."""
        feed = self._feed(user_id, sid)
        if sid not in feed.sent:  # one that follows the active session is sent renames already
            feed.named.add(sid)
        feed.renamed[sid] = None
        try:
            async with asyncio.timeout(FOLLOW_WAIT_S):
                await feed.subscribed.wait()  # renames stored from now on are sent to sid
                read = await read_name()
        except BaseException as exc:
            feed.renamed.pop(sid, None)
            if sid not in feed.sent:  # it follows nothing now
                self.leave(sid)
            if isinstance(exc, TimeoutError):
                raise CodedError(ErrorCode.UNAVAILABLE, "cannot follow your name now; try again") from None
            raise
        feed.name, feed.read_name = _newest_name(feed, sid, read), read_name
        return feed.name

    def leave(self, sid: str) -> None:
        """``sid`` is gone; the user's channel is dropped with their last connection here."""
        user_id = self._user_of.pop(sid, None)
        feed = self._feeds.get(user_id) if user_id is not None else None
        if feed is None:
            return
        feed.sent.pop(sid, None)
        feed.joining.pop(sid, None)
        feed.named.discard(sid)
        feed.renamed.pop(sid, None)
        if not feed.sent and not feed.named:
            del self._feeds[feed.user_id]
            self._sides.close_side(feed.channel)
            for task in feed.tasks:
                task.cancel()

    def close(self) -> None:
        """Stop every feed's work (the node stops)."""
        for feed in self._feeds.values():
            for task in feed.tasks:
                task.cancel()

    def users(self) -> int:
        """How many users have a feed on this node."""
        return len(self._feeds)

    # --- internals -------------------------------------------------------------------------
    def _feed(self, user_id: str, sid: str) -> _Feed:
        """The user's feed here (opened for its first connection), with ``sid`` noted as theirs."""
        feed = self._feeds.get(user_id)
        if feed is None:
            feed = self._feeds[user_id] = _Feed(user_id, self._keys.active_session_channel(user_id), self)
            self._spawn(feed, self._open(feed))
        self._user_of[sid] = user_id
        return feed

    def announced(self, feed: _Feed, data: str) -> None:
        """Send a change to every member that has nothing as new (see the module docstring)."""
        try:
            change = json.loads(data)
            if "own_clip" in change:  # a clip the user stored, not an active-session change
                self._own_clip(feed, change["own_clip"])
                return
            if "name" in change:  # a rename, not an active-session change
                self._renamed(feed, change)
                return
            seq, session_id = int(change["seq"]), change["session_id"]
        except (ValueError, KeyError, TypeError):
            log.warning("active session of %s: dropped a malformed announcement", feed.user_id)
            return
        if seq == feed.seen and session_id != feed.seen_id:
            # A count this node has seen, for another session: Redis went back and counts again.
            self._reset(feed, ActivePointer(session_id=session_id, seq=seq))
            return
        if seq < feed.seen:
            # Older than a count seen: a change published before a read that answered a newer
            # one (skipped), or Redis went back more than one change and counts again below it.
            # Only a read tells which (``_current`` reads again); dropped unread, the second left
            # every member on a session Redis no longer holds.
            for arrived in feed.joining.values():  # as any change: their answer weighs it
                arrived.append((seq, data))
            self._spawn(feed, self._catch_up(feed, list(feed.sent)))
            return
        _saw(feed, seq, session_id)
        packet = Packet(ACTIVE_SESSION, data)
        for sid, sent in feed.sent.items():
            kept = feed.joining.get(sid) if feed.joining else None
            if kept is not None:
                kept.append((seq, data))
            elif seq > sent:
                feed.sent[sid] = seq
                self._send(sid, packet)

    def _renamed(self, feed: _Feed, change: dict[str, Any]) -> None:
        """The user's new name, to every member, the renames-only ones too (joining ones as well:
        a joining member's answer then carries this name or a newer one, see the module
        docstring)."""
        name = change["name"]
        if not isinstance(name, str):
            raise TypeError("name")
        for sid in feed.renamed:
            feed.renamed[sid] = name
        if name == feed.name:
            # What every member has: the catch-up after a link back read it before its
            # announcement was handled (two connections to Redis: either can be read first).
            return
        feed.name = name
        packet = Packet(USER_RENAMED, json.dumps({"user_id": feed.user_id, "name": name}, separators=(",", ":")))
        for sid in feed.sent:
            self._send(sid, packet)
        for sid in feed.named:
            self._send(sid, packet)

    def _own_clip(self, feed: _Feed, announced: dict[str, Any]) -> None:
        """A clip the user stored, to every member (the renames-only ones and the joining ones
        too: it was announced after their subscription, so none of them has it from a read).
        No count and no order to keep here: a page keeps a clip once, by its id."""
        if not isinstance(announced, dict) or not isinstance(announced.get("session_id"), str):
            raise TypeError("own_clip")
        packet = Packet(OWN_CLIP, json.dumps(announced, separators=(",", ":")))
        for sid in (*feed.sent, *feed.named):
            self._send(sid, packet)

    def own_clips_resync(self, feed: _Feed) -> None:
        """The channel is subscribed again after the link dropped: a clip announced meanwhile
        reached nobody here, so every member is told to read its own clips again."""
        packet = Packet(OWN_CLIPS_RESYNC, "{}")
        for sid in (*feed.sent, *feed.named):
            self._send(sid, packet)

    def catch_up(self, feed: _Feed, sids: list[str]) -> None:
        """Read the pointer (once the channel is subscribed) and send it to ``sids``."""
        self._spawn(feed, self._catch_up(feed, sids))

    def catch_up_name(self, feed: _Feed) -> None:
        """Read the name again (the channel is subscribed again) and send it if it changed."""
        self._spawn(feed, self._catch_up_name(feed))

    async def _catch_up_name(self, feed: _Feed) -> None:
        if feed.read_name is None:
            return
        given = feed.name
        try:
            read = await feed.read_name()
        except REDIS_AWAY as exc:  # the members keep the name they have; their next follow reads it
            log.info("name of %s: read after the link came back failed (%s)", feed.user_id, exc)
            return
        except Exception:  # a bug: said; the next rename still reaches them
            log.exception("name of %s: catch-up failed", feed.user_id)
            return
        # A rename announced during the read is newer than the read can be (the channel was
        # subscribed before it): it has been sent, and stands.
        if read == given or feed.name != given:
            return
        self._renamed(feed, {"name": read})

    async def _open(self, feed: _Feed) -> None:
        while self._feeds.get(feed.user_id) is feed:
            try:
                await self._sides.open_side(feed.channel, feed)
            except _ASK_AGAIN as exc:
                log.info("active session of %s: channel not subscribed (%s); retrying", feed.user_id, exc)
                await asyncio.sleep(RETRY_S)
                continue
            feed.subscribed.set()
            return

    async def _catch_up(self, feed: _Feed, sids: list[str]) -> None:
        try:
            pointer, went_back = await self._current(feed)
        except Exception:  # a bug: said; the members' next change still reaches them
            log.exception("active session of %s: catch-up failed", feed.user_id)
            return
        if went_back:
            self._reset(feed, pointer)
            return
        _saw(feed, pointer.seq, pointer.session_id)
        packet = Packet(ACTIVE_SESSION, json.dumps(pointer.wire(), separators=(",", ":")))
        for sid in sids:
            sent = feed.sent.get(sid)
            if sent is not None and sid not in feed.joining and pointer.seq > sent:
                feed.sent[sid] = pointer.seq
                self._send(sid, packet)

    def _reset(self, feed: _Feed, pointer: ActivePointer) -> None:
        """Redis lost writes: its pointer stands for every member, whatever they were given."""
        log.warning("active session of %s: its change count went back to %d", feed.user_id, pointer.seq)
        feed.seen, feed.seen_id = pointer.seq, pointer.session_id
        packet = Packet(ACTIVE_SESSION, json.dumps(pointer.wire(), separators=(",", ":")))
        for sid in list(feed.sent):
            feed.sent[sid] = pointer.seq
            if sid not in feed.joining:
                self._send(sid, packet)

    async def _current(self, feed: _Feed) -> tuple[ActivePointer, bool]:
        """The pointer, and whether Redis went back: a read behind what this node has seen (a lower
        count, or the same count naming another session) is made again, and that second read,
        issued once the higher count had arrived, can be behind it only if Redis lost writes (see
        the module docstring)."""
        pointer = await self._read_retrying(feed)
        if not _behind(feed, pointer):
            return pointer, False
        pointer = await self._read_retrying(feed)
        return pointer, _behind(feed, pointer)

    async def _read_retrying(self, feed: _Feed) -> ActivePointer:
        while True:
            try:
                return await self._read(feed.user_id)
            except REDIS_AWAY as exc:  # Redis away: the members wait, nobody is told wrong
                log.info("active session of %s: read failed (%s); retrying", feed.user_id, exc)
                await asyncio.sleep(RETRY_S)

    def _send(self, sid: str, packet: Packet) -> None:
        outlet = self._resolve(sid)
        if outlet is not None:
            outlet.send(packet)
            self._metrics.sent(1, len(packet.frame))

    def _spawn(self, feed: _Feed, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        feed.tasks.add(task)
        task.add_done_callback(feed.tasks.discard)


def _newest_name(feed: _Feed, sid: str, read: str) -> str:
    """A joining member's name: a rename that arrived while its read was in flight is newer than
    the read can be (see the module docstring); else the read."""
    arrived = feed.renamed.pop(sid, None)
    return arrived if arrived is not None else read


def _saw(feed: _Feed, seq: int, session_id: str | None) -> None:
    """Note a change read or announced: the highest count seen, and the session it named."""
    if seq > feed.seen:
        feed.seen, feed.seen_id = seq, session_id


def _behind(feed: _Feed, pointer: ActivePointer) -> bool:
    """True when ``pointer`` is older than what the node has seen, or the same count naming
    another session (which only a Redis that lost writes hands out)."""
    return pointer.seq < feed.seen or (pointer.seq == feed.seen and pointer.session_id != feed.seen_id)
