"""The stock lane's client manager: python-socketio's, with a client's leaving in O(its rooms).

Every client has a room of its own (its sid room), so python-socketio's manager, whose
``basic_disconnect`` and ``get_rooms`` scan every room of the namespace, spends O(clients) on
each client leaving, and keeps the clients being connected and disconnected in lists
(``sid in list``, ``list.remove``): a mass disconnect of N clients costs O(N^2). On the stock
lane 10,000 raw clients dropped at once on loopback held the event loop up to 5 s, and were all
gone after 12 s (2,000: 0.3 s and 0.7 s); with this index, 1.5 s and 2.4 s
(``tests/transport/test_mass_disconnect.py`` checks the scaling).

:class:`RoomIndex` indexes each client's rooms and keeps the pending clients in
insertion-ordered sets that also take the list operations python-socketio uses on them. It
overrides only the manager's public methods (``basic_enter_room``, ``basic_leave_room``,
``basic_disconnect``, ``get_rooms``, ``pre_connect``, ``pre_disconnect``) and reads its public
attributes (``rooms``, ``callbacks``, ``pending_connect``, ``pending_disconnect``; python-socketio
before 5.13 has no ``pre_connect`` and no ``pending_connect``, which is then never filled). It
is the fast lane's ``RoomIndex`` (``server.transport.fastpath``), made to hold on every version
``pyproject.toml`` allows: :func:`client_manager` checks it works on the installed
python-socketio before the server uses it, and falls back to python-socketio's own manager
(slower, never wrong) with one warning when it does not.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

log = logging.getLogger(__name__)


class SidSet(dict[str, None]):
    """Client ids in the order they came, with the list and set operations python-socketio's
    manager uses on its pending lists (``append``, ``remove``; ``add``, ``discard``), each O(1)."""

    def append(self, sid: str) -> None:
        self[sid] = None

    add = append

    def remove(self, sid: str) -> None:
        del self[sid]

    def discard(self, sid: str) -> None:
        self.pop(sid, None)


class RoomIndex(socketio.AsyncManager):
    """python-socketio's manager with each client's rooms indexed (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.rooms_of: dict[str, dict[str, set[Any]]] = {}  # namespace -> sid -> its rooms
        self.pending_connect: dict[str, SidSet] = {}
        self.pending_disconnect: dict[str, SidSet] = {}

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self.rooms_of.setdefault(namespace, {}).setdefault(sid, set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        by_sid = self.rooms_of.get(namespace)
        rooms = by_sid.get(sid) if by_sid is not None else None
        if by_sid is None or rooms is None:
            return
        rooms.discard(room)
        if not rooms:
            del by_sid[sid]
            if not by_sid:
                del self.rooms_of[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        rooms = self.rooms_of.get(namespace, {}).get(sid, ())
        return [room for room in rooms if room is not None]

    def pre_connect(self, eio_sid: str, namespace: str) -> Any:
        # The set is in place before python-socketio appends to it (it makes a list only
        # when the namespace has none).
        self.pending_connect.setdefault(namespace, SidSet())
        return super().pre_connect(eio_sid, namespace)

    def pre_disconnect(self, sid: str, namespace: str) -> Any:
        self.pending_disconnect.setdefault(namespace, SidSet())
        return super().pre_disconnect(sid, namespace)

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        if namespace not in self.rooms:
            return
        # The None room last: a client stays known (sid <-> eio_sid) while it leaves the rest.
        rooms = sorted(self.rooms_of.get(namespace, {}).get(sid, ()), key=lambda room: room is None)
        for room in rooms:
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]


# A namespace no client can join (namespaces start with "/"): the self-check's clients never
# meet a real one.
_CHECK_NAMESPACE = "sessionhub-room-index-check"


def works(manager: RoomIndex) -> bool:
    """Whether ``manager`` keeps rooms as python-socketio's own manager would, on the installed
    python-socketio: two clients connect, share a room, one is pending disconnect then leaves,
    the other leaves; everything of theirs is gone afterwards."""
    ns = _CHECK_NAMESPACE
    try:
        for sid in ("a", "b"):
            manager.basic_enter_room(sid, ns, None, eio_sid=f"e{sid}")
            manager.basic_enter_room(sid, ns, sid, eio_sid=f"e{sid}")
            manager.basic_enter_room(sid, ns, "shared")
        checks = [
            sorted(manager.get_rooms("a", ns)) == ["a", "shared"],
            sorted(sid for sid, _ in manager.get_participants(ns, "shared")) == ["a", "b"],
        ]
        manager.pre_disconnect("a", ns)
        checks += [not manager.is_connected("a", ns), manager.is_connected("b", ns)]
        manager.basic_disconnect("a", ns)
        checks += [
            manager.eio_sid_from_sid("a", ns) is None,
            manager.sid_from_eio_sid("eb", ns) == "b",
            [sid for sid, _ in manager.get_participants(ns, "shared")] == ["b"],
            sorted(manager.get_rooms("b", ns)) == ["b", "shared"],
        ]
        manager.basic_disconnect("b", ns)
        checks += [
            ns not in manager.rooms,
            ns not in manager.rooms_of,
            ns not in manager.pending_disconnect,
            ns not in manager.pending_connect,
        ]
        return all(checks)
    except Exception:  # a python-socketio whose manager changed shape: its own manager serves
        log.debug("room index self-check failed", exc_info=True)
        return False
    finally:
        for table in (manager.rooms, manager.rooms_of, manager.pending_connect, manager.pending_disconnect):
            table.pop(ns, None)
        manager.callbacks.pop("a", None)
        manager.callbacks.pop("b", None)


def client_manager() -> socketio.AsyncManager:
    """A :class:`RoomIndex` when it works on the installed python-socketio, else python-socketio's
    own manager (a mass disconnect then costs O(N^2) again) and one warning saying so."""
    manager = RoomIndex()
    if works(manager):
        return manager
    log.warning(
        "python-socketio's client manager is not as the room index expects: using its own "
        "(a mass disconnect of N clients costs O(N^2))"
    )
    return socketio.AsyncManager()
