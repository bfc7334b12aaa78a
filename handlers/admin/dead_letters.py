"""``/admin/jobs/dead``: the dead-letter list for an operator: list it, retry or discard a job,
discard them all.

A retry or a discard pressed again after its answer was lost is answered as the first was
(``again``: true) and changes nothing (storage/dead_letters.py); only a press that changed the list
counts against the admin action rate and is written to the audit log, as a session's deletion is:
a press refused by its own check (a discard of all for a list that changed) or answered ``again``
gives its count back. A job id never in the list is ``not_found`` before the rate counts.
"""

from __future__ import annotations

from aiohttp import web

from auth.claims import Claims
from handlers.admin.access import admin_action, admin_claims
from handlers.admin.answers import DeadLetter, DeadLetterPage, DeadLettersDiscarded, DeadLetterSettled
from handlers.admin.config import AdminConfig
from handlers.admin.requests import DeadLetterId, DeadLettersClear, DeadLettersQuery, NoFields, parse_body, parse_query
from handlers.context import Services
from handlers.http_common import guarded, json_body
from handlers.voice.actions import announce_queued
from protocol.errors import CodedError, ErrorCode
from storage.admin.repository import AdminStore
from storage.dead_letters import DeadLetters, Settled
from storage.jobs import Job


class DeadLetterRoutes:
    """``GET``/``DELETE /admin/jobs/dead``, ``POST /admin/jobs/dead/{job_id}/retry``,
    ``DELETE /admin/jobs/dead/{job_id}``."""

    def __init__(self, services: Services, *, store: AdminStore, letters: DeadLetters, config: AdminConfig) -> None:
        self._s = services
        self._store = store
        self._letters = letters
        self._config = config

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/admin/jobs/dead", guarded(self.page))
        app.router.add_delete("/admin/jobs/dead", guarded(self.discard_all))
        app.router.add_post("/admin/jobs/dead/{job_id}/retry", guarded(self.retry))
        app.router.add_delete("/admin/jobs/dead/{job_id}", guarded(self.discard))

    async def page(self, request: web.Request) -> web.Response:
        """A page of dead letters, newest first."""
        await admin_claims(request, self._s)
        q = parse_query(DeadLettersQuery, request.query)
        found = await self._letters.page(offset=q.offset, limit=q.limit)
        answer = DeadLetterPage(
            dead_letters=[DeadLetter.model_validate(letter, from_attributes=True) for letter in found.letters],
            total=found.total,
            next_offset=found.next_offset,
            newest=found.newest,
            alert_at=self._config.dead_letter_alert,
        )
        return web.json_response(answer.wire())

    async def retry(self, request: web.Request) -> web.Response:
        """Queue a dead letter's job again, from its first attempt."""
        claims = await admin_claims(request, self._s)
        job_id = self._job_id(request)
        parse_body(NoFields, await json_body(request, max_bytes=1024, optional=True))
        entry = await self._known(job_id)
        async with admin_action(self._s, claims, per_min=self._config.actions_per_min) as action:
            retried_at = self._s.clock.now_ms()
            settled = await self._letters.retry(job_id, entry=entry)
            if settled.letter is None:
                action.changed_nothing()
        if settled.letter is not None:  # its session's pages say it waits again, not "failed"
            letter = settled.letter
            job = Job(type=letter.type, session_id=letter.session_id, performer_id=letter.performer_id, job_id=job_id)
            await announce_queued(self._s, job, retried_at_ms=retried_at)
        return web.json_response(await self._settled(claims, settled, "retried"))

    async def discard(self, request: web.Request) -> web.Response:
        """Drop one dead letter."""
        claims = await admin_claims(request, self._s)
        job_id = self._job_id(request)
        entry = await self._known(job_id)
        async with admin_action(self._s, claims, per_min=self._config.actions_per_min) as action:
            settled = await self._letters.discard(job_id, entry=entry)
            if settled.letter is None:
                action.changed_nothing()
        return web.json_response(await self._settled(claims, settled, "discarded"))

    async def discard_all(self, request: web.Request) -> web.Response:
        """Drop every dead letter; ``confirm`` repeats the count the operator saw, ``newest`` the
        list's newest entry as they saw it."""
        claims = await admin_claims(request, self._s)
        q = parse_query(DeadLettersClear, request.query)
        async with admin_action(self._s, claims, per_min=self._config.actions_per_min) as action:
            dropped = await self._letters.discard_all(confirm=q.confirm, newest=q.newest)
            if not dropped:
                action.changed_nothing()
        if dropped:
            detail = {"confirmed": q.confirm, "newest": q.newest, "discarded": dropped}
            await self._store.audit(actor=claims.sub, action="discard_dead_letters", target="*", detail=detail)
        return web.json_response(DeadLettersDiscarded(discarded=dropped).wire())

    @staticmethod
    def _job_id(request: web.Request) -> str:
        return parse_body(DeadLetterId, {"job_id": request.match_info["job_id"]}, whole="job_id").job_id

    async def _known(self, job_id: str) -> str:
        """The entry of ``job_id`` ('' when settled lately); ``not_found`` for an id neither in
        the list nor settled lately, before the rate counts (a typo costs no action). The script
        checks the entry again as it changes the list."""
        entry = await self._letters.find(job_id)
        if not entry and not await self._letters.settled(job_id):
            raise CodedError(ErrorCode.NOT_FOUND, f"no dead letter {job_id}")
        return entry

    async def _settled(self, claims: Claims, settled: Settled, outcome: str) -> dict[str, object]:
        """The answer, with the audit entry of a press that changed the list."""
        if settled.letter is not None:
            action = "retry_dead_letter" if outcome == "retried" else "discard_dead_letter"
            letter = settled.letter
            detail = {"type": letter.type, "session_id": letter.session_id, "attempts": letter.attempts}
            await self._store.audit(actor=claims.sub, action=action, target=settled.job_id, detail=detail)
        shown = settled.earlier if settled.again else outcome
        return DeadLetterSettled.model_validate(
            {"job_id": settled.job_id, "outcome": shown, "again": settled.again}
        ).wire()
