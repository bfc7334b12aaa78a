"""storage.lean_redis: the hot path's reads and scripts over one pipelined connection.

Each test compares with what plain redis-py answers, against a real redis-server; the fault
tests drop the connection (from this side, and with CLIENT KILL) and stop the server.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import hiredis
import pytest
import pytest_asyncio
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import UnixDomainSocketConnection
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError

from protocol import read_end
from server.services import connect_redis
from storage import lean_redis
from storage.lean_redis import (
    CLIENT_NAME,
    KEEPALIVE_IDLE_S,
    SUBSCRIBER_NAME,
    LeanLink,
    LeanRedis,
    LeanSubscriber,
    Reply,
    lean_link_for,
    lean_subscriber_for,
    read_together,
)
from storage.scripts import Arity, Script, ScriptCallError
from tests.helpers import Client, RedisProcess, ServerUnderTest

pytestmark = pytest.mark.timeout(30)


@pytest_asyncio.fixture
async def plain(redis: Redis, redis_process: RedisProcess) -> AsyncIterator[Redis]:
    """Plain redis-py on the same server, for the expected answers."""
    client = Redis.from_url(redis_process.url, decode_responses=True)
    yield client
    await client.aclose()


def link_of(client: Redis) -> LeanLink:
    assert isinstance(client, LeanRedis) and client.lean is not None
    return client.lean


async def lean_clients(admin: Redis) -> list[dict[str, str]]:
    return [c for c in await admin.client_list() if c.get("name") == CLIENT_NAME]


async def test_reads_go_over_the_link_and_answer_as_redis_py_does(redis: Redis, plain: Redis) -> None:
    await plain.hset("h", mapping={"a": "1", "b": "é"})
    await plain.set("s", "v")
    await plain.rpush("l", "x", "y")
    await plain.xadd("x", {"e": "1"}, id="1-0")
    link = link_of(redis)
    before = link.requests
    calls = [
        ("hgetall", ("h",)), ("hgetall", ("missing",)), ("hmget", ("h", "a", "zz")), ("hget", ("h", "b")),
        ("hvals", ("h",)), ("get", ("s",)), ("get", ("missing",)), ("exists", ("h", "s", "missing")),
        ("lrange", ("l", 0, -1)), ("xrange", ("x",)), ("xrevrange", ("x",)),
    ]  # fmt: skip
    for name, args in calls:
        assert await getattr(redis, name)(*args) == await getattr(plain, name)(*args), name
    assert link.requests - before == len(calls)


async def test_a_zadd_goes_over_the_link_and_is_not_repeated(redis: Redis, plain: Redis) -> None:
    link = link_of(redis)
    before = link.requests
    assert await redis.zadd("due", {"s": 5}) == 1
    assert await redis.zadd("due", {"s": 7}) == 0  # an overwrite, as redis-py answers it
    assert await plain.zscore("due", "s") == 7
    assert link.requests - before == 2
    assert "ZADD" not in lean_redis.READS  # a write: never sent twice after a drop


async def test_arguments_it_does_not_pack_leave_the_command_to_redis_py(redis: Redis, plain: Redis) -> None:
    await plain.hset("h", "1.5", "x")
    link = link_of(redis)
    before = link.requests
    assert await redis.execute_command("HGET", "h", 1.5) == "x"  # a float: redis-py writes it
    assert await redis.execute_command("HGET", "h", b"1.5") == "x"  # bytes: packed here
    assert link.requests - before == 1
    assert not redis.keeps_order("HGET", "h", 1.5)
    assert not redis.keeps_order("HGET", "h", True)  # a bool is not an int here
    assert redis.keeps_order("HGET", b"h", "1.5")


async def test_a_script_keeps_order_only_once_known_loaded(redis: Redis, plain: Redis) -> None:
    """After a NOSCRIPT the call's EVAL runs behind what was written since, and a later call may
    have found the script loaded meanwhile: pipelined commits keep order only with scripts the
    link's connection has seen run (protocol.order)."""
    script = redis.register_script("return 1")
    assert isinstance(redis, LeanRedis)
    redis.remember(script)
    await plain.script_flush()
    assert not redis.keeps_order("EVALSHA", script.sha, 0)  # never seen
    assert await script() == 1  # NOSCRIPT, then its EVAL: loaded now
    assert redis.keeps_order("EVALSHA", script.sha, 0)
    assert not redis.keeps_order("EVALSHA", script.sha, 0, 1.5)  # not packed here
    link_of(redis).close()  # a new connection (a Redis restarted, failed over) knows none
    assert not redis.keeps_order("EVALSHA", script.sha, 0)
    assert await script() == 1
    assert redis.keeps_order("EVALSHA", script.sha, 0)


