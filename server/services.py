"""Builds the one dependency bundle (``handlers.context.Services``) from settings, once."""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any, TypeVar, cast

from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, SSLConnection, parse_url
from redis.maint_notifications import MaintNotificationsConfig

from auth.relying_party import RelyingParty
from auth.tokens import TokenService
from handlers.context import Limits, NoSubscriptions, Services, Subscriptions
from handlers.disk_room import DiskRoom
from handlers.kinds import KindRegistry
from handlers.metrics import Metrics
from handlers.storage_guard import StorageGuard
from server.settings import Settings
from storage.cleanups import OwedCleanups
from storage.clock import Clock
from storage.events import EventLog
from storage.identity.passkeys import Passkeys
from storage.identity.repository import IdentityConfig, Identities
from storage.jobs import JobQueue
from storage import cluster_connection
from storage.lean_redis import LeanRedis
from storage.keys import Keys
from storage.login_tokens import LoginTokens
from storage.ratelimit import RateLimiter
from storage.scripts import Scripts
from storage.sessions import SessionDirectory
from storage.store import Store
from storage.voice.repository import VoiceSessions
from storage.voice.blobs import S3Settings
from storage.voice.config import VoiceConfig, parse_user_map


# A capability's frozen dataclass of limits (see limits_section).
C = TypeVar("C", bound=Any)


def seed_urls(url: str) -> list[str]:
    """The seed nodes ``REDIS_URL`` names: comma-separated, each a full URL or ``host:port``,
    which borrows the first one's scheme, credentials and database (issue 24, item 7).

    A comma inside a password is written ``%2C`` (URL-encoded), as any reserved character.
    """
    parts = [part.strip() for part in url.split(",") if part.strip()]
    if not parts:
        raise ValueError("REDIS_URL names no Redis")
    first = urlsplit(parts[0])
    credentials = first.netloc.rpartition("@")[0]
    seeds = [parts[0]]
    for part in parts[1:]:
        if "://" in part:
            seeds.append(part)
        else:
            netloc = f"{credentials}@{part}" if credentials else part
            seeds.append(urlunsplit((first.scheme, netloc, first.path, first.query, "")))
    return seeds


# How long a cluster node may take to answer a command before it counts as gone, on top of the
# longest a command waits by design (WAIT for a replica's confirmation; the worker's blocking read
# is 1 s). A master frozen or cut off by the network answers nothing and closes nothing: without
# a bound, every command routed to it waited until it came back (a request answered after 13 s,
# page loads held), also once its replica had been promoted. Timed out, redis-py drops that node
# from its start-up nodes and reads the slot map anew, and the command goes to the new master.
CLUSTER_REPLY_TIMEOUT_S = 3.0


def checked_at_checkout() -> dict[str, Any]:
    """The pool options that make it check each idle connection as it hands it out.

    redis-py's pool replaces a connection the server closed while it sat idle (a Redis restart)
    as it hands it out, except, from 8.1, on a RESP3 connection with maintenance notifications
    on, which "auto" (its default) turns on: the dead connection was handed out, and the first
    command on each failed (``Connection closed by server``, answered ``unavailable``) after
    Redis was back (redis/redis-py#4252). Those notifications announce a managed Redis's
    planned moves (Redis Enterprise / Cloud); a self-hosted Redis sends none, so they are off
    here. Before 8.1 the asyncio pool takes no such option and checks every connection anyway.
    """
    if "maint_notifications_config" not in inspect.signature(AbstractConnection.__init__).parameters:
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def connect_redis(url: str, *, max_connections: int = 512, cluster: bool = False, longest_wait_s: float = 1.0) -> Redis:
    """The Redis client every component shares.

    The pool blocks (up to 5 s) when all its connections are busy, instead of failing: a burst
    of reconnecting clients must wait its turn, not get ``internal_error``. With ``cluster``,
    ``url`` names any node of a Redis Cluster and redis-py's cluster client routes every command
    by its keys' slot (every script touches one slot: a session's keys share a hash tag), and a
    node that does not answer within ``longest_wait_s`` (the longest a command waits by design)
    plus :data:`CLUSTER_REPLY_TIMEOUT_S` counts as gone.
    On a single Redis, the hot path's reads and script calls share one pipelined connection
    (``storage.lean_redis``); everything else uses the pool.
    """
    seeds = seed_urls(url)
    if cluster:
        # Every seed is a startup node: the first that answers tells the client the topology,
        # so a node down at start-up does not keep this one from starting.
        nodes = [parse_url(seed) for seed in seeds]
        options: dict[str, Any] = {key: value for key, value in nodes[0].items() if key not in ("host", "port")}
        if options.pop("connection_class", None) is SSLConnection:
            options["ssl"] = True
        client = RedisCluster(
            startup_nodes=[ClusterNode(node["host"], node.get("port", 6379)) for node in nodes],
            decode_responses=True,
            max_connections=max_connections,
            socket_connect_timeout=5,
            socket_timeout=longest_wait_s + CLUSTER_REPLY_TIMEOUT_S,
            **options,
        )
        # Its connections fail as lost, and are retried, when the client's own reset closes them
        # under a write (every master restarting at once): no loop or request ends on it.
        cluster_connection.install(client)
        # The cluster client offers the commands of a single-node client; typed as one for the
        # repositories, which never depend on which it is (storage.scripts adapts PUBLISH).
        return cast(Redis, client)
    if len(seeds) > 1:
        raise ValueError("REDIS_URL names several nodes: that needs SESSIONHUB_REDIS_CLUSTER=true")
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        decode_responses=True,
        socket_connect_timeout=5,
        health_check_interval=30,
        **checked_at_checkout(),
    )
    return LeanRedis.from_pool(pool)


