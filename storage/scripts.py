"""Loads the Lua scripts: a capability's under ``storage/<capability>/lua/``, the shared ones
(``core``, ``jobs``) under ``storage/lua/<group>/``. A script is named ``<capability or
group>/<file>.lua`` either way.

A script that changes a session is prefixed with the shared event prologue
(``core/_event.lua``: the log append and the owner access rule). Each repository registers the
scripts it runs; registering costs no round trip (EVALSHA with a transparent NOSCRIPT reload).

On Redis Cluster the scripts publish with ``SPUBLISH`` (sharded pub/sub: the session's channel
shares its hash tag, so it lives on the shard that runs the script) instead of ``PUBLISH``.

The contract every script keeps (``tests/test_lua_contract.py`` holds each script to it):

- **Header.** A script opens with a comment block naming each ``KEYS[n]`` and ``ARGV[n]`` it
  reads, one per line (``--   KEYS[3]  the session hash``). A prologue's share may be named as a
  range (``--   KEYS[1..2], ARGV[1..5]  see _event.lua``); a trailing variadic tail as
  ``ARGV[8..]`` (zero or more from there). The names must run 1..n without a gap: the
  loader reads the last source's header into the counts it declares (:class:`Arity`), and
  every call of the script (:meth:`Script.__call__`, and :meth:`Script.commands` for the raw
  EVALSHA of a durable cluster write) checks that it passes exactly that many keys and args,
  raising :class:`ScriptCallError` naming the script otherwise. ARGV is positional: a header
  and its call site that disagree are a bug found on the first call, not a silent shift.
- **Result.** A refusal is ``{false, '<error_code>'}`` or ``{false, '<error_code>', detail}``
  (Lua's false reaches Python as None); anything whose first element is not false is an
  answer. :func:`checked` is the one place that turns a refusal into its
  :class:`~protocol.errors.CodedError`; a capability that words its errors from the detail (the
  seconds to wait, the cap reached) passes an :data:`Explain` for that.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from protocol.errors import CodedError, ErrorCode
from storage.lean_redis import LeanRedis

_PROLOGUE = "core/_event.lua"

# One header line: after the comment mark, one name or a comma-separated run of names, then the
# description. Names mentioned later in a description ("'1' when ARGV[10] is the note") do not
# count: only the ones the line starts with are declared.
_HEADER_LINE = re.compile(r"^--\s+((?:KEYS|ARGV)\[[0-9.]+\](?:\s*,\s*(?:KEYS|ARGV)\[[0-9.]+\])*)(?:\s|$)")
_NAME = re.compile(r"(KEYS|ARGV)\[(\d+)(\.\.)?(\d*)\]")


class ScriptHeaderError(ValueError):
    """A script's header names its KEYS or ARGV with a gap, twice, or not at all."""


class ScriptCallError(TypeError):
    """A script called with another number of keys or args than its header declares (a bug)."""


@dataclass(frozen=True, slots=True)
class Arity:
    """How many of KEYS (or ARGV) a header names: exactly ``count``, or more when ``open``."""

    count: int
    open: bool = False

    def accepts(self, passed: int) -> bool:
        """True when a call passing ``passed`` of them is what the header declares."""
        return passed == self.count or (self.open and passed > self.count)

    def __str__(self) -> str:
        return f"{self.count}{' or more' if self.open else ''}"


@dataclass(frozen=True, slots=True)
class Declared:
    """The indexes a header names, per table, and where a variadic tail starts (0: none)."""

    keys: frozenset[int]
    args: frozenset[int]
    keys_tail: int = 0
    args_tail: int = 0

    def names(self, table: str, index: int) -> bool:
        """True when ``table[index]`` (table ``KEYS`` or ``ARGV``) is named by the header."""
        named, tail = (self.keys, self.keys_tail) if table == "KEYS" else (self.args, self.args_tail)
        return index in named or (tail > 0 and index >= tail)


