"""What ``sessionhub serve | worker`` run (``server.cli`` parses the command line; ``token`` is
``server.token_cli``).

Imported by ``server.cli`` only once the transport lane is chosen: this module imports
aiohttp, redis-py and, through ``server.app``, the lane's python-socketio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import unquote

from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster


from handlers.admin.nodes import NODES_KEY
from handlers.context import Services
from handlers.metrics import Metrics
from jobs.processors import STEP_RESERVE_MAX_S, load_processors
from protocol.errors import CodedError
from server.app import build_app, front_site
from server.cli import StartupError
from server import port_probe
from server.identity import token_service
from server.gc_policy import watch_pauses
from server.process import YoungSweep, raise_open_files_limit, tune_gc
from server.redis_embed import (
    URL_FILE,
    DataDirBusy,
    DataDirLock,
    EmbeddedRedis,
    NoRedisServer,
    default_maxmemory_bytes,
    find_redis_server,
)
from server.services import build_services, connect_redis, seed_urls
from server.settings import Settings
from server.transport import choose_lane
from server.transport.accept import descriptor_ceiling
from server.worker import Worker
from storage.clock import follow_redis, keep_following
from storage.keys import Keys
from storage.redis_fitness import memory_warning, refused_command
from storage.server_version import too_old

log = logging.getLogger("sessionhub")

WORKER_FOLLOW_INTERVAL_S = 1.0
# How long a stopping server waits for requests in flight (a client that ignores the close,
# an upload that trickles) before it closes their connections.
SHUTDOWN_TIMEOUT_S = 3.0


class RedisUnreachable(StartupError):
    """Redis did not answer (refused, timed out): it may yet come up, unlike a malformed URL."""


# A worker started before its Redis waits for it: the first retry after this, doubling up to
# the cap (a process manager that starts both at once need not order them).
WORKER_RETRY_FIRST_S = 0.5
WORKER_RETRY_MAX_S = 10.0


@asynccontextmanager
async def redis_for(settings: Settings, *, may_embed: bool, serving: bool = False) -> AsyncIterator[Redis]:
    """The configured Redis, or an embedded one; fails fast when it does not answer.

    ``serving`` (``serve``): on a cluster a seed node answering is enough to come up, not ready
    while the node the client asks first fails over (see :func:`_connected`).
    """
    if settings.redis_url:
        async with _connected(settings, settings.redis_url, serving=serving) as redis:
            yield redis
    elif may_embed:
        async with _embedded(settings) as url, _connected(settings, url, serving=serving) as redis:
            yield redis
    else:
        async with _connected(settings, _recorded_url(settings), serving=serving) as redis:
            yield redis


@asynccontextmanager
async def _embedded(settings: Settings) -> AsyncIterator[str]:
    """Own the data folder (lock), start its redis-server, yield its URL; stop both at the end."""
    try:
        find_redis_server()  # before the lock: say what to install rather than fail half-way
    except NoRedisServer as exc:
        raise StartupError(str(exc)) from None
    lock = DataDirLock(settings.data_dir)
    try:
        lock.acquire()
    except DataDirBusy as exc:
        raise StartupError(str(exc)) from exc
    maxmemory = settings.embedded_redis_maxmemory_bytes
    embedded = EmbeddedRedis(
        settings.data_dir,
        avoid_ports={settings.port},
        maxmemory_bytes=default_maxmemory_bytes() if maxmemory is None else maxmemory,
    )
    try:
        try:
            url = await embedded.start()
        except OSError as exc:  # its config cannot be written (a full disk, a read-only folder)
            raise StartupError(
                f"cannot start the embedded Redis in {settings.data_dir}: {exc.strerror or exc}"
            ) from None
        yield url
    finally:
        await embedded.stop()
        lock.release()


@asynccontextmanager
async def _connected(settings: Settings, url: str, *, serving: bool = False) -> AsyncIterator[Redis]:
    """A client of ``url`` that answered; ``RedisUnreachable`` when it did not.

    A cluster client sends its first command (and reads the command table at its set-up) to
    one node, the owner of slot 0: while that shard fails over nothing answers there, although
    every other shard serves. A ``serve`` then comes up when a seed node answers, not ready
    (``/readyz`` asks the same way) until the shard has a master again: it exited, and a node
    started during a failover stayed down. No seed answering is still a refusal to start.
    """
    try:
        redis = connect_redis(
            url,
            max_connections=settings.redis_max_connections,
            cluster=settings.redis_cluster,
            longest_wait_s=max(1.0, settings.durability_timeout_ms / 1000),  # WAIT / WAITAOF, the worker's read
        )
    except ValueError as exc:
        raise StartupError(f"REDIS_URL {_redacted(url)}: {exc}") from exc
    try:
        try:
            await asyncio.wait_for(redis.ping(), 5)
        except Exception as exc:
            if not (serving and isinstance(redis, RedisCluster) and await _a_seed_answers(url)):
                raise RedisUnreachable(f"cannot reach Redis at {_redacted(url)}: {_reason(exc)}") from exc
            log.warning("Redis Cluster at %s: %s; starting, not ready until it answers", _redacted(url), exc)
        refused = await too_old(redis) or await refused_command(redis, Keys(settings.key_prefix))
        if refused:
            raise StartupError(refused)
        if serving and (warning := await memory_warning(redis)):
            log.warning("%s", warning)
        yield redis
    finally:
        await redis.aclose()


async def _a_seed_answers(url: str) -> bool:
    """Whether any seed node of the cluster ``url`` answers a PING of its own."""
    for seed in seed_urls(url):
        node = Redis.from_url(seed, socket_connect_timeout=2, socket_timeout=2)
        try:
            if await node.ping():
                return True
        except Exception:  # this seed is down too: the next one
            continue
        finally:
            await node.aclose()
    return False


def _recorded_url(settings: Settings) -> str:
    """The URL ``sessionhub serve`` recorded for its embedded Redis."""
    url = _read_recorded_url(settings)
    if url is None:
        raise StartupError("REDIS_URL is not set and no embedded Redis of `sessionhub serve` was found")
    return url


def _read_recorded_url(settings: Settings) -> str | None:
    try:
        return (settings.data_dir / URL_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _redacted(url: str) -> str:
    """``url`` without its credentials (each seed's, when it names several)."""
    return ",".join(_redacted_one(part) for part in url.split(","))


def _redacted_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    # redis-py also takes credentials as query parameters (``?password=``, ``?ssl_password=``, and
    # their names percent-encoded: it decodes them): said in clear before (audits "tlsredis",
    # "verify40").
    where, mark, query = rest.partition("?")
    if mark:
        pieces = []
        for piece in query.split("&"):
            name, equals, _ = piece.partition("=")
            secret = any(word in unquote(name).lower() for word in _SECRET_WORDS)
            pieces.append(f"{name}{equals}***" if equals and secret else piece)
        rest = where + mark + "&".join(pieces)
    return scheme + sep + rest


# A query parameter whose name holds one of these holds a secret (a password, a key's passphrase).
_SECRET_WORDS = ("pass", "pwd", "secret", "auth", "token")


def _reason(exc: BaseException) -> str:
    """An error's words, or its kind when it has none (a timeout's: an empty reason before)."""
    text = str(exc).strip()
    if text:
        return text
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer within 5 s (a TLS URL to a plain port, or the reverse, looks like this)"
    return type(exc).__name__


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _warn_of_job_timeout(settings: Settings) -> None:
    """Said once by a process that runs workers."""
    if settings.voice_transcribe_command and settings.job_timeout_s <= settings.voice_transcribe_timeout_s:
        # Not refused (it works): each chunk's transcription is bounded by the job's time limit
        # instead (jobs.processors.step_time_s), so a slow one fails that chunk only.
        log.warning(
            "SESSIONHUB_JOB_TIMEOUT_S (%g s) is not over SESSIONHUB_VOICE_TRANSCRIBE_TIMEOUT_S (%g s):"
            " a chunk's transcription is cut at %g s, sooner than its own limit",
            settings.job_timeout_s,
            settings.voice_transcribe_timeout_s,
            settings.job_timeout_s - min(settings.job_timeout_s / 2, STEP_RESERVE_MAX_S),
        )


def _worker(services: Services, settings: Settings) -> Worker:
    return Worker(
        services=services,
        processors=load_processors(settings.processors),
        max_attempts=settings.job_max_attempts,
        backoff_base_ms=settings.job_backoff_base_ms,
        visibility_ms=settings.job_visibility_ms,
        timeout_s=settings.job_timeout_s,
    )


def _folder_refusal(settings: Settings) -> str | None:
    """Why a folder the server writes to cannot be used (made if missing), or None: said in one
    line before anything starts, not as the traceback of whatever first wrote there."""
    folders = {"SESSIONHUB_DATA_DIR": settings.data_dir}
    if settings.voice_blob_dir is not None:
        folders["SESSIONHUB_VOICE_BLOB_DIR"] = settings.voice_blob_dir
    for name, folder in folders.items():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"{name} {str(folder)!r} cannot be used: {exc.strerror or exc}"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{name} {str(folder)!r} cannot be used: not writable"
    return None


async def serve(settings: Settings) -> None:
    """Run the HTTP + Socket.IO server (and its in-process workers) until SIGINT/SIGTERM."""
    refused = port_probe.refusal(settings.host, settings.port) or _folder_refusal(settings)
    if refused:  # before the embedded Redis: a port in use is one line, not its start-up's too
        raise StartupError(refused)
    async with redis_for(settings, may_embed=True, serving=True) as redis:
        services = build_services(settings, redis=redis, tokens=token_service(settings))
        try:
            await services.log.check_durability()
        except CodedError as exc:
            raise StartupError(exc.message) from exc
        app = build_app(settings, services=services)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        # Before the site starts: its acceptor keeps clients below the limit less the reserve.
        open_files = raise_open_files_limit()
        site = front_site(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:  # in use, not an address of this host, a privileged port...
            await runner.cleanup()
            services.metrics.close()
            raise StartupError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
        await app[NODES_KEY].listening_on(settings.host, site.port)  # a node restarted here replaces its dead self
        tune_gc(settings.gc_gen0_threshold)  # after start-up: what exists now is frozen
        sweep = YoungSweep().start() if settings.gc_gen0_threshold > 0 else None
        watch_pauses(settings.gc_pause_log_ms)
        stop_workers = asyncio.Event()
        if settings.inprocess_workers:
            _warn_of_job_timeout(settings)
        workers = [
            asyncio.create_task(_worker(services, settings).run(stop_workers))
            for _ in range(settings.inprocess_workers)
        ]
        _, lane_warning = choose_lane(settings.transport)
        log.info(
            "sessionhub serving on http://%s:%d (up to %d open files, clients below descriptor %d)",
            settings.host,
            site.port,  # the one bound: PORT=0 asks for any free one
            open_files,
            descriptor_ceiling(settings.kept_descriptors),
        )
        if lane_warning:  # said once serving: a refusal before it (a port in use) stays one line
            log.warning("%s", lane_warning)
        if settings.log_format != "json":  # in JSON mode every line is JSON: the log line above says it
            print(f"sessionhub serving on http://{settings.host}:{site.port}", flush=True)
        try:
            await _wait_for_signal()
        finally:
            if sweep is not None:
                sweep.stop()
            stop_workers.set()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            try:
                await runner.cleanup()
            finally:
                services.metrics.close()


async def work(settings: Settings) -> None:
    """Run one job worker until SIGINT/SIGTERM.

    On the embedded Redis of a ``serve`` (no ``REDIS_URL``), the worker follows ``redis.url``:
    a restarted ``serve`` starts a new redis-server (new port, new password), and a worker
    left on the old address would wait forever on a server that no longer exists.

    A Redis that does not answer yet (or no ``serve`` that recorded one) is waited for, with a
    warning at each retry: a worker is often started beside its Redis, not after it, and one
    that exited would be restarted by its process manager in a loop or, without one, never.
    Only a malformed ``REDIS_URL``, or a Redis too old (``storage.server_version``), ends it
    (waiting would not change either).
    """
    stop = asyncio.Event()
    follow = not settings.redis_url
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics = Metrics()  # one per process, kept across reconnections (its counters go on)
    try:
        url = settings.redis_url or await _first_recorded_url(settings, stop)
        await _work_while(settings, stop, url, follow=follow, metrics=metrics)
    finally:
        metrics.close()


async def _first_recorded_url(settings: Settings, stop: asyncio.Event) -> str:
    """The URL a ``serve`` recorded for its embedded Redis, waited for (bounded by ``stop``)."""
    url = _read_recorded_url(settings)
    if url is None:
        log.warning(
            "worker: REDIS_URL is not set and no serve has recorded an embedded Redis in %s; waiting for one",
            settings.data_dir / URL_FILE,
        )
    while url is None and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WORKER_FOLLOW_INTERVAL_S)
        url = _read_recorded_url(settings)
    return url or ""


async def _work_while(settings: Settings, stop: asyncio.Event, url: str, *, follow: bool, metrics: Metrics) -> None:
    """The worker on ``url``, reconnected to the recorded URL whenever it changes (``follow``)."""
    first = True
    retry_s = WORKER_RETRY_FIRST_S
    while not stop.is_set():
        try:
            async with _connected(settings, url) as redis:
                retry_s = WORKER_RETRY_FIRST_S
                services = build_services(settings, redis=redis, tokens=token_service(settings), metrics=metrics)
                worker = _worker(services, settings)
                # The store looked at once per process, as a node does at its start.
                checking = asyncio.create_task(_say_blob_store_trouble(services)) if first else None
                if first:
                    _warn_of_job_timeout(settings)
                    if settings.log_format == "json":
                        log.info("sessionhub worker %s running", worker.consumer)
                    else:
                        print(f"sessionhub worker {worker.consumer} running", flush=True)
                    first = False
                try:
                    url = await _work_until(worker, services, stop, settings, url if follow else None)
                finally:
                    if checking is not None:
                        checking.cancel()
                        await asyncio.gather(checking, return_exceptions=True)
                    services.voice.blobs.close()  # the S3 store's threads: a reconnection builds anew
        except RedisUnreachable as exc:
            if follow and not first:
                log.warning("worker: Redis at %s does not answer; waiting for serve to record another", _redacted(url))
                url = await _next_url(settings, url, stop)
                continue
            log.warning("worker: %s; retrying in %.1f s", exc, retry_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry_s)
            retry_s = min(retry_s * 2, WORKER_RETRY_MAX_S)
            if follow:  # a serve started meanwhile may have recorded another server
                url = _read_recorded_url(settings) or url


async def _say_blob_store_trouble(services: Services) -> None:
    """A worker reads and writes the voice blob store as the nodes do (a Done's audio): a bucket
    that is missing, refuses the keys or does not answer is said at its start too, in the node's
    one WARNING line. Before, a worker on its own said nothing until its jobs failed."""
    warning = await services.voice.blobs.check()
    if warning:
        log.warning("worker: %s", warning)


async def _work_until(
    worker: Worker, services: Services, stop: asyncio.Event, settings: Settings, followed: str | None
) -> str:
    """Run ``worker`` until ``stop``, or until ``redis.url`` names another server; returns that URL."""
    worker_stop = asyncio.Event()
    clock, redis = services.clock, services.redis
    with contextlib.suppress(Exception):  # Redis away: the worker's own calls say so
        await follow_redis(clock, redis)  # its jobs' times on Redis' clock, as the nodes' (storage.clock)
    following = asyncio.create_task(keep_following(clock, redis))
    task = asyncio.create_task(worker.run(worker_stop))
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WORKER_FOLLOW_INTERVAL_S)
            recorded = _read_recorded_url(settings) if followed is not None else None
            if recorded is not None and recorded != followed:
                log.warning("worker: redis.url changed; reconnecting to %s", _redacted(recorded))
                return recorded
        return followed or ""
    finally:
        worker_stop.set()
        task.cancel()
        following.cancel()
        await asyncio.gather(task, following, return_exceptions=True)


async def _next_url(settings: Settings, current: str, stop: asyncio.Event) -> str:
    """Wait (bounded only by ``stop``) until ``redis.url`` records a server; the current one by default."""
    while not stop.is_set():
        recorded = _read_recorded_url(settings)
        if recorded is not None and recorded != current:
            return recorded
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WORKER_FOLLOW_INTERVAL_S)
    return current
