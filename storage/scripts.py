"""Loads the Lua scripts: each operation file is prefixed with the shared event prologue."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

_PROLOGUE = "_event.lua"


def _source(name: str) -> str:
    return resources.files("storage").joinpath("lua", name).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Scripts:
    """Every registered script, by operation."""

    append: AsyncScript
    session_create: AsyncScript
    session_update: AsyncScript
    voice_set_status: AsyncScript
    voice_done: AsyncScript
    material_add: AsyncScript
    active_clear: AsyncScript
    jobs_promote: AsyncScript

    @classmethod
    def load(cls, redis: Redis) -> Scripts:
        """Register every script on ``redis`` (EVALSHA with a transparent NOSCRIPT reload)."""
        prologue = _source(_PROLOGUE)

        def event_script(name: str) -> AsyncScript:
            return redis.register_script(prologue + "\n" + _source(name))

        return cls(
            append=event_script("append.lua"),
            session_create=event_script("session_create.lua"),
            session_update=event_script("session_update.lua"),
            voice_set_status=event_script("voice_set_status.lua"),
            voice_done=event_script("voice_done.lua"),
            material_add=event_script("material_add.lua"),
            active_clear=redis.register_script(_source("active_clear.lua")),
            jobs_promote=redis.register_script(_source("jobs_promote.lua")),
        )
