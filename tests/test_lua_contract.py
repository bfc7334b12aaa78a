"""Every Lua script keeps the contract ``storage/scripts.py`` states (issue 19, item 4).

Its header names each KEYS[n] and ARGV[n] without a gap, its body reads no index its header
does not name, every call passes exactly the keys and args the header declares (checked on each
call, whichever way it reaches Redis), and a refusal has one shape: ``{false, code[, detail]}``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from protocol.errors import CodedError, ErrorCode
from server.services import connect_redis
from storage import scripts
from storage.clock import Clock
from storage.events import Durability, EventLog
from storage.keys import Keys
from storage.lean_redis import LeanRedis
from storage.scripts import Arity, Scripts, ScriptCallError, ScriptHeaderError
from tests.cluster import RedisCluster, need_redis_cli

ROOT = Path(__file__).resolve().parent.parent
LUA = sorted((ROOT / "storage").rglob("*.lua"))
# A script's name as the repositories register it: <capability or group>/<file>.lua.
NAMES = {path: f"{path.parent.parent.name}/{path.name}" for path in LUA}
USE = re.compile(r"\b(KEYS|ARGV)\[(\d+)\]")


def _code(text: str) -> str:
    """The script without its comments (a description may mention an index it does not read)."""
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def test_the_scripts_are_found() -> None:
    assert len(LUA) > 40 and all(name.count("/") == 1 for name in NAMES.values())


@pytest.mark.parametrize("path", LUA, ids=lambda p: NAMES[p])
def test_every_header_names_its_keys_and_args_without_a_gap(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    names = scripts.declared(NAMES[path], text)
    if path.name.startswith("_"):
        # A prologue: its names start where the share before it ends (checked on load too).
        for table, named, tail in (("KEYS", names.keys, names.keys_tail), ("ARGV", names.args, names.args_tail)):
            scripts._contiguous(NAMES[path], table, named, tail, start=min(named, default=1))
        return
    keys, args = scripts.signature(NAMES[path], text)
    assert keys.count + args.count > 0 or keys.open or args.open


@pytest.mark.parametrize("path", LUA, ids=lambda p: NAMES[p])
def test_no_script_reads_an_index_its_header_does_not_name(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    names = scripts.declared(NAMES[path], text)
    unnamed = sorted(
        {f"{table}[{index}]" for table, index in USE.findall(_code(text)) if not names.names(table, int(index))}
    )
    assert unnamed == [], f"{NAMES[path]} reads {unnamed} without naming them in its header"


@pytest.mark.parametrize("path", LUA, ids=lambda p: NAMES[p])
def test_every_refusal_has_the_one_shape(path: Path) -> None:
    """No ``{'<code>', 0, ...}`` (the old streams shape) nor ``{'ok', ...}``: refusals lead with false."""
    code = _code(path.read_text(encoding="utf-8"))
    old = re.findall(r"return\s*\{\s*'[a-z_]+'\s*,\s*0\s*[,}]", code)
    ok = re.findall(r"return\s*\{\s*'(?:ok|duplicate)'", code)
    assert old == [] and ok == [], f"{NAMES[path]}: {old + ok}"


def test_a_header_with_a_gap_or_a_second_name_on_a_line_is_refused() -> None:
    gap = "--   KEYS[1]  a\n--   KEYS[3]  c\n--   ARGV[1]  x\nreturn 1\n"
    with pytest.raises(ScriptHeaderError, match="KEYS"):
        scripts.signature("t/gap.lua", gap)
    two = "--   KEYS[1]  a     KEYS[2]  b\n--   ARGV[1]  x\nreturn 1\n"
    assert scripts.signature("t/two.lua", two)[0] == Arity(1)  # the second name is not declared
    twice = "--   KEYS[1..2], ARGV[1..5]  see _event.lua\n--   KEYS[2]  b\nreturn 1\n"
    with pytest.raises(ScriptHeaderError, match="twice"):
        scripts.signature("t/twice.lua", twice)


def test_a_header_reads_into_counts() -> None:
    text = (ROOT / "storage" / "streams" / "lua" / "submit.lua").read_text(encoding="utf-8")
    assert scripts.signature("streams/submit.lua", text) == (Arity(10), Arity(16))
    create = (ROOT / "storage" / "lua" / "core" / "session_create.lua").read_text(encoding="utf-8")
    assert scripts.signature("core/session_create.lua", create) == (Arity(3), Arity(7, open=True))


async def test_a_call_with_the_wrong_count_raises_before_reaching_redis(redis: Redis) -> None:
    assert isinstance(redis, LeanRedis) and redis.lean is not None  # EVALSHA over the lean link
    script = scripts.plain_script(redis, "core/accessed.lua")  # KEYS[1], ARGV[1]
    assert await script(keys=["t:contract:none"], args=[1]) == 0
    with pytest.raises(ScriptCallError, match=r"core/accessed\.lua declares 1 KEYS and 1 ARGV.*1 and 2"):
        await script(keys=["t:contract:none"], args=[1, 2])
    with pytest.raises(ScriptCallError, match=r"core/accessed\.lua"):
        await script(keys=[], args=[1])
    with pytest.raises(ScriptCallError, match=r"core/accessed\.lua"):
        script.commands(["a", "b"], [1])  # the raw EVALSHA of a durable write on a cluster
    async with redis.pipeline(transaction=False) as pipe:
        with pytest.raises(ScriptCallError):
            await script(keys=["t:contract:none"], client=pipe)


@pytest.mark.parametrize("durability", [Durability.MEMORY, Durability.REPLICA])
async def test_an_event_script_call_is_checked_on_every_path(redis: Redis, durability: Durability) -> None:
    """The repositories' path, EventLog.run: plain, and durable (the script and WAIT in one pipeline)."""
    keys = Keys("sh")
    log = EventLog(redis=redis, keys=keys, clock=Clock(), maxlen=100, durability=durability, durability_timeout_ms=1)
    append = Scripts.load(redis).append  # KEYS[1..3], ARGV[1..7]
    record = [keys.session("contract")]
    with pytest.raises(ScriptCallError, match=r"core/append\.lua declares 3 KEYS and 7 ARGV"):
        await log.run(append, "contract", keys=record, args=["t"])
    with pytest.raises(CodedError) as refused:
        await log.run(append, "contract", keys=record, args=["t", "{}"])
    assert refused.value.code is ErrorCode.SESSION_NOT_FOUND  # a refusal, not an unconfirmed write