async def test_a_read_only_transaction_goes_over_the_link_and_a_write_does_not(redis: Redis, plain: Redis) -> None:
    await plain.hset("h", mapping={"kind": "voice"})
    link = link_of(redis)
    before = link.requests
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hgetall("h")
        pipe.hmget("meta", "epoch", "offset")
        record, meta = await pipe.execute()
    assert (record, meta) == ({"kind": "voice"}, [None, None])
    assert link.requests - before == 1
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset("h", "name", "n")
        pipe.hgetall("h")
        _, record = await pipe.execute()
    assert record == {"kind": "voice", "name": "n"}
    assert link.requests - before == 1  # the write went through redis-py's pool


async def test_read_together_answers_as_a_redis_py_transaction_on_any_client(redis: Redis, plain: Redis) -> None:
    await plain.hset("h", mapping={"kind": "voice", "name": "é"})
    await plain.rpush("l", "a", "b")
    await plain.xadd("x", {"e": "1"}, id="3-0")
    await plain.set("s", "v")
    commands = [("HGETALL", "h"), ("HMGET", "meta", "epoch", "offset"), ("LRANGE", "l", 0, -1), ("HVALS", "h"),
                ("XRANGE", "x", "2-0", "+", "COUNT", 5), ("HGETALL", "missing")]  # fmt: skip
    async with plain.pipeline(transaction=True) as pipe:
        for args in commands:
            pipe.execute_command(*args)
        expected = await pipe.execute()
    link = link_of(redis)
    before = link.requests
    assert await read_together(redis, *commands) == expected
    assert link.requests - before == 1
    assert await read_together(plain, *commands) == expected  # redis-py's own pipeline
    for client in (redis, plain):
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await read_together(client, ("GET", "s"), ("HGETALL", "s"))
    assert await redis.get("s") == "v"  # the link is still in step


async def test_requests_of_one_loop_iteration_leave_in_one_write(redis: Redis, plain: Redis) -> None:
    """Redis counts the reads it does per connection: fifty gathered requests arrive in one."""
    await plain.set("s", "v")
    assert await redis.get("s") == "v"  # the link is open

    async def reads_processed() -> int:
        return int((await plain.info("stats"))["total_reads_processed"])

    before = await reads_processed()
    answers = await asyncio.gather(*(redis.get("s") for _ in range(50)))
    after = await reads_processed()
    assert answers == ["v"] * 50
    assert after - before <= 2  # the fifty on the link, and the second INFO itself


async def test_a_registered_script_answers_over_the_link_as_through_redis_py(redis: Redis, plain: Redis) -> None:
    """storage.scripts.Script calls EVALSHA over the link without redis-py's command layers
    (LeanRedis.run_script): the same answers, refusals and errors as plain redis-py, a NOSCRIPT
    answered by its EVAL, and arguments the link does not pack still given to redis-py."""
    text = (
        "if ARGV[1] == 'refuse' then return {false, 'invalid_state'} end\n"
        "if ARGV[1] == 'fail' then return redis.error_reply('ERR nope') end\n"
        "return {redis.call('INCR', KEYS[1]), ARGV[1]}"
    )
    lean_script = Script(redis, text, name="t.lua", keys=Arity(1), args=Arity(1))
    plain_script = Script(plain, text, name="t.lua", keys=Arity(1), args=Arity(1))
    assert isinstance(redis, LeanRedis)
    redis.remember(lean_script)
    await plain.script_flush()
    link = link_of(redis)
    before = link.requests
    assert await lean_script(keys=["a"], args=["x"]) == [1, "x"]  # NOSCRIPT, then its EVAL
    assert link.requests - before == 1, "the call went over the link (its EVAL follows it there)"
    assert await plain_script(keys=["b"], args=["x"]) == [1, "x"]
    for arg in ("y", 7, b"z"):
        assert await lean_script(keys=["a"], args=[arg]) == await plain_script(keys=["b"], args=[arg])
    assert await lean_script(keys=["a"], args=["refuse"]) == await plain_script(keys=["b"], args=["refuse"])
    with pytest.raises(ResponseError) as lean_error:
        await lean_script(keys=["a"], args=["fail"])
    with pytest.raises(ResponseError) as plain_error:
        await plain_script(keys=["b"], args=["fail"])
    assert str(lean_error.value) == str(plain_error.value)
    before = link.requests
    assert await lean_script(keys=["a"], args=[1.5]) == await plain_script(keys=["b"], args=[1.5])
    assert link.requests == before, "a float is left to redis-py"
    assert await plain.get("a") == await plain.get("b") == "5"
    with pytest.raises(ScriptCallError):
        await lean_script(keys=["a"], args=[])