def limits_from(settings: Settings) -> Limits:
    """The edge limits: the only place where settings become limits (defaults live in Settings)."""
    return Limits(
        max_payload_bytes=settings.max_payload_bytes,
        event_rate_per_s=settings.event_rate_per_s,
        event_burst=settings.event_burst,
        max_subscriptions=settings.max_subscriptions,
        guest_token_ttl_s=settings.guest_token_ttl_s,
        guests_per_min=settings.guests_per_min,
        guests_per_day=settings.guests_per_day,
        creates_per_min=settings.creates_per_min,
        creates_per_min_per_address=settings.creates_per_min_per_address,
        jobs_per_min_per_address=settings.jobs_per_min_per_address,
        idempotency_keys_per_day_per_address=settings.idempotency_keys_per_day_per_address,
        creates_per_day=settings.patterns_creates_per_day,
        list_limit=settings.list_limit,
        max_materials=settings.max_materials,
        login_link_ttl_s=settings.login_link_ttl_s,
        login_token_ttl_s=settings.login_token_ttl_s,
        signins_per_min=settings.signins_per_min,
        flood_refusals=settings.flood_refusals,
        flood_window_s=settings.flood_window_s,
    )


def identity_config_from(settings: Settings) -> IdentityConfig:
    """How long identities, device credentials and revocations live."""
    return IdentityConfig(
        refresh_ttl_s=settings.refresh_ttl_s,
        guest_idle_s=settings.guest_idle_s,
        # A revoked device's tokens are refused as long as the longest-lived one it may hold.
        access_ttl_s=max(settings.guest_token_ttl_s, settings.login_token_ttl_s),
        revocation_poll_s=settings.revocation_poll_s,
        link_ttl_s=settings.login_link_ttl_s,
    )


def passkey_rp_from(settings: Settings) -> RelyingParty | None:
    """The passkey relying party, None without SESSIONHUB_PUBLIC_URL; ValueError (refusing to
    start) when that URL cannot carry passkeys and they were not turned off."""
    if not settings.passkeys or not settings.public_url:
        return None
    return RelyingParty.from_public_url(settings.public_url)


