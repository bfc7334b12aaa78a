"""Voice-session Socket.IO events of seed 002: Done, post-processing, tasks, status."""

from __future__ import annotations

from typing import Any

from auth.errors import AuthError
from handlers.connection import Connection
from handlers.context import Services
from handlers.payloads import ChunkList, SessionRef, StatusRequest, validate
from handlers.socket_router import SocketRouter
from handlers.voice_access import updatable
from storage.jobs import Job

DONE_MULTIPROMPT = "DONE_MULTIPROMPT"
POST_PROCESS_SESSION = "POST_PROCESS_SESSION"
CREATE_TASKS_FROM_CHUNKS = "CREATE_TASKS_FROM_CHUNKS"


class VoiceEvents:
    """Mutating voice-session events; each checks access on every call."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def register(self, router: SocketRouter) -> None:
        """Attach the events to ``router``."""
        router.on("session_done", self.done)
        router.on("post_process_session", self.post_process)
        router.on("create_tasks_from_chunks", self.create_tasks)
        router.on("set_session_status", self.set_status)

    async def done(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Close the session (repeat allowed), clear the performer's active pointer, queue the job."""
        session_id = validate(SessionRef, data).session_id
        await updatable(self._s.voice, conn.claims, session_id)
        result = await self._s.voice.done(session_id)
        cleared = await self._s.voice.clear_active_if(conn.claims.sub, session_id)
        job = await self._s.jobs.enqueue(
            self._job(DONE_MULTIPROMPT, conn, session_id, {"done_count": result.done_count})
        )
        return {
            "session_id": session_id,
            "done_count": result.done_count,
            "is_active": False,
            "active_session_cleared": cleared,
            "job_id": job.job_id,
        }

    async def post_process(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Queue post-processing of the session."""
        session_id = validate(SessionRef, data).session_id
        await updatable(self._s.voice, conn.claims, session_id)
        job = await self._s.jobs.enqueue(self._job(POST_PROCESS_SESSION, conn, session_id, {}))
        return {"session_id": session_id, "job_id": job.job_id}

    async def create_tasks(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Queue task creation from a validated list of chunk ids."""
        request = validate(ChunkList, data)
        await updatable(self._s.voice, conn.claims, request.session_id)
        chunk_ids = list(dict.fromkeys(request.chunk_ids))  # de-duplicated, order kept
        job = await self._s.jobs.enqueue(
            self._job(CREATE_TASKS_FROM_CHUNKS, conn, request.session_id, {"chunk_ids": chunk_ids})
        )
        return {"session_id": request.session_id, "job_id": job.job_id, "chunk_count": len(chunk_ids)}

    async def set_status(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """The owner's recorder moves the status pictogram (valid transitions only)."""
        request = validate(StatusRequest, data)
        session = await updatable(self._s.voice, conn.claims, request.session_id)
        if session.owner_id != conn.claims.sub:
            raise AuthError("forbidden", "only the owner's recorder sets the status")
        change = await self._s.voice.set_status(request.session_id, request.status)
        return {
            "session_id": request.session_id,
            "status": change.status,
            "previous": change.previous,
            "changed": change.offset > 0,
            "offset": change.offset,
        }

    @staticmethod
    def _job(kind: str, conn: Connection, session_id: str, payload: dict[str, Any]) -> Job:
        # The telegram id comes from the verified token, never from the client's payload.
        return Job(
            type=kind,
            session_id=session_id,
            performer_id=conn.claims.sub,
            telegram_user_id=conn.claims.telegram_user_id,
            payload=payload,
        )
