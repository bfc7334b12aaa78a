"""The floor of many small sessions in Python: the least a Python server can spend per event.

Not a product and not a reference to beat, but a bound (issue 26): one thread on raw epoll, no
asyncio, no token check, no validation, no metrics, nothing per event but what the protocol and
the store need. It speaks the part of the protocol bench/sessions.py's generator uses
(subscribe, set a status, the ack, the event to the session's subscribers) and commits every
change in the Redis at ``--redis-url`` with sessionhub's own status script (``core/_event.lua``
and ``voice/set_status.lua``: access, transition, the log, the publish) -- the calls of one
round pipelined in one write, their replies read before the round's acks and events go out. It
reads nothing from pub/sub: each event is written from the script's reply.

If this server at 1,000 x 2 cannot reach a multiple of Node socket.io's committed events/s, no
Python server doing sessionhub's work on one core can.

    .venv/bin/python bench/sessions.py --shape 1000x2 --servers floor,node
"""

from __future__ import annotations

import argparse
import socket
import time
import urllib.parse
import uuid
from typing import Any

import hiredis
from ceiling_server import CeilingServer, Conn, frame

from storage.keys import Keys
from storage.scripts import source

PREFIX = "sh"
OWNER = "bench"
# What recording and pausing may follow (sessionhub's transition table allows at least these).
ALLOWED_FROM = ",ready,paused,recording,cutting,"
MAXLEN = "1000"
EVENT = (
    b'42["session_status",{"session_id":"%s","epoch":"%s","offset":%d,"id":"%s.%d","type":"session_status",'
    b'"ts":%d,"data":{"status":"%s","previous":"%s"}}]'
)


def pack(*args: Any) -> bytes:
    """One Redis command in RESP (hiredis's stub types the tuple as having one element)."""
    packed: bytes = hiredis.pack_command(args)
    return packed


class Store:
    """A blocking Redis connection running the status script for a round's changes at once."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()
        self.keys = Keys(PREFIX)
        text = source("core/_event.lua") + "\n" + source("voice/set_status.lua")
        (sha,) = self.call([pack("SCRIPT", "LOAD", text)])
        if not isinstance(sha, bytes):
            raise RuntimeError(f"SCRIPT LOAD answered {sha!r}")
        self.sha = sha
        self.epoch = uuid.uuid4().hex[:9]

    def call(self, commands: list[bytes]) -> list[object]:
        """Send ``commands`` in one write and read their replies, in order."""
        self.sock.sendall(b"".join(commands))
        replies: list[object] = []
        while len(replies) < len(commands):
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self.reader.feed(data)
            while (reply := self.reader.gets()) is not False:
                replies.append(reply)
        return replies

    def create(self, session_id: str) -> None:
        """The session's record and log, as sessionhub's create leaves them (offset 0 here)."""
        k = self.keys
        self.call(
            [
                pack("HSET", k.session(session_id), "kind", "voice", "owner_id", OWNER, "status", "ready"),
                pack("HSET", k.log_meta(session_id), "epoch", self.epoch, "offset", "0"),
                pack("XADD", k.log(session_id), "0-1", "e", "{}"),
            ]
        )

    def command(self, session_id: str, status: str, now_ms: int, token: int) -> bytes:
        """The EVALSHA of one status change, with the arguments sessionhub's EventLog passes."""
        k = self.keys
        return pack(
            "EVALSHA", self.sha, "4",
            k.log(session_id), k.log_meta(session_id), k.session(session_id), k.voice_recording_lease(session_id),
            k.channel(session_id), session_id, f"{token:x}|", str(now_ms), MAXLEN,
            OWNER, "own", "1", status, ALLOWED_FROM, "session_status", "", "0",
        )  # fmt: skip


class FloorServer(CeilingServer):
    """The ceiling server's epoll loop (accept, upgrade, read, write); each round commits every
    change, acks it and delivers it to its session's subscribers."""

    def __init__(self, host: str, port: int, store: Store) -> None:
        super().__init__(host, port)
        self.rooms: dict[str, list[Conn]] = {}
        self.store = store
        self.tokens = 0

    def _round(self, events: list[Any]) -> None:
        """Commit the round's changes ``(conn, ack id, session id, status)``, in order."""
        now_ms = int(time.time() * 1000)
        commands = []
        for _conn, _ack, session_id, status in events:
            self.tokens += 1
            commands.append(self.store.command(session_id, status, now_ms, self.tokens))
        offsets = [self._offset(reply) for reply in self.store.call(commands)]
        touched: dict[int, Conn] = {}
        for (conn, ack_id, session_id, status), (offset, previous) in zip(events, offsets, strict=True):
            changed = b"true" if offset else b"false"
            conn.outbox += frame(b'43%s[{"ok":true,"changed":%s,"offset":%d}]' % (ack_id, changed, offset))
            touched[id(conn)] = conn
            if offset:
                sid = session_id.encode()
                event = frame(EVENT % (sid, b"e", offset, sid, offset, now_ms, status.encode(), previous.encode()))
                for member in self.rooms.get(session_id, ()):
                    member.outbox += event
                    touched[id(member)] = member
        for conn in touched.values():
            self._flush(conn)

    @staticmethod
    def _offset(reply: object) -> tuple[int, str]:
        if not isinstance(reply, list) or reply[0] is None:
            raise RuntimeError(f"the status script refused: {reply!r}")
        return int(reply[0]), (reply[1] or b"").decode()

    def _on_text(self, conn: Conn, text: bytes, events: list[Any]) -> None:
        if not text.startswith(b"42"):
            super()._on_text(conn, text, events)  # pings and the namespace's connect
            return
        ack_id = text[2 : text.index(b"[")]
        session_id = _field(text, b"session_id")
        if b'"set_session_status"' in text:
            events.append((conn, ack_id, session_id, _field(text, b"status")))
        elif b'"subscribe_on_session"' in text:
            # The generator subscribes before it changes anything: a session is at offset 0 then.
            if session_id not in self.rooms:
                self.store.create(session_id)
            self.rooms.setdefault(session_id, []).append(conn)
            conn.outbox += frame(b'43%s[{"ok":true,"offset":0}]' % ack_id)

    def _close(self, conn: Conn) -> None:
        for members in self.rooms.values():
            if conn in members:
                members.remove(conn)
        super()._close(conn)


def _field(text: bytes, name: bytes) -> str:
    """The string value of ``"name":"..."`` in ``text`` (the generator's own plain JSON)."""
    start = text.index(b'"%s":"' % name) + len(name) + 4
    return text[start : text.index(b'"', start)].decode()


def main() -> None:
    """Parse options and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True, help="commit each change with sessionhub's status script there")
    args = parser.parse_args()
    store = Store(args.redis_url)
    print(f"floor serving on http://{args.host}:{args.port}", flush=True)
    FloorServer(args.host, args.port, store).serve()


if __name__ == "__main__":
    main()
