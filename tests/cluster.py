"""A real Redis Cluster on loopback for the tests: masters, optional replicas, and the moves a
real cluster makes (a slot migrated to another master, a master killed and its replica promoted).

Every wait is bounded and polls a condition; nothing sleeps a fixed time.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis

from tests.helpers import redis_binary

# Short enough that a killed master's replica takes over within a few seconds (Redis marks a
# node failing after this long without an answer, then the replica waits ~0.5-1 s more).
NODE_TIMEOUT_MS = 1000
# What a test that only moves slots sets instead (RedisCluster.unhurried): on a loaded machine a
# node starved of CPU for a second was marked failing, and the cluster refused every key command
# (CLUSTERDOWN) in the middle of the test's own MIGRATE (a fresh-clone CI run).
UNHURRIED_NODE_TIMEOUT_MS = 15000


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Node ports, and their cluster-bus companions (port + 10000), below the kernel's ephemeral range
# (32768 and up): a bus port in that range could be taken by any outgoing connection between
# the check and the node's bind (it was, with two suites side by side: the node exited and the
# cluster "did not settle"). Above Redis's default port and its bus port.
PORT_RANGE = (17000, 22000)


def cluster_ports(count: int) -> list[int]:
    """Ports whose cluster-bus companions (port + 10000) are free too."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(*PORT_RANGE)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


class NodeExited(RuntimeError):
    """A node exited while starting (its port or bus port was taken meanwhile)."""


