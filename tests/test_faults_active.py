"""``follow_active_session`` when Redis lost more than one change of the user's active session.

PROTOCOL.md (follow_active_session): a Redis that lost changes counts again from where it went
back, and each following connection is sent the active session as Redis holds it, "with that
lower or equal ``seq``". tests/test_cluster_active.py covers the equal one (one change lost);
here two changes are lost (a ``/done`` and a ``/start`` within the last second), so the next
change is counted below what the followers were given. The rollback is reproduced as there: the
user's pointer and count set back behind the server's back.
"""

from __future__ import annotations

from typing import Any

from tests.helpers import Client, ServerUnderTest
from tests.test_cluster_active import ends_on, went_back
from tests.voice.test_active_push import connected, pushes


async def test_a_change_counted_below_what_the_followers_were_given_reaches_them(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    voice = server.services.voice
    first, second, third, fourth = [await server.create_session("alice") for _ in range(4)]
    follower = await connected(clients, server, "alice")
    for session_id in (first, second, third):  # seq 1, 2, 3
        await voice.set_active("alice", session_id)
    await ends_on(follower, third)
    await went_back(server, redis, "alice", first, 1)  # the changes to `second` and `third` are lost
    await voice.set_active("alice", fourth)  # counted 2, below the 3 the follower was given
    await ends_on(follower, fourth)
    assert pushes(follower)[-1] == {"session_id": fourth, "seq": 2}
    # And it goes on from there: the next change (3 again, another session) reaches it too.
    await voice.set_active("alice", second)
    await ends_on(follower, second)
    assert pushes(follower)[-1] == {"session_id": second, "seq": 3}
