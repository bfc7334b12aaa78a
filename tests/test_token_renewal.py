"""``renew_token``: a connection outlives its access token without being made again.

Before it, a connection whose token ran out could only be closed and made again, and its close
ended the recording lease it held: every other tab saw the session paused, then recording once
the recorder was back (the hourly flicker the audit "returning" left open).
"""

from __future__ import annotations

from typing import Any

from auth.claims import Permission
from tests.helpers import ALL_PERMS, Client, ServerUnderTest

HOUR_MS = 3_600_000


def statuses(client: Client) -> list[str]:
    return [event["data"]["status"] for event in client.named("session_status")]


async def expired(server: ServerUnderTest, client: Client) -> None:
    """Two hours on: ``client``'s token has run out, and its next event says so."""
    server.services.clock.shift_ms += 2 * HOUR_MS
    ack = await client.call("follow_user", {})
    assert ack["error"] == "unauthorized" and "renew_token" in ack["message"], ack


async def connected(server: ServerUnderTest, clients: list[Client], token: str) -> Client:
    client = Client(server.url, token)
    clients.append(client)
    return await client.connect()


async def test_a_recording_outlives_its_token_without_a_pause_anyone_sees(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    recorder = await connected(server, clients, server.token("alice"))
    ack = await recorder.call("set_session_status", {"session_id": session_id, "status": "recording"})
    assert ack["ok"], ack
    sid = recorder.sio.get_sid()
    await expired(server, recorder)
    cut = {"session_id": session_id, "status": "cutting"}
    assert (await recorder.call("set_session_status", cut))["error"] == "unauthorized"

    renewed = await recorder.call("renew_token", {"token": server.token("alice")})
    assert renewed["ok"] and renewed["user_id"] == "alice", renewed
    assert renewed["expires_at"] > server.services.clock.now_s() + 3000
    ack = await recorder.call("set_session_status", cut)
    assert ack["ok"] and ack["status"] == "cutting", ack
    await watcher.wait_for(lambda: statuses(watcher)[-1:] == ["cutting"])
    # One connection all along, which held the lease: nobody saw the session paused.
    assert recorder.sio.get_sid() == sid
    assert statuses(watcher) == ["recording", "cutting"], statuses(watcher)
    session = await server.services.voice.get(session_id)
    assert session is not None and session.status == "cutting"
    # The watcher's subscription went on too: it renews in place and is still subscribed.
    assert (await watcher.call("renew_token", {"token": server.token("alice")}))["ok"]
    assert (await recorder.call("set_session_status", {"session_id": session_id, "status": "paused"}))["ok"]
    await watcher.wait_for(lambda: statuses(watcher)[-1:] == ["paused"])


async def test_only_a_later_token_of_the_same_identity_renews(server: ServerUnderTest, clients: list[Client]) -> None:
    family_id, _ = await server.services.identities.open_family("alice", label="phone", grant={})
    client = await connected(server, clients, server.token("alice", fam=family_id))
    await expired(server, client)
    forged = server.token("alice", fam=family_id)[:-4] + "AAAA"
    others: list[tuple[str, Any]] = [
        ("another user", {"token": server.token("mallory", fam=family_id)}),
        ("another device", {"token": server.token("alice")}),
        ("other permissions", {"token": server.token("alice", perms=(Permission.ADMIN,), fam=family_id)}),
        ("a guest's", {"token": server.token("alice", fam=family_id, guest=True)}),
        ("expired", {"token": server.token("alice", fam=family_id, ttl_s=-10)}),
        ("forged", {"token": forged}),
    ]
    for what, payload in others:
        ack = await client.call("renew_token", payload)
        assert ack["ok"] is False and ack["error"] == "unauthorized", (what, ack)
        # Refused changes nothing: the connection still goes by its expired token.
        assert (await client.call("follow_user", {}))["error"] == "unauthorized", what
    for payload in (None, {}, {"token": 12}, {"token": ""}, {"token": "x" * 8193}, {"token": "t", "sub": "bob"}):
        ack = await client.call("renew_token", payload)
        assert ack["ok"] is False and ack["error"] == "invalid_payload", (payload, ack)

    # A later token of the same device, its name changed since (a rename), its permissions listed
    # in another order: renewed.
    later = server.token("alice", perms=tuple(reversed(ALL_PERMS)), fam=family_id, name="Alice B.")
    renewed = await client.call("renew_token", {"token": later})
    assert renewed["ok"], renewed
    assert (await client.call("follow_user", {}))["ok"]

    # A device signed out: its tokens renew nothing.
    await server.services.identities.revoke("alice", family_id)
    server.services.tokens.revoked_families = frozenset([family_id])
    ack = await client.call("renew_token", {"token": server.token("alice", fam=family_id)})
    assert ack["error"] == "unauthorized" and "signed out" in ack["message"], ack


async def test_a_connection_not_expired_renews_to_a_later_token(server: ServerUnderTest, clients: list[Client]) -> None:
    """A page may renew before the token runs out: its events never pay the refusal."""
    client = await connected(server, clients, server.token("alice", ttl_s=60))
    assert (await client.call("renew_token", {"token": server.token("alice", ttl_s=7200)}))["ok"]
    server.services.clock.shift_ms += HOUR_MS  # past the first token, within the second
    assert (await client.call("follow_user", {}))["ok"]