def wait_until(probe: Callable[[], Any], timeout_s: float = 20, what: str = "the cluster") -> Any:
    """Poll ``probe`` until it returns something true (errors count as not yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = probe()
            if result:
                return result
        except NodeExited:
            raise
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not settle within {timeout_s} s")
        time.sleep(0.05)


def need_redis_cli() -> None:
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli is needed to form the cluster (Debian package redis-tools)")


class RedisCluster:
    """``masters`` redis-server masters joined by ``redis-cli --cluster create``, then ``replicas``
    replicas attached to the first masters (one each), all with a short node timeout.

    ``persistent`` nodes keep their data over a kill and restart (an append-only file synced on
    every write, as an operator's cluster restarted for maintenance); by default a restarted
    node comes back empty."""

    def __init__(self, root: Path, *, masters: int = 3, replicas: int = 0, persistent: bool = False) -> None:
        self.root = root
        self.persistent = persistent
        self.ports = cluster_ports(masters + replicas)
        self.master_ports = self.ports[:masters]
        self.replica_ports = self.ports[masters:]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def client(self, port: int) -> SyncRedis:
        return SyncRedis(port=port, decode_responses=True, socket_timeout=5)

    def _spawn(self, port: int) -> None:
        folder = self.root / str(port)
        folder.mkdir(parents=True, exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                redis_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(folder),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--save",
                "",
                *(["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]),
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--cluster-replica-validity-factor",
                "0",
                # A replica's full sync starts at once: Redis 7 waits 5 s by default for more
                # replicas to share a diskless transfer, 5 s of every cluster with a replica.
                "--repl-diskless-sync-delay",
                "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _answers(self, port: int) -> bool:
        if self.processes[port].poll() is not None:
            raise NodeExited(f"the node on port {port} exited while starting")
        return bool(self.client(port).ping())

    def start(self) -> None:
        """Start and join the nodes; on any failure stop every node started (none outlives the
        test as a process still running, which failed a later test with a ResourceWarning)."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for attempt in range(3):
            for port in self.ports:
                self._spawn(port)
            try:
                for port in self.ports:
                    wait_until(lambda port=port: self._answers(port))
                break
            except NodeExited:
                if attempt == 2:
                    raise
                self.stop()  # other ports, all of them: the set is chosen together
                self.processes.clear()
                self.ports = cluster_ports(len(self.ports))
                self.master_ports = self.ports[: len(self.master_ports)]
                self.replica_ports = self.ports[len(self.master_ports) :]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.master_ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        for port in self.master_ports:
            wait_until(lambda port=port: self.client(port).cluster("info")["cluster_state"] == "ok")
        for index, port in enumerate(self.replica_ports):
            master_id = self.node_id(self.master_ports[index])
            replica = self.client(port)
            replica.execute_command("CLUSTER", "MEET", "127.0.0.1", str(self.master_ports[0]))
            wait_until(lambda r=replica, m=master_id: m in r.execute_command("CLUSTER", "NODES"), what="the meet")
            replica.execute_command("CLUSTER", "REPLICATE", master_id)
            wait_until(lambda r=replica: r.info("replication").get("master_link_status") == "up", what="the replica")
            # Every master must know it as its master's replica before a test kills that master:
            # their votes elect it. With the sync at once (no 5 s delay) a test could stop the
            # replica and kill its master before the gossip had told them, and the failover then
            # never came within the test's 60 s (test_serve_started_while_the_shard_of_slot_0_...).
            replica_id = self.node_id(port)
            for other in self.master_ports:
                wait_until(
                    lambda o=other, r=replica_id, m=master_id: _lists_replica(self.client(o), r, m),
                    what="the replica known to every master",
                )
        for port in self.ports:
            wait_until(lambda port=port: self.client(port).cluster("info")["cluster_state"] == "ok")

    def node_id(self, port: int) -> str:
        return str(self.client(port).execute_command("CLUSTER", "MYID"))

    def live_ports(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def slot_of(self, key: str) -> int:
        return int(self.client(self.live_ports()[0]).execute_command("CLUSTER", "KEYSLOT", key))

    def owner(self, slot: int) -> int:
        """Port of the master that serves ``slot``, as a live node sees it."""
        for start, end, master, *_ in self.client(self.live_ports()[0]).execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return int(master[1])
        raise LookupError(f"slot {slot} is not served")

    def masters(self) -> list[int]:
        return [port for port in self.live_ports() if self.client(port).info("replication")["role"] == "master"]

    def unhurried(self) -> None:
        """Give every live node a long node timeout: for a test that moves slots and kills no
        node, so a node slow to answer on a busy machine is not marked failing mid-test."""
        for port in self.live_ports():
            self.client(port).config_set("cluster-node-timeout", UNHURRIED_NODE_TIMEOUT_MS)

    def move_slot(self, slot: int, to_port: int, batch: int = 10) -> None:
        """Migrate ``slot`` to the master on ``to_port`` the way ``redis-cli --cluster reshard``
        does (IMPORTING/MIGRATING, MIGRATE in batches, then SETSLOT NODE on every master), while
        clients keep writing to it."""
        from_port = self.owner(slot)
        if from_port == to_port:
            return
        source, target = self.client(from_port), self.client(to_port)
        source_id, target_id = self.node_id(from_port), self.node_id(to_port)
        target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
            source.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "REPLACE", "KEYS", *keys)
        for port in [to_port, from_port, *[p for p in self.masters() if p not in (to_port, from_port)]]:
            self.client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for port in self.live_ports():
            wait_until(lambda port=port: self.owner_seen_by(port, slot) == to_port, what="the slot's new owner")

    def add_master(self) -> int:
        """Start one more node and join it as a master of no slots (``redis-cli --cluster
        add-node``); its port. No replica: a test gives it slots with :meth:`move_slot`."""
        port = self.ports[0]
        while port in self.ports:
            [port] = cluster_ports(1)
        self.ports.append(port)
        self.master_ports.append(port)
        self._spawn(port)
        wait_until(lambda: self._answers(port), what="the new node")
        # A master whose last slot moves away stays one (else it turns into the new owner's
        # replica, as Redis 7 does by default): an operator's node, drained to be removed.
        self.client(port).config_set("cluster-allow-replica-migration", "no")
        self.client(port).execute_command("CLUSTER", "MEET", "127.0.0.1", str(self.master_ports[0]))
        node_id = self.node_id(port)
        for other in self.live_ports():
            wait_until(
                lambda o=other: node_id in str(self.client(o).execute_command("CLUSTER", "NODES")), what="the meet"
            )
        wait_until(lambda: self.client(port).cluster("info")["cluster_state"] == "ok", what="the new node's map")
        return port

    def remove_node(self, port: int) -> None:
        """``redis-cli --cluster del-node`` of a node that serves no slot: every other node forgets
        it and it is reset, still running (as del-node leaves it)."""
        node_id = self.node_id(port)
        for other in self.live_ports():
            if other != port:
                self.client(other).execute_command("CLUSTER", "FORGET", node_id)
        self.client(port).execute_command("CLUSTER", "RESET", "SOFT")

    def owner_seen_by(self, port: int, slot: int) -> int | None:
        for start, end, master, *_ in self.client(port).execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return int(master[1])
        return None

    def kill(self, port: int) -> None:
        """kill -9 one node (no goodbye: the cluster notices by its node timeout)."""
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def freeze(self, port: int) -> None:
        """SIGSTOP one node: it answers nothing and closes nothing, as a master cut off by the
        network (the cluster fails it over by its node timeout). :meth:`thaw` before stopping."""
        self.processes[port].send_signal(signal.SIGSTOP)

    def thaw(self, port: int) -> None:
        self.processes[port].send_signal(signal.SIGCONT)

    def restart(self, port: int) -> None:
        """Start a killed node again with its nodes.conf: it rejoins (a replaced master as a replica)."""
        self._spawn(port)
        wait_until(lambda: self.client(port).ping(), what="the restarted node")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            process.wait(10)


def _lists_replica(client: SyncRedis, replica_id: str, master_id: str) -> bool:
    """Whether ``client``'s node lists ``replica_id`` as a replica of ``master_id``."""
    nodes = client.execute_command("CLUSTER", "NODES")
    for line in str(nodes).splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[0] == replica_id:
            return "slave" in fields[2].split(",") and fields[3] == master_id
    return False


@contextmanager
def running_cluster(
    root: Path, *, masters: int = 3, replicas: int = 0, persistent: bool = False
) -> Iterator[RedisCluster]:
    """A started :class:`RedisCluster` for a fixture to yield, stopped when it is done with."""
    need_redis_cli()
    made = RedisCluster(root, masters=masters, replicas=replicas, persistent=persistent)
    made.start()
    try:
        yield made
    finally:
        made.stop()
