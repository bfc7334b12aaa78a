"""Voice-session Socket.IO events of seed 002: Done, post-processing, tasks, status."""

from __future__ import annotations

from typing import Any, NamedTuple

from handlers.admission import TurnGate
from handlers.connection import Connection
from handlers.context import Services
from handlers.payloads import ChunkList, FollowActive, StatusRequest, VoiceAction, validate
from handlers.socket_router import SocketRouter, Submission
from handlers.user_events import name_reader
from handlers.voice.access import connection_performer, updatable
from handlers.voice.actions import (
    CREATE_TASKS_FROM_CHUNKS,
    POST_PROCESS_SESSION,
    admit_press,
    close,
    job_for,
    press_job_id,
    queue_once,
)
from handlers.voice.recording import RECORDING_STATUSES, RecordingKeeper
from storage.events import NotConfirmed
from storage.voice.repository import STATUSES, StatusChange, status_change


_STATUS_FIELDS = frozenset({"session_id", "status"})
# Follows started per loop turn (handlers.admission), as subscribes are: every page with the FAB
# follows on each connect, so 10,000 clients reconnecting at once follow at once, each a feed to
# open (a SUBSCRIBE queued) and a Redis read; ungated, 5,000 of them ran in a turn or two and held
# /healthz for a third of a second. The rest wait for the next turns.
FOLLOWS_PER_TURN = 8
_STATUS_SET = frozenset(STATUSES)


class StatusAsked(NamedTuple):
    """What a ``set_session_status`` asks (see :class:`~handlers.payloads.StatusRequest`)."""

    session_id: str
    status: str
    resume: bool = False
    recorder: str | None = None
    own: bool = False


def status_request(data: dict[str, Any]) -> StatusAsked:
    """What a ``set_session_status`` asks: what a recorder sends, ``{session_id, status}`` with a
    known status, is taken as is; anything else is validated by the model (same errors).

    This runs for every status change; the router has already checked and canonicalised the
    id, and the model's other checks (no other field, a string among :data:`STATUSES`) are the
    ones made here, in a tenth of the model's 7 µs.
    """
    status = data.get("status")
    if type(status) is str and status in _STATUS_SET and data.keys() == _STATUS_FIELDS:
        return StatusAsked(data["session_id"], status)
    request = validate(StatusRequest, data)
    return StatusAsked(request.session_id, request.status, request.resume, request.recorder, request.own)


