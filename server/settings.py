"""Configuration from environment variables (every one is listed in README.md)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Literal

from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from auth.relying_party import RelyingParty
from storage.events import Durability
from storage.voice.config import parse_user_map


MIN_JWT_SECRET_BYTES = 32
# The Telegram webhook's path and secret token: long enough that nobody guesses them.
MIN_WEBHOOK_SECRET_CHARS = 16
# A Telegram bot token as BotFather gives it: the bot's id, a colon, the secret part.
_BOT_TOKEN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{20,128}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def default_web_dir() -> Path:
    """The pages: a checkout's web/ beside the code, else the installed ``sessionhub_web`` package
    (setup.py ships web/ under that name: a wheel has no place for a top-level folder)."""
    checkout = Path(__file__).resolve().parent.parent / "web"
    if checkout.is_dir():
        return checkout
    spec = importlib.util.find_spec("sessionhub_web")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return checkout  # the app's static route says what is missing


class Settings(BaseSettings):
    """sessionhub settings; ``SESSIONHUB_*`` variables, plus ``REDIS_URL`` and ``PORT``."""

    # No setting takes inf or nan: "inf" read as a float made a timer Engine.IO could not send
    # (every handshake answered 500) and others that never fire.
    model_config = SettingsConfigDict(env_prefix="SESSIONHUB_", extra="ignore", allow_inf_nan=False)

    # Not empty: an empty host listened on every interface, IPv4 and IPv6, without a word.
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8080, ge=0, le=65535, validation_alias=AliasChoices("SESSIONHUB_PORT", "PORT"))
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "SESSIONHUB_REDIS_URL"))
    redis_max_connections: int = Field(default=512, ge=8)
    redis_cluster: bool = False
    data_dir: Path = Path("./var")
    # The embedded Redis's maxmemory (no REDIS_URL): None, half the machine's (or cgroup's)
    # memory (server/redis_embed.py); 0, none.
    embedded_redis_maxmemory_bytes: int | None = Field(default=None, ge=0)
    key_prefix: str = Field(default="sh", pattern=r"^[A-Za-z0-9_.\-]{1,32}$")
    public_url: str = ""
    trust_forwarded_for: bool = False
    # How many trusted proxies are in front (TRUST_FORWARDED_FOR): the client is the
    # X-Forwarded-For hop that many from the end (handlers.http_common.address_of).
    trusted_proxy_hops: int = Field(default=1, ge=1, le=16)
    # The WebSocket lane (server/transport/versions.py): auto = fast on tested library versions,
    # else stock with a warning; fast = refuse to start outside them; stock = always stock.
    transport: Literal["auto", "fast", "stock"] = "auto"
    web_dir: Path = Field(default_factory=lambda: default_web_dir())
    log_level: str = "INFO"  # one of LOG_LEVELS, any case (checked below)

    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_secret: str | None = None  # HS256: at least 32 bytes (checked below)
    jwt_public_key: str | None = None
    jwt_private_key: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # How far a token's iat/nbf may be in this node's future: another node (or the provider) whose
    # clock runs ahead minted it. Its exp is never stretched.
    jwt_clock_skew_s: int = Field(default=30, ge=0, le=300)
    # As short as 2 s: the refresh cookie renews access tokens, so a test can let one run out.
    guest_token_ttl_s: int = Field(default=3600, ge=2, le=7 * 86400)
    guests_per_min: int = Field(default=30, ge=1)
    # ... and per client address per UTC day: guests are kept guest_idle_s (30 days) without
    # owning anything, so the minute's limit alone let one address keep ~1.3 million of them.
    guests_per_day: int = Field(default=1000, ge=1)
    login_link_ttl_s: int = Field(default=600, ge=30, le=86400)
    login_token_ttl_s: int = Field(default=86400, ge=60, le=30 * 86400)
    # --- identity (issue 22): refresh cookies, device families, revocations ---------------
    refresh_ttl_s: int = Field(default=180 * 86400, ge=3600, le=400 * 86400)
    guest_idle_s: int = Field(default=30 * 86400, ge=60, le=400 * 86400)
    revocation_poll_s: float = Field(default=2.0, gt=0, le=60)
    signins_per_min: int = Field(default=30, ge=1)
    passkeys: bool = True  # on when SESSIONHUB_PUBLIC_URL is set (it must then suit WebAuthn)
    jwks_url: str = ""  # an external provider's keys: its RS256 tokens are accepted as ours are
    jwks_issuer: str | None = None
    jwks_audience: str | None = None
    jwks_refresh_s: float = Field(default=300.0, ge=1, le=86400)
    creates_per_min: int = Field(default=10, ge=1)
    creates_per_min_per_address: int = Field(default=30, ge=1)
    # Jobs (Done, post-processing, tasks) the guests of one address queue per minute together.
    jobs_per_min_per_address: int = Field(default=60, ge=1)
    # New Idempotency-Keys (each an answer kept a day) the guests of one address claim per UTC day.
    idempotency_keys_per_day_per_address: int = Field(default=20_000, ge=1)

    stream_maxlen: int = Field(default=1000, ge=10)
    durability: Durability = Durability.MEMORY
    durability_timeout_ms: int = Field(default=1000, ge=1, le=60_000)
    max_payload_bytes: int = Field(default=16384, ge=256)
    event_rate_per_s: float = Field(default=20.0, gt=0, le=1_000_000)
    event_burst: int = Field(default=40, ge=1)
    # A connection refused this many events over its rate within the window is disconnected
    # ("flood"; handlers.socket_router): sustained abuse, not a client briefly too fast.
    flood_refusals: int = Field(default=200, ge=1)
    flood_window_s: float = Field(default=10.0, gt=0, le=3600)
    max_subscriptions: int = Field(default=100, ge=1)
    list_limit: int = Field(default=200, ge=1)
    max_materials: int = Field(default=10_000, ge=1)
    slow_client_buffer_bytes: int = Field(default=1 << 20, ge=65536)
    # Bytes of unfinished WebSocket frames held across all connections (server.transport.leanws).
    partial_frames_budget_bytes: int = Field(default=64 << 20, ge=1 << 20)
    # Unsent bytes held for slow clients across all connections (server.transport.fastpath.OutboundBudget).
    outbound_budget_bytes: int = Field(default=256 << 20, ge=1 << 16)
    # A connection whose client acknowledges none of the bytes waiting for it for this long is
    # ended (handlers/write_deadline.py): HTTP answers, WebSockets, closes still flushing.
    write_stall_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # At most an hour each: a browser fires a timer of more than 2^31 - 1 ms (about 24.8 days) at
    # once, so a longer heartbeat made every page time out as it connected, and a longer wait is
    # no heartbeat anyone wants.
    ping_interval_s: float = Field(default=25.0, gt=0, le=3600)
    ping_timeout_s: float = Field(default=20.0, gt=0, le=3600)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    http_idle_timeout_s: float = Field(default=15.0, gt=0, le=86400)
    cleanup_retry_s: float = Field(default=60.0, gt=0, le=3600)
    max_connections_per_address: int = Field(default=2000, ge=1)
    # Plain HTTP connections one address may hold open at once (server/transport/accept.py); None:
    # what its Socket.IO connections need (http_connections_per_address).
    max_http_connections_per_address: int | None = Field(default=None, ge=1)
    # Descriptors clients may not take (fast lane; server/transport/accept.py): None, the Redis
    # pool's size and 256 more (files, the bus, the lean link, a transcription's pipes).
    descriptor_reserve: int | None = Field(default=None, ge=0)
    # Young-generation threshold of the garbage collector (0 keeps CPython's; server/process.py).
    # At most a C int: gc.set_threshold refuses more, and it runs once the port is already bound.
    gc_gen0_threshold: int = Field(default=10_000, ge=0, le=2**31 - 1)
    # A garbage collection holding the event loop this long or longer is logged (0: none is).
    gc_pause_log_ms: float = Field(default=100.0, ge=0)

    job_max_attempts: int = Field(default=5, ge=1)
    job_backoff_base_ms: int = Field(default=1000, ge=1)
    job_visibility_ms: int = Field(default=60_000, ge=1000)
    job_timeout_s: float = Field(default=300.0, gt=0, le=86400)
    inprocess_workers: int = Field(default=1, ge=0, le=16)
    processors: str | None = None

    # --- voice: audio chunks, the FAB, Telegram, post-processing ---------------------------
    clips_cooldown_s: float = Field(default=2.0, ge=0, le=3600)
    clips_max_per_session: int = Field(default=10_000, ge=1, le=1_000_000)
    clips_moment_window_s: int = Field(default=10, ge=1, le=600)
    clips_max_per_viewer: int = Field(default=200, ge=1, le=1_000_000)
    clips_max_per_address: int = Field(default=1_000, ge=1, le=1_000_000)
    # Clips the guests of one address store per UTC day over every stream session.
    clips_max_per_address_per_day: int = Field(default=10_000, ge=1)
    # Parsed clips each process keeps of big streams' last whole reads (clips_cache.py).
    clips_cached: int = Field(default=250_000, ge=0, le=10_000_000)

    admin_orphan_days: int = Field(default=90, ge=1, le=36_500)
    admin_storage_cost_per_gb_month: float = Field(default=0.5, ge=0)
    admin_read_cost_per_million: float = Field(default=0.5, ge=0)
    admin_write_cost_per_million: float = Field(default=5.0, ge=0)
    admin_memory_budget_bytes: int = Field(default=0, ge=0)
    admin_memory_alert_ratio: float = Field(default=0.8, gt=0, le=1)
    # The storage guard (handlers/storage_guard.py): no new sessions or guests past this share of
    # the memory budget (0: off), the budget's figures read at most once per refresh_ms.
    storage_guard_ratio: float = Field(default=0.9, ge=0, le=1)
    storage_guard_refresh_ms: int = Field(default=1000, ge=0, le=60_000)
    admin_large_session_bytes: int = Field(default=100 * 1024, ge=1)
    admin_creation_spike_factor: float = Field(default=5.0, gt=1)
    admin_creation_spike_min: int = Field(default=20, ge=1)
    admin_job_stuck_s: int = Field(default=600, ge=1)
    admin_dead_letter_alert: int = Field(default=1, ge=1)
    admin_node_heartbeat_s: float = Field(default=5.0, gt=0, le=300)
    admin_metrics_public: bool = False
    admin_actions_per_min: int = Field(default=30, ge=1)

    listening_window_s: float = Field(default=300.0, gt=0, le=86400)
    listening_throttle_s: float = Field(default=5.0, ge=0, le=3600)
    listening_min_session_ms: int = Field(default=1000, ge=0, le=3_600_000)
    listening_silence_s: float = Field(default=60.0, gt=0, le=86400)
    listening_sweep_interval_s: float = Field(default=5.0, gt=0, le=3600)
    listening_max_devices: int = Field(default=16, ge=1, le=1000)
    listening_max_items: int = Field(default=10_000, ge=1)
    listening_max_sessions: int = Field(default=100_000, ge=1)
    listening_http_reports_per_min: int = Field(default=600, ge=1)
    # Sessions the guests of one client address add to their histories per UTC day: a guest's
    # history held up to max_sessions (~5.7 KB each at the size limits) and guests are cheap.
    listening_guest_sessions_per_day: int = Field(default=2000, ge=1)

    patterns_creates_per_min: int = Field(default=10, ge=1)
    # Sessions of every kind (not only patterns) created per client address per UTC day: one
    # counter (storage.ratelimit.CREATES_DAY_BUCKET), the name from when only patterns had it.
    patterns_creates_per_day: int = Field(default=500, ge=1)
    # Whole-state PUTs and PATCHes per client address per minute: each may carry a 64 KB state to
    # every watcher, and the API takes no token, so nothing else held one address to a rate.
    patterns_writes_per_min: int = Field(default=1200, ge=1)
    patterns_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    patterns_orphan_days: int = Field(default=90, ge=1)
    patterns_max_players: int = Field(default=10, ge=1, le=1000)
    patterns_places_per_user: int = Field(default=3, ge=1, le=1000)
    patterns_presence_ttl_s: int = Field(default=30, ge=5, le=3600)
    patterns_cursor_interval_ms: int = Field(default=100, ge=0, le=10_000)

    voice_blob_dir: Path | None = None  # default: DATA_DIR/blobs
    voice_blob_store: Literal["local", "s3"] = "local"
    voice_s3_bucket: str = ""
    voice_s3_endpoint_url: str = ""
    voice_s3_region: str = "us-east-1"
    voice_s3_prefix: str = "voice/"
    voice_s3_access_key_id: str = ""
    voice_s3_secret_access_key: str = ""
    voice_max_chunk_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=512 * 1024 * 1024)
    voice_max_chunks: int = Field(default=2000, ge=1)
    voice_max_chunk_ms: int = Field(default=60_000, ge=1000, le=3_600_000)
    voice_audio_link_ttl_s: int = Field(default=600, ge=10, le=86400)
    voice_recording_lease_ms: int = Field(default=6000, ge=500, le=600_000)
    voice_upload_deadline_s: float = Field(default=120.0, gt=0, le=3600)
    voice_upload_quota_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    voice_uploads_in_flight: int = Field(default=8, ge=1, le=1000)
    # How long after a session's close it still takes a chunk recorded before the close (0: none).
    voice_late_chunks_s: int = Field(default=86_400, ge=0, le=30 * 86_400)
    # Free bytes an audio upload must leave on the blob folder's disk (0: no reserve): guests'
    # daily quotas add up over addresses, and a full disk takes Redis's append-only file with it.
    voice_disk_reserve_bytes: int = Field(default=1024 * 1024 * 1024, ge=0)
    voice_materials_per_min: int = Field(default=60, ge=1)
    # Chat-bot commands per user per minute (``POST /voicebot/bot/command`` and Telegram's).
    voice_bot_commands_per_min: int = Field(default=60, ge=1)
    # Audio chunks stored per user and per guest address per UTC day, whatever their size.
    voice_chunks_per_day: int = Field(default=10_000, ge=1)
    # Chat-bot material bytes (kept in Redis) per user and guest address per quota day.
    voice_material_quota_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    voice_telegram_webhook_path: str = Field(default="", pattern=r"^[A-Za-z0-9_\-]{0,128}$")
    voice_telegram_secret_token: str = Field(default="", pattern=r"^[A-Za-z0-9_\-]{0,256}$")
    voice_telegram_bot_username: str = Field(default="", pattern=r"^@?[A-Za-z0-9_]{0,64}$")
    voice_telegram_users: str = ""
    # The bot's token (BotFather's ``<digits>:<secret>``): with it, voice notes and audio sent to
    # the bot are fetched through the Bot API and stored as audio chunks. A secret: never logged,
    # nor shown in a refused start (SecretStr).
    voice_telegram_bot_token: SecretStr = SecretStr("")
    # Where the Bot API answers (a local Bot API server, or a test's fake on a loopback port).
    voice_telegram_api_url: str = Field(default="https://api.telegram.org", pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    voice_transcribe_command: str = ""
    voice_transcribe_timeout_s: float = Field(default=120.0, gt=0, le=3600)

    # --- admin and operations ------------------------------------------------------------
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line, with request ids

    @property
    def kept_descriptors(self) -> int:
        """Descriptors kept from clients for the process's own use (``descriptor_reserve``)."""
        if self.descriptor_reserve is not None:
            return self.descriptor_reserve
        return self.redis_max_connections + 256

    @property
    def http_connections_per_address(self) -> int:
        """Plain HTTP connections one address may hold (``max_http_connections_per_address``).

        Unset: twice its Socket.IO connections and 100 more. A long-polling session holds its
        waiting GET and, while it sends, a POST; a WebSocket counts here until Socket.IO takes it.
        At a fixed 1,000, one NAT's 2,000 clients reconnecting at once got only 1,000 in (the
        handshakes waiting their turn held the rest of the places), and 1,000 polling clients
        found their next polls refused, dropping and reconnecting again."""
        if self.max_http_connections_per_address is not None:
            return self.max_http_connections_per_address
        return 2 * self.max_connections_per_address + 100

    @property
    def forwarded_hops(self) -> int:
        """Trusted proxies whose X-Forwarded-* hops are read: 0 when none is trusted."""
        return self.trusted_proxy_hops if self.trust_forwarded_for else 0

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, secret: str | None) -> str | None:
        # RFC 7518 3.2: an HS256 key of fewer than 256 bits can be guessed offline from any token.
        if secret is not None and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"is {len(secret.encode())} bytes; HS256 needs at least {MIN_JWT_SECRET_BYTES} "
                "(`openssl rand -hex 32` makes one)"
            )
        return secret

    @field_validator("data_dir", "web_dir", "voice_blob_dir", mode="before")
    @classmethod
    def _a_path(cls, value: object) -> object:
        # An empty value read as Path("") is the working directory: Redis's files, the JWT
        # secret and the lock landed wherever the server was started.
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty (unset it for the default)")
        return value

    @field_validator("web_dir")
    @classmethod
    def _pages_there(cls, folder: Path) -> Path:
        if not folder.is_dir():
            raise ValueError(f"{str(folder)!r} is not a folder of pages")
        return folder

    @field_validator("log_format", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        # As SESSIONHUB_LOG_LEVEL: "JSON" is json (the refusal of it was already printed as JSON).
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _a_log_level(cls, level: str) -> str:
        if level.upper() not in LOG_LEVELS:
            raise ValueError(f"{level!r} is not one of {', '.join(LOG_LEVELS)}")
        return level.upper()

    @field_validator("voice_telegram_users")
    @classmethod
    def _a_user_map(cls, spec: str) -> str:
        parse_user_map(spec)  # its ValueError names the malformed entry
        return spec

    @field_validator("voice_telegram_bot_token")
    @classmethod
    def _a_bot_token(cls, token: SecretStr) -> SecretStr:
        # The value itself is never part of the refusal: it is a secret.
        value = token.get_secret_value()
        if value and not _BOT_TOKEN.match(value):
            raise ValueError("is not a Telegram bot token (<digits>:<35 or so of A-Z a-z 0-9 _ ->, from @BotFather)")
        return token

    @field_validator("processors")
    @classmethod
    def _processors_found(cls, spec: str | None) -> str | None:
        # Imported when the server starts (jobs.processors.load_processors); a module that is not
        # there is said here, in one line, before anything starts.
        for entry in filter(None, (part.strip() for part in (spec or "").split(","))):
            module, sep, name = entry.partition(":")
            if not sep or not module or not name.isidentifier():
                raise ValueError(f"{entry!r} is not <module>:<function>")
            try:
                found = importlib.util.find_spec(module)
            except (ImportError, ValueError):
                found = None
            if found is None:
                raise ValueError(f"no module {module!r} to import (entry {entry!r})")
        return spec

    @field_validator("public_url", "voice_s3_endpoint_url")
    @classmethod
    def _absolute_url(cls, url: str) -> str:
        # Every link the server hands out starts with the public URL: a bare host or a path would
        # make them relative to whatever page shows them, which browsers then resolve somewhere
        # else. The S3 endpoint without a scheme was a boto3 traceback at start, and with a wrong
        # one (htp://) a node whose every upload failed; credentials in it would reach the log.
        if not url:
            return url
        parts = urlsplit(url)
        odd = parts.username is not None or parts.query or parts.fragment
        try:
            parts.port  # noqa: B018  # read for its check: a port that is no number or out of range raises
        except ValueError:
            odd = True
        if parts.scheme not in ("http", "https") or not parts.hostname or odd:
            # Said without what it holds before the host: credentials refused here must not be
            # printed by the refusal (audit verify40).
            shown = f"{parts.scheme}://***@{url.rsplit('@', 1)[1]}" if "@" in url else url
            raise ValueError(
                f"{shown!r} is not an absolute http(s) URL with a valid port and without credentials, query "
                "or fragment (e.g. https://hub.example.org)"
            )
        return url

    @model_validator(mode="after")
    def _keys_and_stores_given(self) -> Settings:
        if self.jwt_algorithm == "RS256" and not self.jwt_public_key:
            raise ValueError("SESSIONHUB_JWT_PUBLIC_KEY is required with SESSIONHUB_JWT_ALGORITHM=RS256")
        if self.voice_blob_store == "s3" and not self.voice_s3_bucket:
            raise ValueError("SESSIONHUB_VOICE_S3_BUCKET is required with SESSIONHUB_VOICE_BLOB_STORE=s3")
        return self

    @model_validator(mode="after")
    def _webhook_guarded(self) -> Settings:
        # The webhook acts as every mapped user (a /login link included) for whoever reaches it:
        # the path and the secret header are all that tell Telegram from anyone else.
        path, secret = self.voice_telegram_webhook_path, self.voice_telegram_secret_token
        if path and len(path) < MIN_WEBHOOK_SECRET_CHARS:
            raise ValueError(
                f"SESSIONHUB_VOICE_TELEGRAM_WEBHOOK_PATH must be at least {MIN_WEBHOOK_SECRET_CHARS} characters "
                "(an unguessable one: anyone who finds it acts as every mapped Telegram user)"
            )
        if path and len(secret) < MIN_WEBHOOK_SECRET_CHARS:
            raise ValueError(
                f"SESSIONHUB_VOICE_TELEGRAM_SECRET_TOKEN of at least {MIN_WEBHOOK_SECRET_CHARS} characters is "
                "required with SESSIONHUB_VOICE_TELEGRAM_WEBHOOK_PATH (pass it to setWebhook as secret_token)"
            )
        return self

    @model_validator(mode="after")
    def _listening_writes_beat_the_silence(self) -> Settings:
        # A throttled report writes nothing, so a player reporting all along writes only every
        # throttle plus its own period: with a throttle near the silence, the sweep took the
        # gaps between writes for a closed tab and cut a continuous play into pieces, most of it
        # lost (audit "listenhonest" F2). Half the silence leaves the player the other half.
        if self.listening_throttle_s * 2 > self.listening_silence_s:
            raise ValueError(
                f"SESSIONHUB_LISTENING_THROTTLE_S ({self.listening_throttle_s:g}) must be at most half of "
                f"SESSIONHUB_LISTENING_SILENCE_S ({self.listening_silence_s:g}): a player reporting all along "
                "writes only once per throttle, and a session without a write for the silence is ended"
            )
        return self

    @model_validator(mode="after")
    def _passkeys_can_work(self) -> Settings:
        # Checked with the settings, not when the app is built: `serve` then refuses in one line
        # before it starts anything (the embedded Redis included).
        if self.passkeys and self.public_url:
            RelyingParty.from_public_url(self.public_url)  # its ValueError names the setting and why
        return self
