"""A device token whose admin permission was withdrawn is refused with ``reason: "withdrawn"``
on the admin routes, before and after the node's revocation poll has heard of it.

Before the poll the admin check answers ``403 forbidden`` with the reason; after it every route
refuses the token ``401 unauthorized`` first (auth.tokens), which said no reason: a pasted
token's open ``/admin`` then showed "Sign in", not "Admin permission withdrawn" (audit
"multinode", finding 3).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from auth.claims import Permission
from tests.admin.test_http import LONG_TTL_S
from tests.helpers import ServerUnderTest

WAIT_S = 15.0


async def metrics_answer(server: ServerUnderTest, token: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(base_url=server.url) as http,
        http.get("/admin/metrics", headers={"Authorization": f"Bearer {token}"}) as answer,
    ):
        return answer.status, await answer.json()


async def polled_withdrawal(server: ServerUnderTest, user: str) -> None:
    """Wait until this node's revocation poll has loaded ``user``'s withdrawal (bounded)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while user not in server.services.tokens.admin_withdrawn:
        assert asyncio.get_running_loop().time() < deadline, "the revocation poll never loaded the withdrawal"
        await asyncio.sleep(0.05)


async def test_a_withdrawn_admins_device_token_is_refused_with_the_reason_withdrawn(server: ServerUnderTest) -> None:
    user = "ops-ann"
    await server.services.identities.set_admin(user, True)
    token = server.token(user, perms=(Permission.ADMIN,), ttl_s=LONG_TTL_S, fam="d1ce")
    status, body = await metrics_answer(server, token)
    assert status == 200, body

    await server.services.identities.set_admin(user, False)  # `sessionhub admin revoke`
    await polled_withdrawal(server, user)
    status, body = await metrics_answer(server, token)
    assert (status, body["error"], body.get("reason")) == (401, "unauthorized", "withdrawn"), body
    assert body["message"] == "the admin permission was withdrawn; get a new token"

    # The operator's token (`sessionhub token`: no device, no grant behind it) stands.
    operator = server.token(user, perms=(Permission.ADMIN,), ttl_s=LONG_TTL_S)
    status, body = await metrics_answer(server, operator)
    assert status == 200, body


async def test_other_refusals_of_a_token_say_no_reason_withdrawn(server: ServerUnderTest) -> None:
    """An expired or forged token is refused as before: only the withdrawal says "withdrawn"."""
    expired = server.token("root", perms=(Permission.ADMIN,), ttl_s=-3600)
    for token in (expired, "not-a-token"):
        status, body = await metrics_answer(server, token)
        assert status == 401 and "reason" not in body, body
