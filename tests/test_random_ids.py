"""server.random_ids: the ids Engine.IO and Socket.IO hand out, drawn a page at a time."""

from __future__ import annotations

import os
import re

from server.random_ids import ID_BYTES, IDS, PAGE_BYTES, RandomIds
from tests.helpers import Client, ServerUnderTest

ID = re.compile(r"^[A-Za-z0-9_-]{20}$")


def test_ids_are_url_safe_distinct_and_cross_pages() -> None:
    ids = RandomIds()
    drawn = [ids.next() for _ in range(3 * PAGE_BYTES // ID_BYTES)]
    assert all(ID.match(i) for i in drawn)
    assert len(set(drawn)) == len(drawn)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    ids = RandomIds()
    ids.next()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, ids.next().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert ID.match(child) and child != ids.next()


async def test_connections_get_ids_from_it(server: ServerUnderTest, clients: list[Client]) -> None:
    before = IDS.drawn
    client = Client(server.url, server.token())
    clients.append(client)
    await client.connect()
    assert client.sio.sid is not None and ID.match(client.sio.sid)
    assert IDS.drawn - before == 2  # the Engine.IO session and the Socket.IO one
