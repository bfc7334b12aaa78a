"""How a processor says a job cannot be done (imported by every processor, built-in or not)."""

from __future__ import annotations


class PermanentJobError(Exception):
    """A failure that retrying cannot fix: the job goes straight to the dead letters."""


class Declined(PermanentJobError):
    """A job that cannot be done because of what a person gave it (a file too big, one the chat
    platform no longer has, a daily quota used up): told to the session as ``failed``, with these
    words, and then done with, not dead-lettered. No operator can do anything about it, and a
    dead letter raised their ``dead_letters`` alert (audit "tgfetch"): the person is told where
    they look (the processor keeps it where they read it, e.g. on the material)."""


class RetryLater(Exception):
    """Not yet: the job is parked for ``delay_ms`` (a service it calls asked to wait, or is away)
    and run again, with ``payload`` in place of its own when given (the tries it has made so far).
    Not a failed attempt: the processor decides when to give up (``PermanentJobError``), and the
    session's subscribers are told it waits (``job_result`` ``retrying``), not that it is done."""

    def __init__(self, message: str, *, delay_ms: int, payload: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.delay_ms = max(int(delay_ms), 0)
        self.payload = payload


class SessionGone(Exception):
    """The job's session was deleted: nothing is left to do, and nobody to tell. Not a failure:
    the job is dropped, not dead-lettered (a person who deleted a session right after its Done
    raised the operator's ``dead_letters`` alert, and a guest could keep it raised at will)."""
