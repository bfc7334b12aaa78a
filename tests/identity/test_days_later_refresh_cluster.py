"""On a real Redis Cluster: a device's expiry on the server's clock (``expires_ms``) is written with
each extension (``identity/family_keep.lua``, ``identity/rotate.lua``: the family and its spent
list on one slot) and judged by the rotation, as on one Redis (``test_days_later_refresh``)."""

from __future__ import annotations

from tests.cluster import RedisCluster
from tests.helpers import ServerUnderTest
from tests.test_cluster import cluster, nodes  # noqa: F401 - the cluster fixtures

DAY_MS = 86_400_000


async def test_on_a_cluster_a_device_is_kept_by_its_visits_and_refused_past_its_time(
    nodes: list[ServerUnderTest],  # noqa: F811
    cluster: RedisCluster,  # noqa: F811
) -> None:
    node = nodes[0]
    identities, keys, clock = node.services.identities, node.services.keys, node.services.clock
    idle_ms = identities.config.guest_idle_s * 1000
    family_id, credential = await identities.open_family("bob", label="phone", grant={})
    assert cluster.slot_of(keys.family(family_id)) == cluster.slot_of(keys.family_spent(family_id))
    clock.shift_ms += idle_ms - DAY_MS  # a day before its time
    rotation = await identities.rotate(credential)
    assert rotation.outcome == "rotated" and rotation.credential, rotation
    clock.shift_ms += idle_ms - DAY_MS  # kept from that visit (the rotation and touch)
    await identities.owns_now("bob")  # and from now (family_keep on each device)
    clock.shift_ms += idle_ms - DAY_MS
    again = await identities.rotate(rotation.credential)
    assert again.outcome == "rotated" and again.credential, again
    clock.shift_ms += idle_ms + DAY_MS  # a day past it
    assert (await identities.rotate(again.credential)).outcome == "missing"
    assert not await node.services.redis.exists(keys.family(family_id))
