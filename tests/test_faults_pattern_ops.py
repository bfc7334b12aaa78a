"""A pattern op retried with its ``client_id`` and ``seq`` after Redis lost it is applied.

PROTOCOL.md (pattern_op, Retries): an op whose ``seq`` is not above the last *applied* one of its
client is answered ``duplicate`` and applied no second time. A Redis that lost its last second
(an OS crash under ``appendfsync everysec``, a failover to a lagging replica) loses the op and
the client's last ``seq`` together (one script, one hash slot), so the retry of a lost op (its
ack lost with the connection, the tab reconnected) must be applied, not answered ``duplicate``
for a change the state no longer has. Reproduced as tests/test_rollback.py does: the session's
keys DUMPed and RESTOREd behind the server's back (the keys written since deleted).
"""

from __future__ import annotations

from redis.asyncio import Redis

from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.patterns.test_events import new_pattern, player, stored_state
from tests.rollback import Rollback


def toggle(session_id: str, seq: int, step: int) -> dict[str, object]:
    op = {"type": "toggle_step", "trackId": "t1", "step": step}
    return {"session_id": session_id, "seq": seq, "client_id": "tab-0000faults", "op": op}


async def test_an_op_redis_lost_is_applied_when_its_client_sends_it_again(
    server: ServerUnderTest, clients: list[Client], redis_process: RedisProcess
) -> None:
    raw = Redis.from_url(redis_process.url)
    try:
        session_id = await new_pattern(server)
        tab = await player(server, clients, session_id)
        steps = (await stored_state(server, session_id))["tracks"][0]["steps"]
        assert (await tab.call("pattern_op", toggle(session_id, 1, 3)))["duplicate"] is False
        lost = Rollback(raw, session_id=session_id)
        await lost.take()
        first = await tab.call("pattern_op", toggle(session_id, 2, 5))
        assert first["ok"] and first["duplicate"] is False, first
        assert (await stored_state(server, session_id))["tracks"][0]["steps"][5] is not steps[5]
        await lost.restore()  # the op and its seq lost
        await tab.close()

        again = await player(server, clients, session_id)  # the tab, reconnected, sends it again
        retry = await again.call("pattern_op", toggle(session_id, 2, 5))
        assert retry["ok"] and retry["duplicate"] is False, retry
        stored = (await stored_state(server, session_id))["tracks"][0]["steps"]
        assert (stored[3], stored[5]) == (not steps[3], not steps[5])
        # And it is remembered again: one more resend is the duplicate, the step not flipped back.
        assert (await again.call("pattern_op", toggle(session_id, 2, 5)))["duplicate"] is True
        assert (await stored_state(server, session_id))["tracks"][0]["steps"][5] is not steps[5]
    finally:
        await raw.aclose()
