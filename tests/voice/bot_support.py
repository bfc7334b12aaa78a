"""The chat-bot tests' fixture (a pytest plugin, see tests/conftest.py): a server whose Telegram
webhook knows alice, on an emptied Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from redis.asyncio import Redis

from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.voice.test_telegram import ALICE_TG, bot_settings


@pytest_asyncio.fixture
async def bot(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    srv = await start_server(redis_process.url, tmp_path, **bot_settings(f"{ALICE_TG}:alice"))
    yield srv
    await srv.stop()
