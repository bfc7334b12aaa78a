"""Answer shapes of the admin JSON routes (``/admin/*``), as /openapi.json documents them.

The listing, audit, alerts, deletion, recalculation and the orphans' dry run are built through
these models; the metrics and a session's detail are sent as they are assembled (records and
events of every kind, a remix tree) and documented here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from handlers.admin.alerts import AlertName
from handlers.answers import Answer


class Cost(Answer):
    """An estimated monthly cost (the configured rates)."""

    storage: float
    reads: float
    writes: float
    total: float


class Operations(Answer):
    """Reads and writes counted this month."""

    reads: int
    writes: int


class DeepestRemix(Answer):
    """The deepest remix chain, as of the last recalculation."""

    depth: int
    as_of: int | None = Field(description="when it was computed; null: never")


class KindFigures(Answer):
    """One kind's sessions."""

    sessions: int
    active: int = Field(description="accessed in the last 24 hours")
    created_today: int
    orphaned: int
    storage_bytes: int = Field(description="what Redis holds for them")
    average_bytes: int
    file_bytes: int = Field(description="their files kept outside Redis: voice audio, on disk or in S3")
    monthly_cost: Cost


class TotalFigures(Answer):
    """Every kind's sessions together."""

    sessions: int
    active: int
    created_today: int
    orphaned: int
    storage_bytes: int = Field(description="what Redis holds for them")
    average_bytes: int
    file_bytes: int = Field(description="their files kept outside Redis: voice audio, on disk or in S3")
    operations_this_month: Operations
    deepest_remix: DeepestRemix
    monthly_cost: Cost


class SeedSessions(Answer):
    """Seed 001's ``sessions`` (``total``'s figures)."""

    total: int
    activeToday: int
    createdToday: int
    orphaned90Days: int = Field(description="the orphans by orphan_days (90 unless configured)")


class SeedStorage(Answer):
    """Seed 001's ``storage``."""

    totalBytes: int
    averageBytes: int


class SeedCosts(Answer):
    """Seed 001's ``costs`` (``total.monthly_cost``'s)."""

    storageMonthly: float
    estimatedReadsMonthly: float
    estimatedWritesMonthly: float


class NodeFigures(Answer):
    """A node, from its last heartbeat."""

    node: str
    bus_live: bool
    stale: bool = Field(description="its heartbeat stopped")
    age_ms: int
    clients: int | None = Field(
        description="connected Socket.IO clients; null from a node that does not report them, or a stale one"
    )
    subscriptions: int | None = Field(
        description="their subscriptions; null from a node that does not report them, or a stale one"
    )
    token_keys: str | None = Field(
        description="a fingerprint of how the node verifies access tokens (key, algorithm, issuer,"
        " audience); live nodes that differ refuse each other's tokens (alert token_keys_differ);"
        " null from a node that does not report it"
    )
    history_lost: int = Field(
        description="sessions it followed whose history Redis lost since the node started (alert history_lost)"
    )
    history_lost_at: int | None = Field(description="when it last saw one (ms); null when none")
    address: str | None = Field(
        default=None,
        description="the host:port it listens on (an IPv6 host in brackets); null from a node that does not say it",
    )
    replaces: list[str] = Field(
        default_factory=list,
        description="dead nodes of the same host that listened on its address before it (a restart in their"
        " place): not listed nor alerted themselves; kept here 10 minutes after their last heartbeat",
    )


class Alert(Answer):
    """An alert raised now, with the values of its kind beside these fields."""

    model_config = ConfigDict(extra="allow")

    alert: AlertName
    severity: Literal["warning", "critical"]
    message: str


class Metrics(Answer):
    """``GET /admin/metrics``."""

    generated_at: int
    orphan_days: int
    sessions: SeedSessions
    storage: SeedStorage
    costs: SeedCosts
    total: TotalFigures
    kinds: dict[str, KindFigures] = Field(description="every registered kind, by name")
    nodes: list[NodeFigures]
    alerts: list[Alert]


class SessionRow(Answer):
    """A session in the admin listing."""

    session_id: str
    kind: str
    owner_id: str
    created_at: int
    accessed_at: int
    updated_at: int
    size_bytes: int = Field(description="what Redis holds for it, as of its last touch")
    file_bytes: int = Field(description="its files kept outside Redis (a voice session's audio), as of its last touch")
    remix_count: int
    remixed_from: str | None
    active: bool = Field(description="accessed in the last 24 hours")
    orphaned: bool
    title: str
    url: str


