"""An identity whose only things were clips in streams since deleted owns nothing.

The index of the streams a viewer clipped in (``Keys.user_clipped``) was written at their first
clip and never pruned: a stream deleted by its streamer, an operator or the guest sweep left the
viewer "owning" for good, and an account that owned nothing else kept its devices for the refresh
lifetime (months) instead of the idle time (audit "retention").
"""

from __future__ import annotations

import aiohttp

from auth.claims import Permission
from storage.streams.repository import StreamSessions
from tests.helpers import ServerUnderTest
from tests.streams.helpers import submitter


async def test_a_viewer_whose_clipped_streams_are_gone_is_kept_as_owning_nothing(server: ServerUnderTest) -> None:
    identities, keys, redis = server.services.identities, server.services.keys, server.services.redis
    await identities.create_user("dave", name="Dave", guest=False)
    streams = StreamSessions(server.services.store)
    kept = await streams.create(owner_id="erin", title="kept", game="", viewer_delay_s=0)
    gone = await streams.create(owner_id="erin", title="gone", game="", viewer_delay_s=0)
    for stream in (kept, gone):
        await streams.transition(stream.id, "start", "erin")
        await submitter(streams, stream.id)("dave")
    assert await redis.zcard(keys.user_clipped("dave")) == 2
    refresh_ttl_s, idle_s = identities.config.refresh_ttl_s, identities.config.guest_idle_s
    assert await identities.keep("dave") == refresh_ttl_s  # owns clips in live streams

    operator = {"Authorization": f"Bearer {server.token('root', perms=(Permission.ADMIN,))}"}
    async with aiohttp.ClientSession() as http:
        async with http.delete(
            f"{server.url}/admin/sessions/{gone.id}", headers=operator, json={"confirm": gone.id}
        ) as answer:
            assert answer.status == 200, await answer.text()
        assert await identities.keep("dave") == refresh_ttl_s  # one stream left
        assert await redis.zrange(keys.user_clipped("dave"), 0, -1) == [kept.id]
        async with http.delete(
            f"{server.url}/admin/sessions/{kept.id}", headers=operator, json={"confirm": kept.id}
        ) as answer:
            assert answer.status == 200, await answer.text()
    assert await identities.keep("dave") == idle_s
    assert not await redis.exists(keys.user_clipped("dave"))