class VoiceEvents:
    """Mutating voice-session events; each checks access on every call."""

    def __init__(self, services: Services, recording: RecordingKeeper) -> None:
        self._s = services
        self._recording = recording
        self.admission = TurnGate(FOLLOWS_PER_TURN)

    def register(self, router: SocketRouter) -> None:
        """Attach the events to ``router``."""
        router.on("session_done", self.done, changes=True)
        router.on("follow_active_session", self.follow_active, session_scoped=False)
        router.on("post_process_session", self.post_process)
        router.on("create_tasks_from_chunks", self.create_tasks)
        # A recorder's status changes may be pipelined: the one write is the status script.
        router.on("set_session_status", self.set_status, changes=True, pipelined=True, submit=self.submit_status)

    async def done(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Close the session (repeat allowed), clear the performer's active pointer, queue the job."""
        request = validate(VoiceAction, data)
        return await close(
            self._s, conn.claims, request.session_id, request_id=request.request_id or "", address=conn.address
        )

    async def follow_active(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """The caller's active session now; each later change comes as an ``active_session``
        event on this connection (every tab and device of the user sees it live, seed 002)."""
        validate(FollowActive, data)
        await self.admission.enter()
        pointer, name = await self._s.bus.follow_user(conn.claims.sub, conn.sid, name_reader(self._s, conn))
        # The name as it stands once followed: a rename made while the page loaded is not missed.
        return {**pointer.wire(), "name": name}

    async def post_process(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Queue post-processing of the session (once per ``request_id``)."""
        request = validate(VoiceAction, data)
        session_id = request.session_id
        await updatable(self._s.voice, conn.claims, session_id)
        await admit_press(self._s, conn.claims, session_id, "process", request.request_id or "", address=conn.address)
        job_id = press_job_id(session_id, "process", conn.claims.sub, request.request_id or "")
        job = job_for(POST_PROCESS_SESSION, conn.claims, session_id, {}, job_id=job_id)
        answer = {"session_id": session_id, "job_id": job.job_id}
        return await queue_once(self._s, conn.claims, session_id, "process", request.request_id, job, answer)

    async def create_tasks(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Queue task creation from a validated list of chunk ids."""
        request = validate(ChunkList, data)
        await updatable(self._s.voice, conn.claims, request.session_id)
        await admit_press(
            self._s, conn.claims, request.session_id, "tasks", request.request_id or "", address=conn.address
        )
        chunk_ids = list(dict.fromkeys(request.chunk_ids))  # de-duplicated, order kept
        job_id = press_job_id(request.session_id, "tasks", conn.claims.sub, request.request_id or "")
        job = job_for(
            CREATE_TASKS_FROM_CHUNKS, conn.claims, request.session_id, {"chunk_ids": chunk_ids}, job_id=job_id
        )
        answer = {"session_id": request.session_id, "job_id": job.job_id, "chunk_count": len(chunk_ids)}
        return await queue_once(self._s, conn.claims, request.session_id, "tasks", request.request_id, job, answer)

    async def set_status(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """The owner's recorder moves the status pictogram (valid transitions only).

        Recording or cutting makes this connection the session's recording lease holder: when it
        goes, the session is paused (handlers/voice/recording.py).
        """
        session_id, status, resume, recorder, own = status_request(data)
        recording = status in RECORDING_STATUSES
        leases = self._recording.leases
        due_entry = None
        if recording:
            # In the sweeper's set before the lease exists: no lease is ever out of its sight.
            # Only for sessions the caller may change, so strangers cannot fill the set; a
            # connection that took this session's lease before passed the script's own check
            # then (the owner of a session never changes, nor a connection's claims), so its
            # recorder toggling between recording and paused pays that read once per
            # connection, not on every start: pausing ends the lease, not that. The entry goes
            # ahead of the script (in its write on a lean link); on a cluster it is written on
            # its own, and its shard away, by this node's next sweep, the recording starting:
            # refused, every recorder of every shard waited for that one shard's failover.
            if not self._recording.recorded_before(conn.sid, session_id):
                await updatable(self._s.voice, conn.claims, session_id)
            due_entry = await leases.due_ahead(session_id)
        try:
            change = await self._s.voice.set_status(
                session_id,
                status,
                connection_performer(conn),
                holder=self._recording.holder(conn, recorder),
                lease_ms=leases.lease_ms,
                resume=resume,
                own=own,
                ahead=due_entry,
            )
        except NotConfirmed:
            # Applied, only not confirmed durable: the lease it took is this connection's, so
            # it is renewed as for an acknowledged change (else the sweeper would pause a
            # session that is recording); the client's retry confirms it.
            self._took_or_ended(conn, session_id, recording)
            raise
        return self._status_answer(conn, session_id, recording, change)

    def submit_status(self, conn: Connection, data: dict[str, Any]) -> Submission | None:
        """:meth:`set_status` without a task (``SocketRouter.on``'s ``submit``): the change sent
        now, and what reads its answer once its reply is in; None, having sent nothing, when
        it must be awaited -- a recording this connection starts on this session for the first
        time (the owner is read first), a link that cannot take it now."""
        session_id, status, resume, recorder, own = status_request(data)
        recording = status in RECORDING_STATUSES
        if recording and not self._recording.recorded_before(conn.sid, session_id):
            return None
        leases = self._recording.leases
        sent = self._s.voice.submit_status(
            session_id,
            status,
            connection_performer(conn),
            holder=self._recording.holder(conn, recorder),
            lease_ms=leases.lease_ms,
            resume=resume,
            own=own,
            ahead=leases.due_entry(session_id) if recording else None,
        )
        if sent is None:
            return None
        return sent.future, lambda: self._status_answer(
            conn, session_id, recording, status_change(status, sent.result())
        )

    def _status_answer(
        self, conn: Connection, session_id: str, recording: bool, change: StatusChange
    ) -> dict[str, Any]:
        if change.holds or not recording:
            self._took_or_ended(conn, session_id, recording)
        return {
            "session_id": session_id,
            "status": change.status,
            "previous": change.previous,
            "changed": change.offset > 0,
            "offset": change.offset,
        }

    def _took_or_ended(self, conn: Connection, session_id: str, recording: bool) -> None:
        # The change gave this connection the session's lease (renewed while it lives), or
        # ended whoever's lease there was (nothing of it left for this node to renew).
        if recording:
            self._recording.hold(conn, session_id)
        else:
            self._recording.ended(conn.sid, session_id)
