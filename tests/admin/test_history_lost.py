"""A history Redis lost is an alert and a metric, not only a line in one node's log.

When Redis loses a session's log (restarted without its data, flushed, evicting, or failed over to
a replica that lagged), the bus tells the session's subscribers to resync and logs a warning. An
operator looking at the dashboard saw nothing: no alert, no figure. Now each node counts the
sessions it follows whose history was lost, says so in its heartbeat, and ``/admin/alerts`` raises
``history_lost`` for a day after the last; ``/metrics`` has ``sessionhub_history_lost_sessions``.
A session deleted by its owner is no history lost.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.admin.test_token_keys import alerts_and_nodes
from tests.helpers import OWNER, Client, ServerUnderTest
from tests.test_metrics import scrape, value


async def _followed(server: ServerUnderTest, clients: list[Client]) -> tuple[str, Client]:
    """A session of alice's and a client subscribed to it that saw one event."""
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    await client.call("subscribe_on_session", {"session_id": session_id})
    return session_id, client


def _lost(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [alert for alert in alerts if alert["alert"] == "history_lost"]


async def test_a_log_redis_lost_raises_history_lost_naming_the_node_and_counts_it(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    alerts, nodes = await alerts_and_nodes(server)
    assert _lost(alerts) == [] and [node["history_lost"] for node in nodes] == [0]
    before = await scrape(server)
    assert ("sessionhub_history_lost_sessions_total", ()) in before and value(
        before, "sessionhub_history_lost_sessions_total"
    ) == 0

    session_id, client = await _followed(server, clients)
    await redis.delete(server.services.keys.log(session_id))  # Redis lost the log (restored without it)
    await server.services.voice.set_status(session_id, "recording", OWNER)  # the next write makes a new one
    await client.wait_for(lambda: bool(client.named("session_resync")))

    alerts, nodes = await alerts_and_nodes(server)
    [alert] = _lost(alerts)
    [node] = nodes
    assert alert["node"] == node["node"] and alert["sessions"] == 1 == node["history_lost"], (alert, node)
    assert alert["severity"] == "warning" and "lost the history of 1 session" in alert["message"], alert
    assert node["history_lost_at"] == alert["last_at"] and alert["last_at"] > 0
    assert value(await scrape(server), "sessionhub_history_lost_sessions_total") == 1
    assert value(await scrape(server), "sessionhub_alerts", alert="history_lost") == 1


async def test_a_session_deleted_by_its_owner_is_no_history_lost(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, client = await _followed(server, clients)
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{server.url}/voicebot/sessions/{session_id}", headers=headers) as answer:
            assert answer.status == 200, await answer.text()
    await client.wait_for(lambda: any(e["data"].get("deleted") for e in client.named("session_update")))
    alerts, nodes = await alerts_and_nodes(server)
    assert _lost(alerts) == [] and [node["history_lost"] for node in nodes] == [0], (alerts, nodes)
    assert value(await scrape(server), "sessionhub_history_lost_sessions_total") == 0