async def test_scripts_load_on_first_use_and_run_once(redis: Redis, plain: Redis) -> None:
    await plain.script_flush()
    script = redis.register_script("return redis.call('INCR', KEYS[1])")
    link = link_of(redis)
    before = link.requests
    assert [await script(keys=["n"]) for _ in range(3)] == [1, 2, 3]
    assert await plain.get("n") == "3"
    assert link.requests - before >= 3  # NOSCRIPT, then the loaded script, over the link


async def test_a_script_that_finds_none_is_sent_again_as_eval_unless_its_caller_is_gone(
    redis: Redis, plain: Redis
) -> None:
    assert isinstance(redis, LeanRedis)
    script = redis.register_script("return redis.call('INCR', KEYS[1])")
    redis.remember(script)  # what storage/scripts.py does for every script it registers
    await plain.script_flush()
    assert await redis.get("k") is None  # the link is open: the calls below are written at once
    loads = (await plain.info("commandstats")).get("cmdstat_script|load", {}).get("calls", 0)
    pending = asyncio.ensure_future(script(keys=["gone"]))
    await asyncio.sleep(0)  # written (with the call below), not answered
    pending.cancel()
    assert await script(keys=["n"]) == 1  # NOSCRIPT, then its EVAL, on the link
    assert await plain.get("gone") is None  # the cancelled call's NOSCRIPT was not sent again
    assert (await plain.info("commandstats")).get("cmdstat_script|load", {}).get("calls", 0) == loads


async def test_error_replies_raise_what_redis_py_raises(redis: Redis, plain: Redis) -> None:
    await plain.set("s", "v")
    with pytest.raises(ResponseError) as lean_error:
        await redis.hgetall("s")
    with pytest.raises(ResponseError) as plain_error:
        await plain.hgetall("s")
    assert str(lean_error.value) == str(plain_error.value)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get("s")
        pipe.hgetall("s")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await pipe.execute()
    assert await redis.get("s") == "v"  # the connection is still in step


async def test_concurrent_requests_get_their_own_replies(redis: Redis, plain: Redis) -> None:
    await plain.mset({f"k{i}": str(i) for i in range(500)})
    link = link_of(redis)
    assert await redis.get("k0") == "0"  # the link is connected
    # Another test's link may still be closing on the server: only a new connection would be ours.
    connected = {c["id"] for c in await lean_clients(plain)}
    before = link.requests
    answers = await asyncio.gather(*(redis.get(f"k{i}") for i in range(500)))
    assert answers == [str(i) for i in range(500)]
    assert link.requests - before == 500
    assert {c["id"] for c in await lean_clients(plain)} <= connected  # the one connection carried them all


async def test_the_link_keeps_its_connection_alive(redis: Redis) -> None:
    await redis.get("k")
    replies = link_of(redis)._replies
    assert replies is not None and replies._transport is not None
    sock = replies._transport.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE_S


async def test_a_cancelled_request_leaves_the_next_ones_in_step(redis: Redis, plain: Redis) -> None:
    await plain.set("a", "1")
    await plain.set("b", "2")
    first = asyncio.ensure_future(redis.get("a"))
    await asyncio.sleep(0)  # written, not answered
    first.cancel()
    assert await redis.get("b") == "2"


async def test_a_read_in_flight_when_the_connection_drops_is_asked_again(redis: Redis, plain: Redis) -> None:
    await plain.set("k", "v")
    assert await redis.get("k") == "v"  # connected
    pending = asyncio.ensure_future(redis.get("k"))
    await asyncio.sleep(0)  # the request is written
    link_of(redis).close()
    assert await pending == "v"


