"""The order of one connection's pipelined events, which every layer on their path keeps.

Events of one connection are applied in the order they were sent, and each one's ack leaves no
later than its fan-out (DESIGN.md). Handling them one after another keeps that trivially, but a
client with several events in flight (a recorder, a sequencer, a load generator) then pays, per
event, a Redis round trip alone and a socket write of its own for the ack.

An event registered as pipelined (``SocketRouter.on(..., pipelined=True)``) may start while the
events sent before it on its connection still wait for Redis: the fast lane runs up to
:data:`DEPTH` of them at once, each in a task of its own holding a :class:`Turn` (the context
variable :data:`TURN`), and writes the acks of those that finished together. Three rules make
that the same, to every client, as handling them one after another:

1. **Commits in order.** An event's commit leaves for Redis only once the commit of the event
   before it has left (``storage.events.EventLog.run`` awaits :meth:`Turn.issue_wait`). Over the
   pipelined Redis link, whose commands Redis runs in the order they arrive, that is enough once
   the link knows the script loaded (``LeanRedis.keeps_order``: a NOSCRIPT's EVAL runs behind
   what was written since); any other commit waits until the event before it has finished
   (:meth:`Turn.finish_wait`), as it would without a pipeline.
2. **The rest in order.** After its commit's reply, an event goes on only once the event before
   it has finished; one that commits nothing waits for that before its ack. So its ack, and
   whatever it does after its commit, come after the event before it.
3. **Each ack ahead of its fan-out.** What is to run once the ack is on its way -- the bus's
   hold release -- is handed to :func:`after_ack`; the transport runs it after it wrote the ack.

A pipelined change whose guard can send its commit at once (``SocketRouter.on``'s ``submit``:
a recorder's status change once its connection was let record the session) takes no task: the
transport's ``SessionServer._commit_now`` sends it from the read that brought it, only once the
commit of the event before it has left (rule 1; else the event takes its task, which waits),
and the reply's callback (``storage.lean_redis.Reply``) writes its ack once the event before it
has finished (rule 2), handing the hold release to its turn's ``after`` (rule 3). Such a turn
has no task: :func:`current` and :func:`pending` never see it.

Reads a handler makes before its commit are not ordered: they may see the state from before an
earlier event's commit, which the commit's script checks again (every script checks its own
preconditions next to its change). A pipelined handler writes nothing to its own connection
but its ack.

A task started by a pipelined handler inherits the context variable but not the turn: only the
task the turn was made for (:attr:`Turn.task`) gets it from :func:`current`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

log = logging.getLogger(__name__)

# Pipelined events of one connection handled at once, at most: what a busy recorder or the
# benchmark's publishers keep in flight. The ninth waits for the first to finish.
DEPTH = 8


class Turn:
    """One pipelined event of a connection, and its place behind the event sent before it."""

    __slots__ = ("_finished_at", "_issued_at", "after", "finished", "issued", "previous", "task")

    previous: Turn | None
    issued: bool
    finished: bool

    def __init__(self, previous: Turn | None) -> None:
        self.previous = previous if previous is not None and not previous.finished else None
        self.issued = False  # its commit has left for Redis, or it will send none
        self.finished = False  # its ack is written (or it was cancelled)
        self.task: asyncio.Task[Any] | None = None
        # What runs once its ack is written (after_ack), in the order it was handed over.
        self.after: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._issued_at: asyncio.Future[None] | None = None
        self._finished_at: asyncio.Future[None] | None = None

    def issue_wait(self) -> asyncio.Future[None] | None:
        """What to await before this event's commit leaves over the ordered link (None: nothing)."""
        previous = self.previous
        if previous is None or previous.issued:
            return None
        if previous._issued_at is None:
            previous._issued_at = _loop_of(previous).create_future()
        return previous._issued_at

    def finish_wait(self) -> asyncio.Future[None] | None:
        """What to await before this event goes on past the event before it (None: nothing)."""
        previous = self.previous
        if previous is None:
            return None
        if previous.finished:
            self.previous = None  # nothing more to wait for: let it go
            return None
        if previous._finished_at is None:
            previous._finished_at = _loop_of(previous).create_future()
        return previous._finished_at

    def mark_issued(self) -> None:
        """This event's commit leaves now: the next event's may follow it."""
        if not self.issued:
            self.issued = True
            if self._issued_at is not None and not self._issued_at.done():
                self._issued_at.set_result(None)

    def finish(self) -> None:
        """This event's ack is written (or it ended without one): the next event may go on."""
        self.mark_issued()
        self.finished = True
        self.previous = None  # no chain of finished turns is kept alive
        # Nor a cycle: the task's context holds this turn (TURN), so a turn holding its task
        # left every event's task, context, coroutine and turn to the garbage collector (seven
        # objects per event: at saturation its young collections took 2-8 ms each).
        self.task = None
        if self._finished_at is not None and not self._finished_at.done():
            self._finished_at.set_result(None)

    def run_after(self) -> None:
        """Run what was handed to :func:`after_ack`, in order (its ack is on its way).

        Each runs whatever the one before it did, as separate ``call_soon`` callbacks would: a
        failing one must not leave the next turns' hold releases (their fan-out) undone."""
        after, self.after = self.after, []
        for callback, args in after:
            try:
                callback(*args)
            except Exception:
                log.exception("a callback run after an ack failed")


class Answered(Protocol):
    """What the reply of a commit sent without a task completes: an ``asyncio.Future``, or the
    lean link's ``Reply``, whose callback runs in the read that brings it."""

    def add_done_callback(self, callback: Callable[[Any], object]) -> None:
        """Call ``callback`` once the reply is in (or the connection lost)."""
        ...


TURN: ContextVar[Turn | None] = ContextVar("sessionhub_turn", default=None)


def _loop_of(turn: Turn) -> asyncio.AbstractEventLoop:
    # The turn's task knows its loop: asking asyncio for the running one costs a getpid()
    # system call on Python 3.11, and a pipelined event asks several times.
    task = turn.task
    return task.get_loop() if task is not None else asyncio.get_running_loop()


def current() -> Turn | None:
    """The running task's turn, or None when it is not a pipelined event's (or has finished)."""
    turn = TURN.get()
    if turn is None or turn.finished:
        return None
    task = turn.task
    if task is None or task is not asyncio.current_task(task.get_loop()):
        return None
    return turn


def pending() -> Turn | None:
    """The turn of the context, while it is not finished: :func:`current` without asking for the
    running task, for callers that run in the turn's own task or for whom one of its tasks
    standing in is harmless (it only waits, or has something run after the ack)."""
    turn = TURN.get()
    return None if turn is None or turn.finished else turn


def after_ack(callback: Callable[..., Any], *args: Any) -> None:
    """Run ``callback(*args)`` once the running event's ack is on its way: at once after the
    transport writes it for a pipelined event, else in the next loop step (the transport hands an
    event's ack over before its task next yields, so that step comes after it)."""
    turn = pending()
    if turn is None:
        asyncio.get_running_loop().call_soon(callback, *args)
    else:
        turn.after.append((callback, args))
