"""A calibration server: how many deliveries per second can the load generator take?

Not a reference to compare sessionhub with, but the cheapest server this protocol allows, to
find the generator's own ceiling: no token check, no Redis, one thread on raw epoll. Each
round it reads every request that has arrived, acks the publisher's ``set_session_status``
(always ``changed``, with an offset counter) and queues one ``session_status`` frame per
request for every subscriber; then it writes *all* frames pending for a subscriber in one
``send()``, as a server that coalesces per socket would. With ``--outstanding K`` the
generator sees up to K frames per ``recv()``; its CPU per delivery at K = 8 or 32 is what it
would cost against a server that batches (bench/README.md has the figures).

    python bench/ceiling_server.py --port P     # fanout.py --servers ceiling
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import select
import socket
import struct
from typing import Any

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"
OPEN_PACKET = b'0{"sid":"ceiling","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
READY_RESPONSE = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{"ok":true}'
)
EVENT = (
    b'42["session_status",{"session_id":"%s","epoch":"ceiling","offset":%d,"type":"session_status",'
    b'"ts":0,"data":{"status":"%s","previous":"%s"}}]'
)


def frame(text: bytes) -> bytes:
    """An unmasked server text frame."""
    size = len(text)
    if size < 126:
        return bytes((0x81, size)) + text
    if size < 65536:
        return bytes((0x81, 126)) + struct.pack("!H", size) + text
    return bytes((0x81, 127)) + struct.pack("!Q", size) + text


def upgrade_response(head: bytes) -> bytes:
    """101 Switching Protocols for a WebSocket upgrade request, with the Engine.IO open packet."""
    key = b""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + frame(OPEN_PACKET)
    )


class Conn:
    """One client socket: the request head until upgraded, then client frames; unsent bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbox = b""
        self.upgraded = False
        self.outbox = b""
        self.want_out = False  # EPOLLOUT registered

    def frames(self) -> list[bytes]:
        """The payloads of every complete (masked) client frame received so far."""
        payloads = []
        data = self.inbox
        while len(data) >= 2:
            size, start = data[1] & 0x7F, 2
            if size == 126:
                size, start = struct.unpack("!H", data[2:4])[0], 4
            elif size == 127:
                size, start = struct.unpack("!Q", data[2:10])[0], 10
            masked = data[1] & 0x80
            end = start + (4 if masked else 0) + size
            if len(data) < end:
                break
            payload = data[end - size : end]
            if masked and data[start : start + 4] != b"\0\0\0\0":
                mask = (data[start : start + 4] * (size // 4 + 1))[:size]
                payload = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(size, "big")
            if data[0] & 0x0F == 0x1:
                payloads.append(payload)
            data = data[end:]
        self.inbox = data
        return payloads


class CeilingServer:
    """The epoll loop: accept, upgrade, answer, and fan out once per round."""

    def __init__(self, host: str, port: int) -> None:
        self.listener = socket.create_server((host, port), backlog=4096)
        self.listener.setblocking(False)
        self.epoll = select.epoll()
        self.epoll.register(self.listener.fileno(), select.EPOLLIN)
        self.conns: dict[int, Conn] = {}
        self.subscribers: list[Conn] = []
        self.offset = 0

    def serve(self) -> None:
        """Until killed (the harness stops it with SIGTERM)."""
        while True:
            events: list[Any] = []
            for fd, mask in self.epoll.poll(1.0):
                if fd == self.listener.fileno():
                    self._accept()
                elif mask & select.EPOLLOUT:
                    self._flush(self.conns[fd])
                if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and fd in self.conns:
                    self._read(self.conns[fd], events)
            if events:
                self._round(events)

    def _round(self, events: list[Any]) -> None:
        """What the round's requests make: here, every event to every subscriber at once."""
        batch = b"".join(events)
        for conn in self.subscribers:
            conn.outbox += batch
            self._flush(conn)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns[sock.fileno()] = Conn(sock)
            self.epoll.register(sock.fileno(), select.EPOLLIN)

    def _read(self, conn: Conn, events: list[Any]) -> None:
        try:
            data = conn.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        conn.inbox += data
        if not conn.upgraded:
            end = conn.inbox.find(b"\r\n\r\n")
            if end < 0:
                return
            head, conn.inbox = conn.inbox[:end], conn.inbox[end + 4 :]
            if head.startswith(b"GET /readyz"):
                conn.sock.send(READY_RESPONSE)
                self._close(conn)
                return
            conn.upgraded = True
            conn.outbox += upgrade_response(head)
        for text in conn.frames():
            self._on_text(conn, text, events)
        self._flush(conn)

    def _on_text(self, conn: Conn, text: bytes, events: list[Any]) -> None:
        if text == b"2":
            conn.outbox += frame(b"3")
        elif text.startswith(b"40"):
            conn.outbox += frame(b'40{"sid":"ceiling"}')
        elif text.startswith(b"42") and b'"subscribe_on_session"' in text:
            ack_id = text[2 : text.index(b"[")]
            self.subscribers.append(conn)
            conn.outbox += frame(b'43%s[{"ok":true,"offset":%d}]' % (ack_id, self.offset))
        elif text.startswith(b"42") and b'"set_session_status"' in text:
            ack_id = text[2 : text.index(b"[")]
            self.offset += 1
            status, previous = (b"recording", b"paused") if self.offset % 2 else (b"paused", b"recording")
            ack = b'43%s[{"ok":true,"changed":true,"offset":%d}]' % (ack_id, self.offset)
            conn.outbox += frame(ack)
            events.append(frame(EVENT % (b"s", self.offset, status, previous)))

    def _flush(self, conn: Conn) -> None:
        if conn.outbox:
            try:
                sent = conn.sock.send(conn.outbox)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._close(conn)
                return
            conn.outbox = conn.outbox[sent:]
        if conn.sock.fileno() >= 0 and bool(conn.outbox) != conn.want_out:
            conn.want_out = bool(conn.outbox)
            self.epoll.modify(conn.sock.fileno(), select.EPOLLIN | (select.EPOLLOUT if conn.want_out else 0))

    def _close(self, conn: Conn) -> None:
        fd = conn.sock.fileno()
        if fd < 0:
            return
        self.epoll.unregister(fd)
        self.conns.pop(fd, None)
        if conn in self.subscribers:
            self.subscribers.remove(conn)
        conn.sock.close()


def main() -> None:
    """Parse options and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    print(f"ceiling serving on http://{args.host}:{args.port}", flush=True)
    CeilingServer(args.host, args.port).serve()


if __name__ == "__main__":
    main()