async def test_a_script_in_flight_when_the_connection_drops_is_not_run_twice(redis: Redis, plain: Redis) -> None:
    script = redis.register_script("return redis.call('INCR', KEYS[1])")
    assert await script(keys=["n"]) == 1
    pending = asyncio.ensure_future(script(keys=["n"]))
    await asyncio.sleep(0)
    link_of(redis).close()
    with pytest.raises(ConnectionError):
        await pending
    assert await plain.get("n") in ("1", "2")  # ran once or not at all, never twice
    assert await script(keys=["m"]) == 1  # and the next call reconnects


async def test_a_killed_connection_is_replaced_on_the_next_request(redis: Redis, plain: Redis) -> None:
    await plain.set("k", "v")
    assert await redis.get("k") == "v"
    killed = await plain.execute_command("CLIENT", "KILL", "ID", (await lean_clients(plain))[0]["id"])
    assert killed in (1, True)
    await asyncio.sleep(0.05)
    assert await redis.get("k") == "v"
    assert len(await lean_clients(plain)) == 1


async def test_a_stopped_redis_fails_fast_and_a_restarted_one_is_used_again(tmp_path: Path) -> None:
    process = RedisProcess(tmp_path / "r")
    process.start()
    client = connect_redis(process.url)
    try:
        await client.set("k", "v")
        assert await client.get("k") == "v"
        process.stop()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(client.get("k"), 5)
        process.start()  # empty: it saves nothing
        assert await client.hgetall("h") == {}
    finally:
        await client.aclose()
        process.stop()


async def test_a_password_is_sent_and_a_wrong_one_refused(tmp_path: Path) -> None:
    process = RedisProcess(tmp_path / "r")
    process.start()
    admin = Redis(port=process.port)
    try:
        await admin.config_set("requirepass", "s3cret")
        good = connect_redis(f"redis://:s3cret@127.0.0.1:{process.port}/2")
        bad = connect_redis(f"redis://:wrong@127.0.0.1:{process.port}/0")
        try:
            await good.set("k", "v")
            assert await good.get("k") == "v"  # and on database 2, where the SET went
            assert link_of(good).requests == 1
            with pytest.raises(AuthenticationError):
                await link_of(bad).request(b"*1\r\n$4\r\nPING\r\n", 1, repeatable=False)
        finally:
            await good.aclose()
            await bad.aclose()
    finally:
        await admin.aclose()
        process.stop()


def test_pools_the_link_cannot_serve_keep_plain_redis_py(tmp_path: Path) -> None:
    unix = ConnectionPool(connection_class=UnixDomainSocketConnection, path=str(tmp_path / "redis.sock"))
    assert lean_link_for(unix) is None
    assert lean_link_for(ConnectionPool.from_url("redis://127.0.0.1:1/0", protocol=2)) is not None
    assert lean_link_for(BlockingConnectionPool.from_url("redis://127.0.0.1:1/0")) is not None


async def test_the_server_uses_the_link(server: ServerUnderTest, clients: list[Client]) -> None:
    link = link_of(server.services.redis)
    session_id = await server.create_session("alice")
    before = link.requests
    owner = await server.subscriber(clients, session_id)
    ack = await owner.call("set_session_status", {"session_id": session_id, "status": "recording"})
    assert ack["ok"] is True
    assert link.requests - before >= 3  # meta, snapshot, status script