class SessionPage(Answer):
    """``GET /admin/sessions``."""

    sessions: list[SessionRow]
    next_cursor: str | None = Field(description="opaque; null at the end")
    scanned: int = Field(description="index entries looked at (a page looks at up to 2000)")


class Ancestor(Answer):
    """A parent through ``remixed_from``."""

    session_id: str
    name: str
    exists: Literal["yes", "no"]


class RemixNode(Answer):
    """A session remixed or published from its parent."""

    session_id: str
    children: list[RemixNode] = Field(description="oldest first, at most 20")
    more: int = Field(description="the children it has beyond those shown")
    name: str
    remix_count: int
    immutable: bool


class Descendants(Answer):
    """The sessions remixed or published from this one (4 levels deep, 200 in all)."""

    children: list[RemixNode]
    more: int


class Remixes(Answer):
    """A session's remix tree."""

    remix_count: int
    ancestors: list[Ancestor] = Field(description="nearest first")
    descendants: Descendants


class SessionDetail(SessionRow):
    """``GET /admin/sessions/{session_id}``: the listing row and more."""

    session: dict[str, str] = Field(description="the stored record, every field (as stored: strings)")
    epoch: str
    offset: int
    events: list[dict[str, Any]] = Field(description="the last ?events= logged events, oldest first, as on the wire")
    remix: Remixes


class SessionDeleted(Answer):
    """``DELETE /admin/sessions/{session_id}``."""

    deleted: str = Field(description="the session id")
    kind: str
    offset: int = Field(description="the session_deleted event's offset")


class Recalculated(Answer):
    """``POST /admin/recalculate``: the counters rebuilt, and the drift corrected."""

    sessions: int
    added: int
    relisted: int
    removed: int
    corrected: int
    resized: int
    remixes_corrected: int
    children_corrected: int
    deepest_remix: int
    bytes_before: dict[str, int] = Field(description="the byte totals by kind before")
    bytes_after: dict[str, int] = Field(description="the byte totals by kind after")
    file_bytes_before: dict[str, int] = Field(description="the totals of the files kept outside Redis, by kind, before")
    file_bytes_after: dict[str, int] = Field(description="the same totals after")
    drift: bool


class AuditEntry(Answer):
    """An admin action."""

    id: str
    ts: int
    actor: str
    action: str = Field(
        description="delete_session, recalculate, delete_orphans, retry_dead_letter, discard_dead_letter,"
        " discard_dead_letters, grant_admin, revoke_admin"
    )
    target: str
    detail: dict[str, Any]


class AuditLog(Answer):
    """``GET /admin/audit``: newest first."""

    entries: list[AuditEntry]


class AlertList(Answer):
    """``GET /admin/alerts``."""

    alerts: list[Alert]


class OrphanCount(Answer):
    """``POST /admin/orphans/delete`` as a dry run (a confirmed deletion streams NDJSON)."""

    dry_run: Literal[True]
    older_than_days: int
    count: int


class DeadLetter(Answer):
    """A job that ran out of attempts (its payload is not shown)."""

    job_id: str
    type: str
    session_id: str
    performer_id: str
    attempts: int = Field(description="attempts made, failed or interrupted")
    enqueued_at: int = Field(description="when its last attempt was queued (ms)")
    last_error: str = Field(description="the last attempt's error, at most 500 characters")
    buried_at: int | None = Field(description="when it was dead-lettered (ms); null: not recorded (an older release)")


class DeadLetterPage(Answer):
    """``GET /admin/jobs/dead``: newest first."""

    dead_letters: list[DeadLetter]
    total: int = Field(description="dead letters in the list (it keeps the newest 10,000)")
    next_offset: int | None = Field(description="the offset of the next page; null at the end")
    newest: str = Field(
        description="names the list's newest entry (16 hex digits; '' when empty): a discard of all repeats it"
    )
    alert_at: int = Field(
        description="the count that raises the dead_letters alert (SESSIONHUB_ADMIN_DEAD_LETTER_ALERT)"
    )


class DeadLetterSettled(Answer):
    """``POST /admin/jobs/dead/{job_id}/retry`` and ``DELETE /admin/jobs/dead/{job_id}``."""

    job_id: str
    outcome: Literal["retried", "discarded"] = Field(description="what happened to it (by this press or an earlier)")
    again: bool = Field(description="an earlier press had done it already: nothing changed now")


class DeadLettersDiscarded(Answer):
    """``DELETE /admin/jobs/dead``."""

    discarded: int = Field(description="dead letters dropped (0: the list was empty already)")
