"""The session-kind registry: one subscription, access and snapshot path for every kind.

Every session record carries its ``kind``. A capability registers a :class:`SessionKind` that
says who may read and who may write a session of that kind, how to take its snapshot and how it
shows in a listing; subscribe, replay, snapshots, the bus and the landing page go through the
registry and never name a kind. Adding a kind is registering it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from auth.claims import Claims
from protocol.errors import CodedError, ErrorCode
from storage.events import Position
from storage.sessions import SessionDirectory, SessionMeta


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A session as of ``position``: its public shape, plus fields a kind adds beside it."""

    session: dict[str, Any]
    position: Position
    extra: dict[str, Any] = field(default_factory=dict)


class SessionKind(ABC):
    """What the shared paths need to know about one kind of session."""

    name: str = ""

    @abstractmethod
    def check_read(self, claims: Claims, meta: SessionMeta) -> None:
        """Raise ``forbidden`` unless ``claims`` may read (subscribe to) the session."""

    @abstractmethod
    def check_write(self, claims: Claims, meta: SessionMeta) -> None:
        """Raise ``forbidden`` unless ``claims`` may change the session."""

    @abstractmethod
    async def snapshot(self, session_id: str) -> Snapshot | None:
        """The session and the log position it reflects (read atomically), or None when gone."""

    @abstractmethod
    def summary(self, record: dict[str, str]) -> dict[str, Any]:
        """A stored record as a listing entry: at least ``title`` and ``url``."""

    def owned_keys(self, session_id: str) -> list[str]:
        """The session's keys besides its record and log, deleted with it by an operator."""
        return []

    async def on_delete(self, session_id: str, record: dict[str, str]) -> None:
        """Remove what the session owns outside its own hash slot, once an operator deleted it.

        ``record`` is the record as it was just before the deletion. It runs after the deletion's
        script (other slots cannot join it), so what it removes may be gone already: each step
        must be a no-op then. A kind that keeps nothing elsewhere keeps this default.
        """
        return None


class KindRegistry:
    """Kinds by name, and the lookup of a session's kind with the read check."""

    def __init__(self, directory: SessionDirectory) -> None:
        self._directory = directory
        self._kinds: dict[str, SessionKind] = {}
        directory.owned_keys = self._owned_keys  # a session's size counts what its kind keeps

    def _owned_keys(self, kind: str, session_id: str) -> list[str]:
        registered = self._kinds.get(kind)
        return registered.owned_keys(session_id) if registered is not None else []

    def register(self, kind: SessionKind) -> None:
        """Add ``kind``; a name registered twice is a wiring bug."""
        if not kind.name or kind.name in self._kinds:
            raise ValueError(f"session kind {kind.name!r} is empty or registered twice")
        self._kinds[kind.name] = kind

    def names(self) -> list[str]:
        """Registered kind names, in registration order."""
        return list(self._kinds)

    def get(self, name: str) -> SessionKind | None:
        """The kind registered under ``name``."""
        return self._kinds.get(name)

    async def resolve(self, session_id: str, *, remembered: bool = False) -> tuple[SessionKind, SessionMeta]:
        """The session's kind and meta, or ``session_not_found`` (also for a kind not served here).

        ``remembered`` takes them from the node's memory (``SessionDirectory.known``): only for
        a subscription, whose snapshot or replay, read next, finds out whether the session is
        still there and writes nothing for one that is gone.
        """
        directory = self._directory
        meta = await (directory.known(session_id) if remembered else directory.meta(session_id))
        kind = self._kinds.get(meta.kind) if meta is not None else None
        if meta is None or kind is None:
            raise CodedError(ErrorCode.SESSION_NOT_FOUND, "no such session")
        return kind, meta

    async def readable(
        self, claims: Claims, session_id: str, *, remembered: bool = False
    ) -> tuple[SessionKind, SessionMeta]:
        """Resolve the session, then check read access: ``session_not_found`` before ``forbidden``."""
        kind, meta = await self.resolve(session_id, remembered=remembered)
        kind.check_read(claims, meta)
        return kind, meta

    def summarise(self, record: dict[str, str]) -> dict[str, Any] | None:
        """A listing entry for a stored record of any registered kind (None for unknown kinds)."""
        kind = self._kinds.get(record.get("kind", ""))
        if kind is None:
            return None
        return {
            "session_id": record.get("id", ""),
            "kind": kind.name,
            "created_at": int(record.get("created_at") or 0),
            **kind.summary(record),
        }