async def test_a_committed_event_awaits_its_reply_without_the_links_coroutines(
    server: ServerUnderTest, clients: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an open connection a script's call is written at once and its reply's future awaited
    by the client: no coroutine of the link's (``request``, ``_request_once``), which every
    committed event crossed on its way out and back (issue 26). A Redis that lost its scripts
    still answers."""
    session_id = await server.create_session("alice")
    owner = await server.subscriber(clients, session_id)
    link = link_of(server.services.redis)
    real_request = LeanLink.request
    requests = 0

    async def counting(self: LeanLink, packed: bytes, *args: Any, **kwargs: Any) -> Any:
        nonlocal requests
        requests += self is link and b"EVALSHA" in packed[:32]  # a script's call (reads go this way)
        return await real_request(self, packed, *args, **kwargs)

    monkeypatch.setattr(LeanLink, "request", counting)
    before = link.requests
    offsets = []
    for status in ("recording", "paused", "recording"):
        ack = await owner.call("set_session_status", {"session_id": session_id, "status": status})
        assert ack["ok"] is True and ack["changed"] is True, ack
        offsets.append(ack["offset"])
    assert link.requests - before >= 3  # the three commits went over the link
    assert requests == 0
    assert offsets == sorted(offsets) and len(set(offsets)) == 3
    await server.services.redis.execute_command("SCRIPT", "FLUSH")
    ack = await owner.call("set_session_status", {"session_id": session_id, "status": "paused"})
    assert ack["ok"] is True and ack["offset"] == offsets[-1] + 1, ack
    await owner.wait_for(lambda: owner.offsets(session_id)[-1:] == [ack["offset"]])


@pytest.mark.parametrize(
    "reply",
    [
        "NOSCRIPT No matching script. Please use EVAL.",
        "ERR wrong number of arguments for 'get' command",
        "ERR invalid password",
        "ERR max number of clients reached",
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "READONLY You can't write against a read only replica.",
        "LOADING Redis is loading the dataset in memory",
        "OOM command not allowed when used memory > 'maxmemory'.",
        "NOPERM this user has no permissions to run the 'get' command",
        "WRONGPASS invalid username-password pair or user is disabled.",
        "MOVED 3999 127.0.0.1:6381",
        "BUSY Redis is busy running a script.",
        "user_script:1: Script attempted to access nonexistent global variable",
    ],
)
def test_error_replies_parse_as_redis_pys_own_parser_does(reply: str) -> None:
    # redis-py's table is private (this test is the one place that reads it): ours must not drift.
    from redis._parsers.base import BaseParser

    ours, theirs = lean_redis.parse_error(reply), BaseParser.parse_error(reply)
    assert type(ours) is type(theirs) and str(ours) == str(theirs)


# --- the bus's pub/sub reader (LeanSubscriber) -------------------------------------------------


async def _messages(subscriber: LeanSubscriber, count: int, *, within_s: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` messages and confirmations (bounded wait)."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(within_s):
        while len(got) < count:
            message = await subscriber.get_message(timeout=0.1)
            if message is not None:
                got.append(message)
    return got


def _address_of(subscriber: LeanSubscriber) -> str:
    """The subscriber's end of its connection, as CLIENT LIST names it."""
    link = subscriber._link
    assert link is not None and link.transport is not None
    host, port = link.transport.get_extra_info("sockname")[:2]
    return f"{host}:{port}"


def subscriber_of(process: RedisProcess) -> LeanSubscriber:
    subscriber = lean_subscriber_for(ConnectionPool.from_url(process.url, decode_responses=True))
    assert subscriber is not None
    return subscriber


async def test_the_subscriber_hands_out_every_message_of_a_burst_in_order(
    redis: Redis, plain: Redis, redis_process: RedisProcess
) -> None:
    subscriber = subscriber_of(redis_process)
    try:
        await subscriber.subscribe("c1", "c2")
        confirmations = await _messages(subscriber, 2)
        assert [(m["type"], m["channel"]) for m in confirmations] == [("subscribe", "c1"), ("subscribe", "c2")]
        async with plain.pipeline(transaction=False) as pipe:  # one burst: many messages per read
            for i in range(300):
                pipe.publish(f"c{1 + i % 2}", f"m{i}")
            await pipe.execute()
        burst = await _messages(subscriber, 300)
        assert [(m["type"], m["channel"], m["data"]) for m in burst] == [
            ("message", f"c{1 + i % 2}", f"m{i}") for i in range(300)
        ]
        await subscriber.unsubscribe("c2")
        assert [(m["type"], m["channel"]) for m in await _messages(subscriber, 1)] == [("unsubscribe", "c2")]
        await plain.publish("c2", "gone")
        await plain.publish("c1", "kept")
        assert [m["data"] for m in await _messages(subscriber, 1)] == ["kept"]
    finally:
        await subscriber.aclose()


async def test_the_subscriber_hands_out_a_reads_messages_in_one_call(
    redis: Redis, plain: Redis, redis_process: RedisProcess
) -> None:
    """``get_messages`` takes everything read so far at once (the bus's listener: one call per
    read, not one coroutine chain per event), in order, and waits only when nothing is read."""
    subscriber = subscriber_of(redis_process)
    try:
        await subscriber.subscribe("c1")
        assert [m["type"] for m in await _messages(subscriber, 1)] == ["subscribe"]
        assert await subscriber.get_messages(0.05) == []  # nothing came: waited, none
        async with plain.pipeline(transaction=False) as pipe:  # one burst: many messages per read
            for i in range(300):
                pipe.publish("c1", f"m{i}")
            await pipe.execute()
        calls, burst = 0, []
        async with asyncio.timeout(5):
            while len(burst) < 300:
                burst += await subscriber.get_messages(0.1)
                calls += 1
        assert [m["data"] for m in burst] == [f"m{i}" for i in range(300)]
        assert calls < 300 / 2, calls  # many messages per call
    finally:
        await subscriber.aclose()


async def test_a_killed_subscriber_fails_once_then_subscribes_everything_again(
    redis: Redis, plain: Redis, redis_process: RedisProcess
) -> None:
    subscriber = subscriber_of(redis_process)
    try:
        await subscriber.subscribe("a")
        await subscriber.subscribe("b")
        await _messages(subscriber, 2)
        killed = await plain.client_kill_filter(addr=_address_of(subscriber))  # another test's may linger
        assert killed == 1
        with pytest.raises(ConnectionError):
            await _messages(subscriber, 1)  # the drop is told once, as redis-py's PubSub tells it
        again = await _messages(subscriber, 2)  # the next read reconnects with both channels
        assert sorted((m["type"], m["channel"]) for m in again) == [("subscribe", "a"), ("subscribe", "b")]
        await plain.publish("b", "after")
        assert [m["data"] for m in await _messages(subscriber, 1)] == ["after"]
        (client,) = [c for c in await plain.client_list(_type="pubsub") if c["addr"] == _address_of(subscriber)]
        assert client["name"] == SUBSCRIBER_NAME
    finally:
        await subscriber.aclose()


async def test_the_subscriber_sends_the_password(tmp_path: Path) -> None:
    process = RedisProcess(tmp_path / "r")
    process.start()
    admin = Redis(port=process.port)
    try:
        await admin.config_set("requirepass", "s3cret")
        for password, works in (("s3cret", True), ("wrong", False)):
            pool = ConnectionPool.from_url(f"redis://:{password}@127.0.0.1:{process.port}/0")
            subscriber = lean_subscriber_for(pool)
            assert subscriber is not None
            try:
                await subscriber.subscribe("c")
                if works:
                    assert [m["type"] for m in await _messages(subscriber, 1)] == ["subscribe"]
                else:
                    with pytest.raises(AuthenticationError):
                        await _messages(subscriber, 1)
            finally:
                await subscriber.aclose()
    finally:
        await admin.aclose()
        process.stop()


async def test_the_server_bus_reads_through_the_lean_subscriber(
    server: ServerUnderTest, clients: list[Client], plain: Redis
) -> None:
    session_id = await server.create_session("alice")
    owner = await server.subscriber(clients, session_id)
    watcher = await server.subscriber(clients, session_id)
    ack = await owner.call("set_session_status", {"session_id": session_id, "status": "recording"})
    assert ack["ok"] is True
    await watcher.wait_for(lambda: ack["offset"] in watcher.offsets(session_id))
    names = [c.get("name") for c in await plain.client_list(_type="pubsub")]
    assert SUBSCRIBER_NAME in names


async def test_inline_replies_reach_their_callbacks_in_the_read_that_brings_them(
    redis: Redis, plain: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A request sent with ``inline=True`` is answered by calling its :class:`Reply`'s callback
    from the read that brings its replies, with no loop step between; a callback that raises
    is logged, and the replies behind it in that read still reach theirs."""
    assert isinstance(redis, LeanRedis)
    assert await redis.get("warm") is None  # the link's connection is open
    handed: list[tuple[str, Any]] = []
    link = link_of(redis)
    failed = link.submit(hiredis.pack_command(("ZADD", "inline", 1, "a")), 1, inline=True)
    answered = link.submit(hiredis.pack_command(("ZADD", "inline", 2, "b")), 1, inline=True)
    wrong = link.submit(hiredis.pack_command(("ZADD", "inline", "not-a-score", "c")), 1, inline=True)
    assert isinstance(failed, Reply) and isinstance(answered, Reply) and isinstance(wrong, Reply)

    def boom(reply: Reply) -> None:
        raise RuntimeError("a bug in a callback")

    failed.add_done_callback(boom)
    answered.add_done_callback(lambda reply: handed.append(("answered", reply.result())))
    wrong.add_done_callback(lambda reply: handed.append(("wrong", reply.result())))
    assert not answered.done()  # nothing is read before the loop runs
    deadline = asyncio.get_running_loop().time() + 5
    while len(handed) < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)  # polling for the callbacks, bounded by the deadline
    assert [name for name, _ in handed] == ["answered", "wrong"]
    assert handed[0][1] == [1]
    assert isinstance(handed[1][1][0], ResponseError)  # an error reply is a value, not raised
    assert "a reply's callback failed" in caplog.text
    assert await plain.zrange("inline", 0, -1) == ["a", "b"]
    late: list[list[Any]] = []
    answered.add_done_callback(lambda reply: late.append(reply.result()))
    assert late == [[1]]  # a callback added once it is done is called at once


async def test_a_pushing_subscriber_hands_each_read_to_its_taker_in_the_read(
    redis: Redis, plain: Redis, redis_process: RedisProcess
) -> None:
    """``push``: every read's messages go to the taker from the read itself, in order (a burst
    in few calls), with what the taker puts off (``protocol.read_end``) run before the loop's
    next turn; ``get_messages`` hands out nothing of them, still tells a drop, and a new
    connection pushes too."""
    subscriber = subscriber_of(redis_process)
    loop = asyncio.get_running_loop()
    taken: list[list[str]] = []
    order: list[str] = []

    def taker(messages: list[dict[str, Any]]) -> None:
        taken.append([m["data"] if m["type"] == "message" else m["type"] for m in messages])
        loop.call_soon(order.append, "next turn")
        read_end.soon(lambda: order.append("end of read"), loop)

    try:
        subscriber.push(taker)
        await subscriber.subscribe("c1")
        async with plain.pipeline(transaction=False) as pipe:  # one burst: many messages per read
            for i in range(300):
                pipe.publish("c1", f"m{i}")
            await pipe.execute()
        async with asyncio.timeout(5):
            while sum(len(t) for t in taken) < 301:
                assert await subscriber.get_messages(0.05) == []  # pushed, never queued
        assert [m for t in taken for m in t] == ["subscribe", *(f"m{i}" for i in range(300))]
        assert len(taken) < 300 / 2, len(taken)  # a read's messages in one call
        assert order[:2] == ["end of read", "next turn"]

        killed = await plain.client_kill_filter(addr=_address_of(subscriber))
        assert killed == 1
        with pytest.raises(ConnectionError):
            async with asyncio.timeout(5):
                while True:
                    await subscriber.get_messages(0.05)  # the drop is told
        taken.clear()
        async with asyncio.timeout(5):
            while not taken:  # the next call connects again and subscribes anew: pushed too
                assert await subscriber.get_messages(0.05) == []
        await plain.publish("c1", "after")
        async with asyncio.timeout(5):
            while [m for t in taken for m in t] != ["subscribe", "after"]:
                await subscriber.get_messages(0.05)
    finally:
        await subscriber.aclose()


async def test_what_inline_replies_put_off_runs_once_every_reply_of_the_read_is_in(redis: Redis) -> None:
    """A connection's acks are put off by its replies' callbacks (``protocol.read_end``): they
    run once the read has handed every reply over (the acks of one read leave together), and
    before the loop's next turn (not a turn behind everything else made ready)."""
    assert isinstance(redis, LeanRedis)
    assert await redis.get("warm") is None  # the link's connection is open
    loop = asyncio.get_running_loop()
    link = link_of(redis)
    ran: list[str] = []
    replies = [link.submit(hiredis.pack_command(("INCR", "ends")), 1, inline=True) for _ in range(3)]

    def replied(n: int, _: Reply) -> None:
        ran.append(f"reply {n}")
        loop.call_soon(ran.append, "next turn")
        read_end.soon(lambda: ran.append(f"put off by {n}"), loop)

    for n, reply in enumerate(replies):
        assert isinstance(reply, Reply)
        reply.add_done_callback(lambda r, n=n: replied(n, r))  # type: ignore[misc]
    async with asyncio.timeout(5):
        while "next turn" not in ran:
            await asyncio.sleep(0.01)
    assert ran[:7] == ["reply 0", "reply 1", "reply 2", "put off by 0", "put off by 1", "put off by 2", "next turn"]
