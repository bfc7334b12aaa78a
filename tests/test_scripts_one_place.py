"""Every Lua script reaches Redis through ``storage/scripts.py``, the one place that makes it cluster-safe.

On Redis Cluster the bus listens with SSUBSCRIBE, so a script that publishes with a plain PUBLISH
(registered without the rewrite) delivers nothing live there (issue 24, item 3).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "handlers", "jobs", "auth", "storage", "protocol")
# Ways a Python module can hand Lua (or a function) to Redis.
SCRIPT_CALLS = re.compile(
    r"register_script\(|\.evalsha?\(|\.eval_ro\(|script_load\(|\.fcall\(|execute_command\(\s*[\"']EVAL"
)


def test_no_script_reaches_redis_outside_storage_scripts() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "storage" / "scripts.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if SCRIPT_CALLS.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_every_publish_in_lua_has_the_form_the_cluster_rewrite_knows() -> None:
    from storage import scripts

    rewritten = "redis.call('PUBLISH',"
    assert rewritten in scripts.__dict__["_for"].__code__.co_consts
    odd = []
    for path in sorted((ROOT / "storage").rglob("*.lua")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "publish" in line.lower() and not line.lstrip().startswith("--") and rewritten not in line:
                odd.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert odd == []