async def test_the_raw_evalsha_of_a_durable_cluster_write_is_checked(tmp_path: Path) -> None:
    """EventLog._run_on_owner packs EVALSHA itself (a cluster pipeline refuses scripts)."""
    need_redis_cli()
    cluster = RedisCluster(tmp_path, masters=3)
    cluster.start()
    client: Any = connect_redis(cluster.url, cluster=True)
    try:
        keys = Keys("sh")
        log = EventLog(redis=client, keys=keys, clock=Clock(), maxlen=100, durability=Durability.REPLICA)
        append = Scripts.load(client).append
        record = [keys.session("contract")]
        with pytest.raises(ScriptCallError, match=r"core/append\.lua"):
            await log.run(append, "contract", keys=record, args=["t", "{}", "extra"])
        with pytest.raises(CodedError) as refused:
            await log.run(append, "contract", keys=record, args=["t", "{}"])
        assert refused.value.code is ErrorCode.SESSION_NOT_FOUND
    finally:
        await client.aclose()
        cluster.stop()


def test_checked_turns_a_refusal_into_its_coded_error() -> None:
    assert scripts.checked([3, "x"]) == [3, "x"]
    assert scripts.checked([0]) == [0]
    with pytest.raises(CodedError) as plain:
        scripts.checked([None, "not_found"])
    assert (plain.value.code, plain.value.message) == (ErrorCode.NOT_FOUND, "not_found")

    def explain(code: ErrorCode, detail: str) -> CodedError | None:
        return CodedError(code, f"wait {detail}", retry_after_s=int(detail)) if code is ErrorCode.RATE_LIMITED else None

    with pytest.raises(CodedError) as worded:
        scripts.checked([None, "rate_limited", 1500], explain)
    assert (worded.value.message, worded.value.details) == ("wait 1500", {"retry_after_s": 1500})
    with pytest.raises(CodedError) as unknown:
        scripts.checked([None, "no_such_code", "x"], explain)
    assert unknown.value.code is ErrorCode.INTERNAL_ERROR