def declared(path: str, text: str) -> Declared:
    """The names in the header (the leading comment block) of script ``path``."""
    found: dict[str, set[int]] = {"KEYS": set(), "ARGV": set()}
    tails = {"KEYS": 0, "ARGV": 0}
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        entry = _HEADER_LINE.match(line)
        if entry is None:
            continue
        for table, first, dots, last in _NAME.findall(entry.group(1)):
            start = int(first)
            if dots and not last:
                tails[table] = start
                continue
            indexes = set(range(start, int(last) + 1)) if dots else {start}
            if found[table] & indexes:
                raise ScriptHeaderError(f"{path}: {table}{sorted(found[table] & indexes)} named twice")
            found[table] |= indexes
    return Declared(frozenset(found["KEYS"]), frozenset(found["ARGV"]), tails["KEYS"], tails["ARGV"])


def _contiguous(path: str, table: str, named: frozenset[int], tail: int, *, start: int) -> int:
    """The last index of ``named``, which must run from ``start`` without a gap (into ``tail``)."""
    last = max(named, default=start - 1)
    if (named and min(named) != start) or len(named) != last - start + 1:
        raise ScriptHeaderError(f"{path}: its header names {table} {sorted(named)}, not {start}..{last} in a row")
    if tail and tail != last + 1:
        raise ScriptHeaderError(f"{path}: its header's {table}[{tail}..] does not follow {table}[{last}]")
    return last


def signature(path: str, text: str) -> tuple[Arity, Arity]:
    """The keys and args a call of script ``path`` passes, as its header declares them."""
    names = declared(path, text)
    keys = _contiguous(path, "KEYS", names.keys, names.keys_tail, start=1)
    args = _contiguous(path, "ARGV", names.args, names.args_tail, start=1)
    return Arity(keys, names.keys_tail > 0), Arity(args, names.args_tail > 0)


