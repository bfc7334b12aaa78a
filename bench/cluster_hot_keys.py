"""How much more the shards holding the cross-session keys work, on a local Redis Cluster.

    .venv/bin/python bench/cluster_hot_keys.py [--sessions 300]

A 3-master cluster on loopback (redis-server + redis-cli, as the tests build it), one in-process
node; each session is created, subscribed by a client and changed 5 times. Prints, per master,
the commands processed and the CPU seconds used meanwhile, marking the masters that hold the
session index, the ``{admin}`` indexes or the job queue ("hot"). Bounded by ``--sessions``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster import RedisCluster
from tests.conftest import start_server
from tests.helpers import Client


def _stats(cluster: RedisCluster) -> dict[int, tuple[int, float]]:
    found = {}
    for port in cluster.master_ports:
        stats, cpu = cluster.client(port).info("stats"), cluster.client(port).info("cpu")
        found[port] = (int(stats["total_commands_processed"]), float(cpu["used_cpu_user"] + cpu["used_cpu_sys"]))
    return found


async def run(sessions: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="sessionhub-hotkeys-"))
    cluster = RedisCluster(root / "cluster", masters=3)
    cluster.start()
    try:
        node = await start_server(cluster.url, root / "node", redis_cluster=True)
        keys = node.services.keys
        hot = {cluster.owner(cluster.slot_of(k)) for k in (keys.all_sessions(), keys.admin_kind_of(), keys.jobs())}
        before = _stats(cluster)
        for i in range(sessions):
            user = f"user{i % 30}"
            session_id = await node.create_session(user)
            client = Client(node.url, node.token(user))
            await client.connect()
            await client.call("subscribe_on_session", {"session_id": session_id})
            for j in range(5):
                change = {"session_id": session_id, "status": ["recording", "paused"][j % 2]}
                await client.call("set_session_status", change)
            await client.close()
        after = _stats(cluster)
        await node.stop()
        for port in cluster.master_ports:
            commands = after[port][0] - before[port][0]
            cpu_s = after[port][1] - before[port][1]
            print(f"master {port} {'hot ' if port in hot else 'cold'}: {commands} commands, {cpu_s:.3f} s CPU")
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=300, help="sessions to create (default 300)")
    asyncio.run(run(min(max(parser.parse_args().sessions, 1), 10_000)))


if __name__ == "__main__":
    main()