def voice_config_from(settings: Settings) -> VoiceConfig:
    """The voice capability's configuration (chunks, blob folder, Telegram, transcription)."""
    s3 = None
    if settings.voice_blob_store == "s3":
        if not settings.voice_s3_bucket:
            raise ValueError("SESSIONHUB_VOICE_BLOB_STORE=s3 needs SESSIONHUB_VOICE_S3_BUCKET")
        s3 = S3Settings(
            bucket=settings.voice_s3_bucket,
            endpoint_url=settings.voice_s3_endpoint_url,
            region=settings.voice_s3_region,
            prefix=settings.voice_s3_prefix,
            access_key_id=settings.voice_s3_access_key_id,
            secret_access_key=settings.voice_s3_secret_access_key,
        )
    return VoiceConfig(
        blob_dir=settings.voice_blob_dir or settings.data_dir / "blobs",
        s3=s3,
        max_chunk_bytes=settings.voice_max_chunk_bytes,
        max_chunks=settings.voice_max_chunks,
        max_chunk_ms=settings.voice_max_chunk_ms,
        audio_link_ttl_s=settings.voice_audio_link_ttl_s,
        recording_lease_ms=settings.voice_recording_lease_ms,
        upload_deadline_s=settings.voice_upload_deadline_s,
        upload_quota_bytes=settings.voice_upload_quota_bytes,
        uploads_in_flight=settings.voice_uploads_in_flight,
        late_chunks_s=settings.voice_late_chunks_s,
        chunks_per_day=settings.voice_chunks_per_day,
        disk_reserve_bytes=settings.voice_disk_reserve_bytes,
        materials_per_min=settings.voice_materials_per_min,
        bot_commands_per_min=settings.voice_bot_commands_per_min,
        material_quota_bytes=settings.voice_material_quota_bytes,
        telegram_webhook_path=settings.voice_telegram_webhook_path,
        telegram_secret_token=settings.voice_telegram_secret_token,
        telegram_bot_username=settings.voice_telegram_bot_username,
        telegram_users=parse_user_map(settings.voice_telegram_users),
        telegram_bot_token=settings.voice_telegram_bot_token.get_secret_value(),
        telegram_api_url=settings.voice_telegram_api_url.rstrip("/"),
        telegram_fetch_backoff_ms=settings.job_backoff_base_ms,
        transcribe_command=settings.voice_transcribe_command,
        transcribe_timeout_s=settings.voice_transcribe_timeout_s,
    )


def limits_section(settings: Settings, prefix: str, section: type[C]) -> C:
    """A capability's limits: the dataclass ``section`` filled from the settings ``<prefix><field>``."""
    filled: C = section(**{f.name: getattr(settings, prefix + f.name) for f in fields(section)})
    return filled


def build_services(
    settings: Settings,
    *,
    redis: Redis,
    tokens: TokenService,
    bus: Subscriptions | None = None,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
) -> Services:
    """Every repository on ``redis`` (which must decode responses), with the node's bus.

    ``metrics`` is the process's one :class:`Metrics` (a new one when not given).
    """
    clock = clock or Clock()
    # One clock: tokens are judged on the one that mints them and expires guests' things.
    tokens.judge_on(clock.now_s)
    keys = Keys(settings.key_prefix)
    scripts = Scripts.load(redis)
    event_log = EventLog(
        redis=redis,
        keys=keys,
        clock=clock,
        maxlen=settings.stream_maxlen,
        durability=settings.durability,
        durability_timeout_ms=settings.durability_timeout_ms,
    )
    sessions = SessionDirectory(redis=redis, keys=keys, clock=clock, orphan_days=settings.admin_orphan_days)
    store = Store(redis=redis, keys=keys, scripts=scripts, log=event_log, clock=clock, sessions=sessions)
    metrics = metrics if metrics is not None else Metrics()
    sessions.on_created = metrics.session_created
    identities = Identities(
        redis=redis,
        keys=keys,
        clock=clock,
        config=identity_config_from(settings),
        rotation_key=tokens.derived_key("refresh-rotation"),
    )
    sessions.on_owned = identities.owns_now
    voice = VoiceSessions(store, config=voice_config_from(settings))
    return Services(
        redis=redis,
        keys=keys,
        clock=clock,
        scripts=scripts,
        log=event_log,
        sessions=sessions,
        kinds=KindRegistry(sessions),
        voice=voice,
        jobs=JobQueue(redis=redis, keys=keys, clock=clock),
        limiter=RateLimiter(redis=redis, keys=keys, clock=clock),
        login_tokens=LoginTokens(redis=redis, keys=keys),
        identities=identities,
        passkeys=Passkeys(redis=redis, keys=keys, clock=clock),
        passkey_rp=passkey_rp_from(settings),
        cleanups=OwedCleanups(redis=redis, keys=keys, clock=clock),
        tokens=tokens,
        limits=limits_from(settings),
        bus=bus if bus is not None else NoSubscriptions(),
        metrics=metrics,
        storage_guard=StorageGuard(
            redis=redis,
            clock=clock,
            metrics=metrics,
            ratio=settings.storage_guard_ratio,
            budget_bytes=settings.admin_memory_budget_bytes,
            refresh_ms=settings.storage_guard_refresh_ms,
        ),
        disk=DiskRoom(
            {"audio": voice.config.blob_dir, "data": settings.data_dir},
            settings.voice_disk_reserve_bytes,
            refusals=metrics.disk_refusals,
        ),
        public_url=settings.public_url,
        trust_forwarded_for=settings.forwarded_hops,
        web_dir=settings.web_dir,
    )
