"""Voice-capability configuration, built from settings once (``server.services``) and carried
by the voice repository, so that handlers and job processors read it from one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from storage.voice.blobs import S3Settings


@dataclass(frozen=True, slots=True)
class VoiceConfig:
    """Audio chunks, the FAB, the Telegram webhook and the transcription hook."""

    blob_dir: Path = Path("./var/blobs")  # the blobs (local store), or their upload's temporary files
    s3: S3Settings | None = None  # the S3 store, when SESSIONHUB_VOICE_BLOB_STORE=s3
    max_chunk_bytes: int = 10 * 1024 * 1024
    max_chunks: int = 2000
    max_chunk_ms: int = 60_000
    audio_link_ttl_s: int = 600
    # A recording whose recorder's connection (or node) is gone is paused within about this long.
    recording_lease_ms: int = 6000
    # A chunk's body must arrive within this long (a stalled upload holds a temp file).
    upload_deadline_s: float = 120.0
    # Audio bytes one user (and, for guests, one address) may store per rolling day.
    upload_quota_bytes: int = 1024 * 1024 * 1024
    # Chat-bot materials one user may attach per minute (their bytes count against the quota above).
    materials_per_min: int = 60
    # Chat-bot commands one user may send per minute (``POST /voicebot/bot/command``, Telegram).
    bot_commands_per_min: int = 60
    # ... and their bytes per user (and guest address) per quota day on a quota of their own:
    # they are kept in Redis's memory, where the audio quota's gigabyte a day was far too much.
    material_quota_bytes: int = 16 * 1024 * 1024
    # Chunks one user (and, for guests, one address) may store per UTC day, whatever their bytes.
    chunks_per_day: int = 10_000
    # How long after its close a session still takes a chunk recorded before the close (a phone
    # offline at the close, a recorder that heard of it late): storage/voice/chunks.py.
    late_chunks_s: int = 86_400
    # Uploads one user (or guest address) may have streaming at once on one node.
    uploads_in_flight: int = 8
    # Free bytes an upload must leave on the blob folder's disk (handlers/voice/disk_reserve.py).
    disk_reserve_bytes: int = 1024 * 1024 * 1024
    telegram_webhook_path: str = ""
    telegram_secret_token: str = ""
    # The bot's @username: commands addressed to another bot (``/done@Other``) are ignored.
    telegram_bot_username: str = ""
    # Telegram user id -> sessionhub user id.
    telegram_users: dict[str, str] = field(default_factory=dict)
    # The bot's token: with it, a voice note's or an audio's file is fetched through the Bot API
    # and stored as an audio chunk (jobs/telegram_fetch.py); without it, only its file_id is kept.
    # Never logged nor shown (repr=False): it is the bot.
    telegram_bot_token: str = field(default="", repr=False)
    telegram_api_url: str = "https://api.telegram.org"
    # A failed fetch (the network, Telegram's 5xx) is tried again after this * 2^(n-1) ms.
    telegram_fetch_backoff_ms: int = 1000
    transcribe_command: str = ""
    transcribe_timeout_s: float = 120.0


def parse_user_map(spec: str) -> dict[str, str]:
    """``"123:alice,456:bob"`` as ``{"123": "alice", "456": "bob"}``; malformed entries raise."""
    mapping: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        telegram_id, sep, user_id = entry.partition(":")
        if not sep or not telegram_id.strip().isdigit() or not user_id.strip():
            raise ValueError(f"telegram user map entry {entry!r} is not <telegram id>:<user id>")
        mapping[telegram_id.strip()] = user_id.strip()
    return mapping
