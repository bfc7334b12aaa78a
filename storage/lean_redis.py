"""redis-py's client with one pipelined connection for the commands on the hot path.

redis-py's asyncio client checks a connection out of its pool for every command, under a
lock, through observability hooks, a retry wrapper and a timeout: 90-150 µs of CPU per command
on the benchmark machine (``bench/redis_client.py``), far more than Redis takes to answer, and
every connect and every event pays it two or three times. :class:`LeanRedis` is that client
with one change: the reads and writes in :data:`LEAN_COMMANDS`, and MULTI/EXEC pipelines
made only of such reads, go over one long-lived connection (:class:`LeanLink`) on which
requests are written back to back and replies are matched to them in order (Redis answers a
connection's commands in the order they arrive). Requests made in the same loop iteration
share one write. Blocking commands, pub/sub, WATCH, and everything else keep redis-py's pool.

When the connection drops, every request waiting on it fails with redis-py's
``ConnectionError``, so the callers' error mapping is unchanged, and the next request
reconnects. A read that lost its reply is tried once more on a new connection; a script is not
(it may have run), so its caller sees the error rather than a change applied twice.

This module subclasses redis-py's ``Redis`` and ``Pipeline`` and reads a few of their
attributes (``command_stack``, ``watching``, ``scripts``, the pool's ``connection_kwargs``): the
one place that does. It reads no private name of redis-py: error replies become redis-py's
exceptions through its own table (:func:`parse_error`, checked against redis-py's private one by
``tests/test_lean_redis.py``). :data:`TESTED` is the redis-py range it was written against; outside it,
:func:`lean_link_for` declines and the client is plain redis-py.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, overload

import hiredis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import Connection, ConnectionPool
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    AuthenticationError,
    BusyLoadingError,
    ClusterCrossSlotError,
    ClusterDownError,
    ExecAbortError,
    MasterDownError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
    WatchError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from protocol import read_end
from protocol.distributions import installed_version, major_minor

log = logging.getLogger(__name__)

# redis-py releases this module was written and tested against (major, minor), high exclusive.
TESTED = ((8, 0), (9, 0))

# Commands whose reply can be read without blocking the connection, and which change nothing.
READS = frozenset({"GET", "HGET", "HMGET", "HGETALL", "HVALS", "EXISTS", "LRANGE", "XRANGE", "XREVRANGE"})
# Writes that never block: script calls, and the ZADD of a recording's sweep entry (one per
# status change to recording, 90-150 µs of CPU through the pool). Not repeated after a drop:
# the caller sees the error rather than a change that may have been applied twice.
WRITES = frozenset({"EVALSHA", "ZADD"})
LEAN_COMMANDS = READS | WRITES
# Options redis-py's command methods pass that change how a reply is parsed; "keys" only feeds
# its client-side cache, which this client does not use.
_PLAIN_OPTIONS = frozenset({"keys"})
CLIENT_NAME = "sessionhub-lean"
SUBSCRIBER_NAME = "sessionhub-lean-bus"
KEEPALIVE_IDLE_S = 30


def _pack(args: tuple[Any, ...]) -> bytes:
    """One command in RESP (hiredis's stub types the tuple as having a single element)."""
    packed: bytes = hiredis.pack_command(args)
    return packed


_MULTI = _pack(("MULTI",))
_EXEC = _pack(("EXEC",))


# Error replies as the exceptions redis-py raises for them. redis-py's own table is private
# (``BaseParser.EXCEPTION_CLASSES``, in its parsers package): this one is built from the public
# exception classes, and ``tests/test_lean_redis.py`` checks it gives what redis-py gives.
_ERROR_CODES: Mapping[str, type[RedisError]] = {
    "OOM": OutOfMemoryError,
    "WRONGPASS": AuthenticationError,
    "EXECABORT": ExecAbortError,
    "LOADING": BusyLoadingError,
    "NOSCRIPT": NoScriptError,
    "READONLY": ReadOnlyError,
    "NOAUTH": AuthenticationError,
    "NOPERM": NoPermissionError,
    "ASK": AskError,
    "TRYAGAIN": TryAgainError,
    "MOVED": MovedError,
    "CLUSTERDOWN": ClusterDownError,
    "CROSSSLOT": ClusterCrossSlotError,
    "MASTERDOWN": MasterDownError,
}
# "ERR <detail>" replies that redis-py raises as something other than ResponseError.
_ERR_DETAILS: Mapping[str, type[RedisError]] = {
    "max number of clients reached": RedisConnectionError,
    "invalid password": AuthenticationError,
}


def parse_error(reply: str) -> RedisError:
    """The exception redis-py raises for the error reply ``reply`` (hiredis's ``replyError``)."""
    code = reply.split(" ")[0]
    if code == "ERR":
        detail = reply[4:]
        return _ERR_DETAILS.get(detail, ResponseError)(detail)
    error = _ERROR_CODES.get(code)
    if error is None:
        return ResponseError(reply)
    return error(reply[len(code) + 1 :])


# An EVALSHA's script body and its command (EVALSHA, sha, numkeys, keys and args).
Fallback = tuple[Any, tuple[Any, ...]]


class Reply:
    """The replies of a request sent without waiting (``LeanLink.submit(..., inline=True)``),
    handed to its one done-callback in the read that completes them.

    What an ``asyncio.Future`` offers a caller that only adds a callback, without the loop
    step a future's callback waits for (a handle scheduled, then run): a committed event's
    answer is written from the read that brought its reply. The callback must not raise; an
    exception it lets out is logged, so the replies behind it in the read are still handed
    over.
    """

    __slots__ = ("_callback", "_error", "_replies", "_state")

    def __init__(self) -> None:
        self._state = 0  # 0 waiting, 1 replies in, 2 failed
        self._replies: list[Any] = []
        self._error: BaseException | None = None
        self._callback: Callable[[Reply], object] | None = None

    def done(self) -> bool:
        return self._state != 0

    def cancelled(self) -> bool:
        return False  # nobody cancels it: a request written is always read off

    def result(self) -> list[Any]:
        """The replies (error replies as values); raises the connection's loss."""
        if self._state == 0:
            raise asyncio.InvalidStateError("the replies are not in yet")
        if self._error is not None:
            raise self._error
        return self._replies

    def exception(self) -> BaseException | None:
        if self._state == 0:
            raise asyncio.InvalidStateError("the replies are not in yet")
        return self._error

    def add_done_callback(self, callback: Callable[[Reply], object]) -> None:
        """Call ``callback(self)`` once done (now, when it is): one callback at most."""
        if self._callback is not None:
            raise RuntimeError("a Reply takes one callback")
        if self._state:
            _call(callback, self)
        else:
            self._callback = callback

    def set_result(self, replies: list[Any]) -> None:
        self._state, self._replies = 1, replies
        self._done()

    def set_exception(self, error: BaseException) -> None:
        self._state, self._error = 2, error
        self._done()

    def _done(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            _call(callback, self)


def _call(callback: Callable[[Reply], object], reply: Reply) -> None:
    try:
        callback(reply)
    except Exception:  # a bug of the caller's: said, and the link reads on
        log.exception("a reply's callback failed")


class _Request:
    __slots__ = ("count", "fallback", "future", "replies", "sha")

    def __init__(self, count: int, future: asyncio.Future[list[Any]] | Reply, fallback: Fallback | None = None) -> None:
        self.count = count
        self.future = future
        self.replies: list[Any] = []
        # An EVALSHA's script body and arguments: its EVAL is sent in its place when Redis
        # answers NOSCRIPT (see _Replies._again); packed only then.
        self.fallback = fallback
        # The script's sha (an EVALSHA's, or the EVAL's sent in its place): an answer other than
        # NOSCRIPT says the script is loaded on this connection's Redis (_Replies.loaded).
        self.sha: str | None = None if fallback is None else fallback[1][1]


class _Replies(asyncio.Protocol):
    """One connection: requests in the order written, each completed by its ``count`` replies."""

    def __init__(self, encoding: str | None, encoding_errors: str) -> None:
        # Error replies become the exceptions redis-py raises (NoScriptError and the like), as
        # in redis-py's own hiredis parser; they are values here, raised by whoever reads them.
        self._reader = _reader(encoding, encoding_errors)
        self._waiting: deque[_Request] = deque()
        self._transport: asyncio.Transport | None = None
        self._unsent: list[bytes] = []  # requests of this loop iteration, written by _flush
        # Kept for the requests' futures and flushes: asking asyncio for the running loop costs
        # a getpid() system call on Python 3.11, once or twice per committed event.
        self.loop = asyncio.get_running_loop()
        self.open = False
        # Scripts (sha) this connection's Redis answered an EVALSHA of, NOSCRIPT aside: loaded
        # there, as far as this connection knows (see LeanRedis.keeps_order).
        self.loaded: set[str] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = _opened(transport)
        self.open = True

    def send(self, packed: bytes, request: _Request) -> None:
        """Write one request; its replies complete it (``ConnectionError`` once the connection is gone)."""
        if self._transport is None or not self.open:
            raise RedisConnectionError("Connection to Redis lost")
        self._waiting.append(request)
        if not self._unsent:
            self.loop.call_soon(self._flush)
        self._unsent.append(packed)

    def _flush(self) -> None:
        # Every request sent in one loop iteration leaves in one write: one system call for
        # the many subscribes (or status changes) that a busy iteration runs.
        unsent, self._unsent = self._unsent, []
        if self._transport is not None and self.open:
            self._transport.write(b"".join(unsent))

    def data_received(self, data: bytes) -> None:
        # What the replies' callbacks put off (a connection's acks, protocol.read_end) runs once
        # every reply of this read was handled, not in the loop's next turn.
        outer = read_end.begin()
        try:
            self._replied(data)
        finally:
            read_end.end(outer)

    def _replied(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                if not self._waiting:  # a reply nobody asked for: the stream cannot be trusted
                    raise hiredis.ProtocolError("unexpected reply from Redis")
                request = self._waiting[0]
                if request.sha is not None:
                    if not isinstance(reply, NoScriptError):
                        self.loaded.add(request.sha)
                    elif request.fallback is not None:  # an EVALSHA's (an EVAL has no NOSCRIPT)
                        self.loaded.discard(request.sha)
                        self._waiting.popleft()
                        if not request.future.done():  # a caller gone (cancelled) runs nothing more
                            self._again(request)
                        continue
                request.replies.append(reply)
                if len(request.replies) == request.count:
                    self._waiting.popleft()
                    if not request.future.done():  # a cancelled caller's replies are still read off
                        request.future.set_result(request.replies)
        except hiredis.ProtocolError:
            self.abort()

    def _again(self, request: _Request) -> None:
        """Send ``request``'s EVAL now: its EVALSHA found no script (a SCRIPT FLUSH, a restarted
        or failed-over Redis) and so ran nothing.

        Written at once, from the read that brought the NOSCRIPT, and queued behind the requests
        already on the wire but ahead of those not yet written: the script calls of a batch that
        all found no script run again in the order they were issued (the first EVAL loads the
        script for those behind it), without a round trip of SCRIPT LOAD per call as redis-py's
        reload does (over its pool, where the reloads -- and so the retries -- may finish in any
        order).
        """
        fallback, request.fallback = request.fallback, None  # one retry: an EVAL has no NOSCRIPT
        assert fallback is not None
        body, evalsha = fallback
        self._waiting.insert(len(self._waiting) - len(self._unsent), request)
        if self._transport is not None and self.open:
            self._transport.write(_pack(("EVAL", body, *evalsha[2:])))

    def abort(self) -> None:
        """Drop the connection; waiting requests fail in :meth:`connection_lost`."""
        self.open = False
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        error = RedisConnectionError(f"Connection to Redis lost: {exc or 'closed by server'}")
        while self._waiting:
            request = self._waiting.popleft()
            if not request.future.done():
                request.future.set_exception(error)


def _reader(encoding: str | None, errors: str) -> hiredis.Reader:
    """A reply parser whose error replies are redis-py's exceptions (values, raised by the reader
    of the reply), decoding strings when ``encoding`` is given."""
    if encoding:
        return hiredis.Reader(replyError=parse_error, encoding=encoding, errors=errors)
    return hiredis.Reader(replyError=parse_error)


def _opened(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """A new Redis connection's transport, its socket kept alive (both protocols start so)."""
    assert isinstance(transport, asyncio.Transport)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        _keep_alive(sock)
    return transport


def _keep_alive(sock: Any) -> None:
    # A Redis that vanished without a reset (a host gone, a partition) would leave requests
    # waiting forever: TCP keepalive ends such a connection within about a minute (redis-py's
    # pool pinged its idle connections every 30 s for the same reason).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE_S), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class LeanLink:
    """One pipelined connection to a single Redis, opened on first use and after each drop."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        connect_timeout_s: float | None = None,
        encoding: str | None = None,
        encoding_errors: str = "strict",
        protocol: int = 3,
    ) -> None:
        self._address = (host, port)
        self._hello = _hello_commands(protocol, username, password, db)
        self._connect_timeout_s = connect_timeout_s
        self._encoding = encoding
        self._encoding_errors = encoding_errors
        self._replies: _Replies | None = None
        self._connecting: asyncio.Task[_Replies] | None = None
        self.requests = 0  # served here, for tests that check this path is in use

    async def request(
        self, packed: bytes, count: int, *, repeatable: bool, fallback: Fallback | None = None
    ) -> list[Any]:
        """Send ``packed`` (``count`` commands) and return their replies, error replies included.

        A ``repeatable`` request whose connection dropped before its replies came is sent once
        more on a new connection. With ``fallback`` (one EVALSHA's script body and command), its
        EVAL is sent in its place if Redis answers NOSCRIPT.
        """
        try:
            return await self._request_once(packed, count, fallback)
        except RedisConnectionError:
            if not repeatable:
                raise
            return await self._request_once(packed, count, fallback)

    def knows_loaded(self, sha: str) -> bool:
        """Whether the open connection's Redis answered an EVALSHA of ``sha`` (not NOSCRIPT):
        the script is loaded there unless a ``SCRIPT FLUSH`` came since."""
        replies = self._replies
        return replies is not None and replies.open and sha in replies.loaded

    @overload
    def submit(
        self, packed: bytes, count: int, fallback: Fallback | None = None, *, inline: Literal[False] = False
    ) -> asyncio.Future[list[Any]] | None: ...

    @overload
    def submit(
        self, packed: bytes, count: int, fallback: Fallback | None = None, *, inline: Literal[True]
    ) -> Reply | None: ...

    def submit(
        self, packed: bytes, count: int, fallback: Fallback | None = None, *, inline: bool = False
    ) -> asyncio.Future[list[Any]] | Reply | None:
        """Send ``packed`` (``count`` commands) now, on the open connection, without waiting: the
        future of its replies (error replies included), or None when no connection is open (the
        caller then awaits :meth:`request` instead). A request made after this one in the same
        loop iteration leaves in the same write, behind it, and Redis runs it after this one.
        ``fallback`` is :meth:`request`'s. ``inline``: a :class:`Reply` in place of the future,
        whose callback runs in the read that brings the replies."""
        replies = self._replies
        if replies is None or not replies.open:
            return None
        future: asyncio.Future[list[Any]] | Reply = Reply() if inline else replies.loop.create_future()
        replies.send(packed, _Request(count, future, fallback))
        self.requests += 1
        return future

    async def _request_once(self, packed: bytes, count: int, fallback: Fallback | None = None) -> list[Any]:
        replies = self._replies
        if replies is None or not replies.open:
            replies = await self._connection()
        future: asyncio.Future[list[Any]] = replies.loop.create_future()
        replies.send(packed, _Request(count, future, fallback))
        self.requests += 1
        return await future

    async def _connection(self) -> _Replies:
        # Concurrent first requests share one connection attempt.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._opened)
        return await asyncio.shield(self._connecting)

    def _opened(self, task: asyncio.Task[_Replies]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._replies = task.result()

    async def _open(self) -> _Replies:
        loop = asyncio.get_running_loop()
        host, port = self._address
        replies = _Replies(self._encoding, self._encoding_errors)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await loop.create_connection(lambda: replies, host, port)
                future: asyncio.Future[list[Any]] = loop.create_future()
                replies.send(b"".join(_pack(c) for c in self._hello), _Request(len(self._hello), future))
                answers = await future
        except TimeoutError as exc:
            replies.abort()  # connected, but no answer to the hello in time
            raise RedisTimeoutError(f"Timeout connecting to Redis at {host}:{port}") from exc
        except OSError as exc:
            raise RedisConnectionError(f"Error connecting to Redis at {host}:{port}: {exc}") from exc
        refused = next((a for a in answers if isinstance(a, RedisError)), None)
        if refused is not None:
            replies.abort()
            raise refused
        return replies

    def close(self) -> None:
        """Close the connection (requests waiting on it fail); a later request opens a new one."""
        if self._replies is not None:
            self._replies.abort()
            self._replies = None


def _hello_commands(protocol: int, username: str | None, password: str | None, db: int) -> list[tuple[Any, ...]]:
    # The same protocol as redis-py's own connections (RESP3 unless told otherwise), so that its
    # reply callbacks see the same shapes; the name tells this connection apart in CLIENT LIST.
    hello: list[tuple[Any, ...]] = []
    if protocol == 3:
        login = ("AUTH", username or "default", password) if password else ()
        hello.append(("HELLO", 3, *login, "SETNAME", CLIENT_NAME))
    else:
        if password:
            hello.append(("AUTH", username, password) if username else ("AUTH", password))
        hello.append(("CLIENT", "SETNAME", CLIENT_NAME))
    if db:
        hello.append(("SELECT", db))
    return hello


# The argument types this client packs itself (exactly: a bool is not an int here).
_PACKABLE = frozenset({str, bytes, int})


def _packable(args: tuple[Any, ...]) -> bool:
    # redis-py refuses booleans and None, and writes floats with repr(): leave those to it. A
    # set test of the types, in C: a generator over the arguments cost 1.6 us per script call.
    return _PACKABLE.issuperset(map(type, args))


def lean_link_for(pool: ConnectionPool) -> LeanLink | None:
    """A link to the pool's Redis, or None when the pool is not plain TCP or redis-py is untested."""
    if not TESTED[0] <= major_minor(installed_version("redis")) < TESTED[1]:
        return None
    if pool.connection_class is not Connection:  # TLS, Unix sockets, sentinels: redis-py only
        return None
    kwargs = pool.connection_kwargs
    protocol = kwargs.get("protocol")
    if protocol not in (None, 2, 3, "2", "3") or kwargs.get("credential_provider") is not None:
        return None
    if not kwargs.get("legacy_responses", True):
        return None
    return LeanLink(
        host=kwargs.get("host", "localhost"),
        port=int(kwargs.get("port", 6379)),
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        db=int(kwargs.get("db") or 0),
        connect_timeout_s=kwargs.get("socket_connect_timeout"),
        encoding=kwargs.get("encoding", "utf-8") if kwargs.get("decode_responses") else None,
        encoding_errors=kwargs.get("encoding_errors", "strict"),
        protocol=int(protocol or 3),
    )


async def _parsed(callbacks: Mapping[Any, Any], name: Any, reply: Any, options: Mapping[str, Any]) -> Any:
    if isinstance(reply, RedisError):
        raise reply
    callback = callbacks.get(name)
    if callback is None:
        return reply
    value = callback(reply, **{k: v for k, v in options.items() if k not in _PLAIN_OPTIONS})
    return await value if inspect.isawaitable(value) else value


class LeanRedis(Redis):
    """redis-py's client; :data:`LEAN_COMMANDS` go over a :class:`LeanLink` (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lean: LeanLink | None = None if self.single_connection_client else lean_link_for(self.connection_pool)
        self._bodies: dict[str, Any] = {}  # sha -> body of each script registered here (str or bytes)

    def remember(self, script: AsyncScript) -> None:
        """Keep ``script``'s body, for the EVAL that answers a NOSCRIPT on the link
        (storage/scripts.py registers every script and calls this)."""
        self._bodies[script.sha] = script.script

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = args[0]
        lean = self.lean
        if lean is None or name not in LEAN_COMMANDS or not options.keys() <= _PLAIN_OPTIONS or not _packable(args):
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        fallback = None
        if name == "EVALSHA":
            body = self._bodies.get(args[1])
            fallback = None if body is None else (body, args)
        (reply,) = await lean.request(_pack(args), 1, repeatable=name in READS, fallback=fallback)
        return await _parsed(self.response_callbacks, name, reply, options)

    async def run_script(self, sha: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """``EVALSHA sha`` with ``keys`` and ``args``: what ``evalsha`` does, over the link without
        redis-py's command layers when it can go there (a committed event's one call), else
        redis-py's way; a NOSCRIPT is answered with the script's EVAL as :meth:`execute_command`
        answers it."""
        command = ("EVALSHA", sha, len(keys), *keys, *args)
        call = self._script_call(command)
        if call is None:
            return await self.execute_command(*command)
        lean, packed, fallback = call
        # On an open connection the reply's future is awaited here: no coroutine of the link's in
        # between, which every committed event crossed on its way out and again on its way back.
        sent = lean.submit(packed, 1, fallback)
        (reply,) = await (sent if sent is not None else lean.request(packed, 1, repeatable=False, fallback=fallback))
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def submit_script(self, sha: str, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[list[Any]] | None:
        """:meth:`run_script`'s call sent now over the link, without a task or a coroutine of its
        own: the future of its one reply (an error reply as its exception, a value, not raised),
        or None when it cannot go over the link now (then await :meth:`run_script`)."""
        call = self._script_call(("EVALSHA", sha, len(keys), *keys, *args))
        if call is None:
            return None
        lean, packed, fallback = call
        return lean.submit(packed, 1, fallback)

    def _script_call(self, command: tuple[Any, ...]) -> tuple[LeanLink, bytes, Fallback | None] | None:
        """The link, the packed EVALSHA ``command`` and its NOSCRIPT fallback; None when the
        call is redis-py's (no link, arguments it alone writes, a reply callback of its own)."""
        lean = self.lean
        if lean is None or not _packable(command) or "EVALSHA" in self.response_callbacks:
            return None
        body = self._bodies.get(command[1])
        return lean, _pack(command), None if body is None else (body, command)

    def submit_in_order(
        self, sha: str, keys: Sequence[Any], args: Sequence[Any], ahead: tuple[Any, ...] | None = None
    ) -> tuple[Reply, Reply | None] | None:
        """``EVALSHA sha`` sent now over the link, behind ``ahead`` (one of :data:`WRITES`) when
        given, where Redis runs it after every request made on the link before it: the
        :class:`Reply` of each (the script's, then ``ahead``'s); None, having sent nothing, when
        it cannot go so -- what :meth:`keeps_order` and :meth:`submit_script` check, asked once
        for both (a committed event's one call: packed once, its arguments looked at once)."""
        lean = self.lean
        if lean is None or not lean.knows_loaded(sha):
            return None
        call = self._script_call(("EVALSHA", sha, len(keys), *keys, *args))
        if call is None or (ahead is not None and (ahead[0] not in WRITES or not _packable(ahead))):
            return None
        _, packed, fallback = call
        first = lean.submit(_pack(ahead), 1, inline=True) if ahead is not None else None
        sent = lean.submit(packed, 1, fallback, inline=True)
        assert sent is not None  # the link knows the script: its connection is open
        return sent, first

    def keeps_order(self, *args: Any) -> bool:
        """Whether the command ``args`` goes over the link, where Redis runs it after every request
        made on the link before it and before every request made after it (a pipelined event's
        commit relies on that: ``protocol.order``).

        A script's EVAL sent after a NOSCRIPT runs behind the requests already written (see
        ``_Replies._again``), and a request behind it may have found the script loaded meanwhile
        by another's EVAL: so an EVALSHA keeps order only once its script is known loaded on the
        link's connection (a NOSCRIPT forgets it; a new connection knows none). What is left is a
        ``SCRIPT FLUSH`` on a live connection, or a new connection, between two pipelined commits
        of one client.
        """
        lean = self.lean
        if lean is None or args[0] not in LEAN_COMMANDS or not _packable(args):
            return False
        return args[0] != "EVALSHA" or lean.knows_loaded(args[1])

    def send_ahead(self, *args: Any) -> asyncio.Future[list[Any]] | None:
        """Send the write ``args`` (one of :data:`WRITES`) now over the link, without waiting: the
        future of its reply, or None when the link cannot take it now (no link, no open
        connection, another command); see :meth:`LeanLink.submit` for the order it keeps."""
        lean = self.lean
        if lean is None or args[0] not in WRITES or not _packable(args):
            return None
        return lean.submit(_pack(args), 1)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return LeanPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint, lean=self.lean)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self.lean is not None:
            self.lean.close()
        await super().aclose(close_connection_pool)


class LeanPipeline(Pipeline):
    """A MULTI/EXEC of reads only goes over the link; any other pipeline is redis-py's."""

    def __init__(self, *args: Any, lean: LeanLink | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lean = lean

    def _fits_link(self, raise_on_error: bool) -> bool:
        stack = self.command_stack
        return (
            self._lean is not None
            and bool(stack)
            and raise_on_error
            and self.is_transaction
            and not self.explicit_transaction
            and not self.watching
            and not self.scripts
            and all(
                args[0] in READS and options.keys() <= _PLAIN_OPTIONS and _packable(args) for args, options in stack
            )
        )

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if not self._fits_link(raise_on_error):
            return await super().execute(raise_on_error)
        assert self._lean is not None
        stack = self.command_stack
        try:
            replies = await _transaction(self._lean, [args for args, _ in stack])
        finally:
            await self.reset()  # type: ignore[no-untyped-call]
        callbacks = self.response_callbacks
        return [
            await _parsed(callbacks, args[0], r, options) for r, (args, options) in zip(replies, stack, strict=True)
        ]


async def _transaction(lean: LeanLink, commands: list[tuple[Any, ...]]) -> list[Any]:
    """MULTI, the reads, EXEC over the link: EXEC's replies, errors raised as redis-py does."""
    packed = b"".join([_MULTI, *map(_pack, commands), _EXEC])
    replies = await lean.request(packed, len(commands) + 2, repeatable=True)
    refused = next((r for r in replies[:-1] if isinstance(r, RedisError)), None)
    if refused is not None:  # a command Redis would not queue: EXEC was aborted
        raise refused
    results = replies[-1]
    if isinstance(results, RedisError):
        raise results
    if results is None:
        raise WatchError("Watched variable changed.")
    if len(results) != len(commands):
        raise ResponseError("Wrong number of response items from pipeline execution")
    return list(results)


async def read_together(redis: Redis, *commands: tuple[Any, ...]) -> list[Any]:
    """The replies of read-only ``commands`` run as one MULTI/EXEC, parsed as redis-py parses them.

    What a session snapshot reads (its record and the log position it reflects) must come
    from one moment. Through a :class:`LeanRedis` link this skips building a redis-py pipeline
    (its objects, per-command dispatch and two resets: 5-8 µs of CPU per snapshot with 32 in
    flight); any other client, or a command outside :data:`READS`, takes redis-py's
    transaction pipeline with the same result.
    """
    lean = redis.lean if isinstance(redis, LeanRedis) else None
    if lean is None or not all(args[0] in READS and _packable(args) for args in commands):
        async with redis.pipeline(transaction=True) as pipe:
            for args in commands:
                pipe.execute_command(*args)
            return list(await pipe.execute())
    replies = await _transaction(lean, list(commands))
    callbacks = redis.response_callbacks
    return [await _parsed(callbacks, args[0], r, {}) for r, args in zip(replies, commands, strict=True)]


class _Messages(asyncio.Protocol):
    """A subscribed connection: every pub/sub message of a read parsed at once, queued in order."""

    def __init__(self, encoding: str | None, loop: asyncio.AbstractEventLoop) -> None:
        self._reader = _reader(encoding, "strict")
        self.queue: deque[dict[str, Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.lost: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None  # the reader waiting for a message, if any
        # Who takes each read's messages in the read itself (LeanSubscriber.push), if anyone.
        self.on_messages: Callable[[list[dict[str, Any]]], None] | None = None
        # The loop it was opened on: asking asyncio for the running one costs a getpid() system
        # call on Python 3.11, and the bus's listener waits for messages once per wake.
        self.loop = loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = _opened(transport)
        self.open = True

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        queue = self.queue
        try:
            while (reply := self._reader.gets()) is not False:
                if isinstance(reply, RedisError):  # AUTH refused, or a command the link should not send
                    self.lost = reply
                    self.abort()
                    break
                if isinstance(reply, list) and len(reply) == 3:  # message / (un)subscribe: kind, channel, data
                    queue.append({"type": _text(reply[0]), "pattern": None, "channel": reply[1], "data": reply[2]})
                # anything else (AUTH's +OK) carries nothing for the reader
        except (hiredis.ProtocolError, UnicodeDecodeError) as exc:
            # A stream that cannot be read on: dropped, as redis-py's reader drops it; the bus
            # connects again and catches its rooms up from the log.
            self.lost = RedisConnectionError(f"unreadable reply from Redis: {exc}")
            self.abort()
        taker = self.on_messages
        if taker is not None and queue:
            self._hand_over(taker, queue)
        if queue or self.lost is not None:
            self._wake()

    @staticmethod
    def _hand_over(taker: Callable[[list[dict[str, Any]]], None], queue: deque[dict[str, Any]]) -> None:
        # In order with anything queued before (the reader's messages from before the push).
        messages = list(queue)
        queue.clear()
        outer = read_end.begin()  # what handling them puts off runs once all are handled
        try:
            taker(messages)
        except Exception:  # the taker's bug: said; the connection reads on
            log.exception("pub/sub messages could not be handed over")
        finally:
            read_end.end(outer)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def abort(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.lost is None:
            self.lost = RedisConnectionError(f"Connection to Redis lost: {exc or 'closed by server'}")
        self._wake()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LeanSubscriber:
    """A pub/sub reader for one Redis, in place of redis-py's ``PubSub`` (what ``server.channels``
    calls of it: connect, subscribe, unsubscribe, get_message, aclose).

    redis-py's ``PubSub.get_message`` reads one message per call through its connection's
    locks, timeouts and retry wrapper (about a tenth of the server's CPU per committed event
    in small sessions, bench/sessions.py). Here each read of the socket is parsed whole by
    hiredis into a queue, and ``get_message`` hands out queued messages without waiting.

    As with redis-py's, a dropped connection fails the next ``get_message`` (after the messages
    read before the drop) with ``ConnectionError``; the call after that connects again and
    subscribes every channel anew, whose confirmations tell the bus to catch up from the log.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        connect_timeout_s: float | None = None,
        encoding: str | None = None,
    ) -> None:
        self._address = (host, port)
        self._login: tuple[Any, ...] = ()
        if password:
            self._login = ("AUTH", username, password) if username else ("AUTH", password)
        self._connect_timeout_s = connect_timeout_s
        self._encoding = encoding
        self.channels: set[str] = set()  # asked for and not dropped: subscribed again on reconnect
        self._link: _Messages | None = None
        self._push: Callable[[list[dict[str, Any]]], None] | None = None

    def push(self, taker: Callable[[list[dict[str, Any]]], None]) -> None:
        """Hand every read's messages to ``taker`` in the read itself, in order, from now on (on
        this connection and the ones after it), in place of queuing them for
        :meth:`get_messages`: no waiter woken, no loop turn waited for. ``get_messages`` still
        tells a dropped connection (and connects again) and waits out its timeout; it returns
        only what was read before this call."""
        self._push = taker
        if self._link is not None:
            self._link.on_messages = taker

    async def connect(self) -> None:
        """Open the connection now (a Redis that does not answer fails here)."""
        await self._connected()

    async def _connected(self) -> _Messages:
        link = self._link
        if link is not None and (link.open or link.queue or link.lost):
            # open, or dropped with what it read still to hand out and the drop to tell: the
            # reader's next call does both, then connects again
            return link
        loop = asyncio.get_running_loop()
        fresh = _Messages(self._encoding, loop)
        fresh.on_messages = self._push
        host, port = self._address
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await loop.create_connection(lambda: fresh, host, port)
        except TimeoutError as exc:
            raise RedisTimeoutError(f"Timeout connecting to Redis at {host}:{port}") from exc
        except OSError as exc:
            raise RedisConnectionError(f"Error connecting to Redis at {host}:{port}: {exc}") from exc
        self._link = fresh
        commands = [self._login] if self._login else []
        commands.append(("CLIENT", "SETNAME", SUBSCRIBER_NAME))  # tells it apart in CLIENT LIST
        if self.channels:
            commands.append(("SUBSCRIBE", *sorted(self.channels)))
        if commands and fresh.transport is not None:
            fresh.transport.write(b"".join(_pack(c) for c in commands))
        return fresh

    async def subscribe(self, *channels: str) -> None:
        """Ask for ``channels``; each confirmation arrives as a ``subscribe`` message."""
        fresh = not (self._link is not None and self._link.open)
        self.channels.update(channels)
        link = await self._connected()  # a new connection subscribes every channel itself
        if not fresh and link.transport is not None:
            link.transport.write(_pack(("SUBSCRIBE", *channels)))

    async def unsubscribe(self, *channels: str) -> None:
        """Drop ``channels``."""
        self.channels.difference_update(channels)
        link = self._link
        if link is not None and link.open and link.transport is not None:
            link.transport.write(_pack(("UNSUBSCRIBE", *channels)))

    async def get_message(self, timeout: float) -> dict[str, Any] | None:
        """The next message, waiting at most ``timeout`` seconds for one (None when none came)."""
        link = await self._waited(timeout)
        return link.queue.popleft() if link.queue else None

    async def get_messages(self, timeout: float) -> list[dict[str, Any]]:
        """Every message read so far, in order, waiting at most ``timeout`` seconds for one
        (none when none came): what :meth:`get_message` hands out one call each, for a reader
        that takes a busy read's many messages in one step."""
        link = await self._waited(timeout)
        queue = link.queue
        if not queue:
            return []
        messages = list(queue)
        queue.clear()
        return messages

    async def _waited(self, timeout: float) -> _Messages:
        """The link, once it has a message queued or ``timeout`` has passed; raises its loss
        (after the messages read before it were handed out)."""
        link = self._link if self._link is not None else await self._connected()
        if link.queue:
            return link
        if not link.open:
            raise self._dropped(link)
        loop = link.loop
        waiter = link.waiter = loop.create_future()
        timer = loop.call_later(timeout, _settle, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            link.waiter = None
        if not link.queue and not link.open:
            raise self._dropped(link)
        return link

    def _dropped(self, link: _Messages) -> Exception:
        self._link = None  # the next call connects again
        return link.lost or RedisConnectionError("Connection to Redis lost")

    async def aclose(self) -> None:
        """Close the connection."""
        if self._link is not None:
            self._link.abort()
            self._link = None


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def lean_subscriber_for(pool: ConnectionPool) -> LeanSubscriber | None:
    """A subscriber to the pool's Redis, or None where :func:`lean_link_for` declines too."""
    link = lean_link_for(pool)
    if link is None:
        return None
    kwargs = pool.connection_kwargs
    return LeanSubscriber(
        host=kwargs.get("host", "localhost"),
        port=int(kwargs.get("port", 6379)),
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        connect_timeout_s=kwargs.get("socket_connect_timeout"),
        encoding=kwargs.get("encoding", "utf-8") if kwargs.get("decode_responses") else None,
    )