class Script(AsyncScript):
    """A registered script that checks each call against its header (the module docstring)."""

    def __init__(self, redis: Redis, text: str, *, name: str, keys: Arity, args: Arity) -> None:
        super().__init__(redis, text)
        self.text = text  # the body as str (redis-py's ``script`` may be bytes)
        self.name = name
        self.keys = keys
        self.args = args
        self._counts = (keys.count, args.count)
        # redis-py's AsyncScript.__call__ imports Pipeline and tests the client against it on
        # every call (an isinstance through a typing Protocol: several µs, once per committed
        # event); the registered client's answer never changes, so it is asked once here.
        self._plain = not isinstance(redis, Pipeline)
        # Over the lean link a call skips redis-py's evalsha and execute_command layers.
        self._lean = redis if isinstance(redis, LeanRedis) else None

    def check(self, keys: Sequence[Any], args: Sequence[Any]) -> None:
        """Raise :class:`ScriptCallError` unless the call passes what the header declares."""
        # One tuple comparison on the common path: cheap enough for every call, a raid's clip
        # submits included; only a variadic script (or a bug) looks further.
        if (len(keys), len(args)) != self._counts and not (
            self.keys.accepts(len(keys)) and self.args.accepts(len(args))
        ):
            raise ScriptCallError(
                f"{self.name} declares {self.keys} KEYS and {self.args} ARGV in its header, "
                f"called with {len(keys)} and {len(args)}"
            )

    async def __call__(
        self, keys: Sequence[Any] | None = None, args: Iterable[Any] | None = None, client: Any = None
    ) -> Any:
        keys = keys or []
        args = args if isinstance(args, list | tuple) else list(args or [])
        self.check(keys, args)
        if client is not None or not self._plain:
            return await super().__call__(keys, args, client)  # a pipeline registers the script first
        redis = self.registered_client
        try:
            if self._lean is not None:
                return await self._lean.run_script(self.sha, keys, args)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A Redis that lacks the script (restarted, flushed, a replica just promoted: scripts
            # are not replicated): the body itself, sent to the one that answered, which keeps it
            # for the next EVALSHA. redis-py's way (AsyncScript.__call__) is SCRIPT LOAD, which a
            # cluster client sends to every primary: with any one of them down (killed, until its
            # replica takes over) every script not yet loaded failed on the healthy shards too,
            # the give-back of an Idempotency-Key among them (audit "killmaster").
            return await redis.eval(self.text, len(keys), *keys, *args)

    async def load(self) -> None:
        """Load the script into Redis now (``SCRIPT LOAD``), as a call does when Redis lacks it."""
        self.sha = await self.registered_client.script_load(self.script)

    def submit(self, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[list[Any]] | None:
        """The checked call sent now over the registered client's lean link, without a task: the
        future of its one reply (an error reply is a value in it, not raised), or None when the
        call cannot go that way now (another client, no open connection): then await the script."""
        self.check(keys, args)
        if self._lean is None:
            return None
        return self._lean.submit_script(self.sha, keys, args)

    def commands(self, keys: Sequence[Any], args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The checked call as raw commands: EVALSHA, then EVAL for a Redis that lacks it."""
        self.check(keys, args)
        return [
            (command, body, len(keys), *keys, *args) for command, body in (("EVALSHA", self.sha), ("EVAL", self.script))
        ]


# How a capability words a refusal from its detail; None keeps the code's plain error.
Explain = Callable[[ErrorCode, str], CodedError | None]


def refused(result: Any) -> bool:
    """True when a script's answer is a refusal, ``{false, code[, detail]}``."""
    return bool(result) and isinstance(result, list) and result[0] is None


def checked(result: Any, explain: Explain | None = None) -> list[Any]:
    """A script's answer as a list, or the coded error of the refusal it is (raised).

    The one place a refusal becomes an error, for every repository. An unknown code is a bug
    (``internal_error``) and is never given to ``explain``.
    """
    if not refused(result):
        return list(result)
    error = CodedError.from_wire(str(result[1]))
    if explain is not None and error.code is not ErrorCode.INTERNAL_ERROR:
        error = explain(error.code, str(result[2]) if len(result) > 2 else "") or error
    raise error


def source(path: str) -> str:
    """The text of script ``<capability or group>/<file>.lua``."""
    package, _, name = path.partition("/")
    own = resources.files("storage").joinpath(package, "lua", name)
    shared = resources.files("storage").joinpath("lua", path)
    return (own if own.is_file() else shared).read_text(encoding="utf-8")


def _for(redis: Redis, source: str) -> str:
    if isinstance(redis, RedisCluster):
        return source.replace("redis.call('PUBLISH',", "redis.call('SPUBLISH',")
    return source


def composed_script(redis: Redis, *paths: str) -> Script:
    """One script made of the given sources, in order (prologues first).

    The one place a script reaches Redis: every repository registers its scripts through this
    module, so each gets the cluster rewrite (a test keeps ``register_script`` out of the rest).
    """
    text, keys, args = _composed(paths)
    # A Script is what redis-py's register_script makes, plus the header's counts.
    script = Script(redis, _for(redis, text), name=paths[-1], keys=keys, args=args)
    if isinstance(redis, LeanRedis):
        redis.remember(script)  # a NOSCRIPT on its link is answered with EVAL, in order
    return script


# Read and checked once a process: the files do not change under it, and every app built (each
# server a test starts) composed its ~90 scripts again, ~15 ms of its ~37 ms of start-up CPU.
@functools.cache
def _composed(paths: tuple[str, ...]) -> tuple[str, Arity, Arity]:
    """The sources of ``paths`` joined in order, and the keys and args a call passes."""
    texts = [source(path) for path in paths]
    for path, text in zip(paths, texts, strict=True):
        # Prologues must be named without gaps too, though they start where the one before ends.
        names = declared(path, text)
        _contiguous(path, "KEYS", names.keys, names.keys_tail, start=min(names.keys, default=1))
        _contiguous(path, "ARGV", names.args, names.args_tail, start=min(names.args, default=1))
    # The last source is the operation: its header names the prologues' share as ranges.
    keys, args = signature(paths[-1], texts[-1])
    return "\n".join(texts), keys, args


def event_script(redis: Redis, path: str) -> Script:
    """A session-changing script (``lua/<path>``) with the event prologue in front of it."""
    return composed_script(redis, _PROLOGUE, path)


def plain_script(redis: Redis, path: str) -> Script:
    """A script that appends no event."""
    return composed_script(redis, path)


@dataclass(frozen=True, slots=True)
class Scripts:
    """The scripts every kind shares: create a record, update it, append a notice."""

    append: Script
    append_kept: Script
    session_create: Script
    session_update: Script

    @classmethod
    def load(cls, redis: Redis) -> Scripts:
        """Register the shared scripts on ``redis``."""
        return cls(
            append=event_script(redis, "core/append.lua"),
            append_kept=event_script(redis, "core/append_kept.lua"),
            session_create=event_script(redis, "core/session_create.lua"),
            session_update=event_script(redis, "core/session_update.lua"),
        )
