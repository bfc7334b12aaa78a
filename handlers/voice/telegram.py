"""A Telegram-compatible webhook: updates become the bot commands and materials of seed 002.

``POST /telegram/<SESSIONHUB_VOICE_TELEGRAM_WEBHOOK_PATH>`` (registered only when that path is
set; it is a secret of its own, as Telegram advises). The ``X-Telegram-Bot-Api-Secret-Token``
header must carry ``SESSIONHUB_VOICE_TELEGRAM_SECRET_TOKEN``, which the settings require with a
path (both at least 16 characters). Telegram users map to sessionhub users through
``SESSIONHUB_VOICE_TELEGRAM_USERS``; anyone else is told their account is not linked.

Replies go back in the webhook response as a ``sendMessage`` method call. Updates the bot has
nothing to say to (edits, callback queries, bots, service messages) get an empty 200: Telegram
must not retry them. The bot acts in private chats only: in a group, supergroup or channel a
command is told to write privately and anything else is ignored. Telegram adds fields to its
updates over time, so unknown fields are ignored here (types and sizes of the fields read are
still checked strictly).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import uuid
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from auth.claims import CLAIMS_ADAPTER, USER_ID_PATTERN, Claims, Permission
from handlers.context import Services
from handlers.http_common import add_secret_route, guarded, json_body
from handlers.idempotency import replay
from handlers.openapi_registry import JSON, TEXT, Auth, Header, Operation, document
from handlers.payloads import FILE_ID_PATTERN, Material, validate
from handlers.rate_limit import within
from handlers.auth_cookie import public_base
from handlers.voice.answers import TelegramReply
from handlers.voice.bot import BotRoutes, reply_link
from handlers.voice.fetch_order import FetchOrder, queue_fetch
from handlers.voice.telegram_files import BotFiles
from protocol.errors import CodedError, ErrorCode
from protocol.seen_text import shows_anything
from storage.idempotency import IdempotentAnswers, InProgress, StoredAnswer

MAX_UPDATE_BYTES = 256 * 1024
MESSAGES_PER_MIN = 60
CLAIMS_TTL_S = 300
TELEGRAM_PERMISSIONS = (Permission.READ_OWN, Permission.CREATE, Permission.UPDATE)

NOT_LINKED = (
    "Этот Telegram-аккаунт не связан с пользователем sessionhub. "  # noqa: RUF001 - Russian text
    "This Telegram account is not linked to a sessionhub user; ask the administrator to add it."
)
UNKNOWN_COMMAND = "Неизвестная команда. Commands: /start, /session [id | link], /done, /login"
# A group's members would all see (and could open) what the bot answers there: a sign-in link
# above all, which makes whoever opens it the person who asked.
PRIVATE_ONLY = "Напишите мне в личные сообщения. Message the bot privately: it acts in private chats only."
# Said once a minute at most to a chat over a rate limit (the update itself is answered 429 and
# redelivered by Telegram later): over it, the chat was silent, and a person sending a batch of
# voice notes saw some answered and the rest not, with no word of why (audit "telegram").
SLOW_DOWN = (
    "Слишком много сообщений за минуту: остальные будут добавлены чуть позже, ничего не потеряно. "
    "Too many messages this minute: the rest are added in a minute or so, nothing is lost."
)
UNSUPPORTED = "Этот тип сообщения не поддерживается. Send text, a voice message, a photo or a document."
REFUSALS = {
    ErrorCode.SESSION_NOT_FOUND: "Сессия не найдена. Session not found.",
    ErrorCode.FORBIDDEN: "Нет доступа к этой сессии. You have no access to this session.",
    ErrorCode.INVALID_SESSION_ID: "Это не ссылка на сессию. That is not a session id or link.",
    ErrorCode.INVALID_STATE: "Сессия закрыта. The session is closed.",
    ErrorCode.LIMIT_REACHED: (
        "Сессия заполнена; начните новую: /start. The session is full; start a new one with /start."
    ),
}


class _Telegram(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, populate_by_name=True)


class TgUser(_Telegram):
    id: int
    is_bot: bool = False


class TgChat(_Telegram):
    id: int
    # "private", "group", "supergroup" or "channel" (Telegram always sends it; others may come).
    type: str = Field(max_length=32)


# What a material keeps of a caption (handlers.payloads.Material's text). Captions are not bounded
# here: Telegram Premium allows longer ones than 1024 characters, and an update refused 400 is
# redelivered until Telegram gives up, the material lost (the body's 256 KiB bound them).
CAPTION_CHARS = 4096
# A material's duration_s range (Material): a longer audio (Telegram sends audio files of days)
# is taken without one, as one without a duration is.
MAX_DURATION_S = 86400


class TgFile(_Telegram):
    """A voice, audio or document attachment."""

    file_id: str = Field(pattern=FILE_ID_PATTERN)
    # The same for every bot and every copy of the file (file_id is not): what a fetch is known by.
    file_unique_id: str = Field(default="", max_length=256)
    duration: int | None = None


class TgEntity(_Telegram):
    """A marked span of a message's text (``bot_command``, ``url``, ``bold``, ...)."""

    type: str = Field(max_length=64)
    offset: int
    length: int


class TgPhotoSize(_Telegram):
    file_id: str = Field(pattern=FILE_ID_PATTERN)
    width: int = 0
    height: int = 0


class TgReplied(_Telegram):
    text: str | None = Field(default=None, max_length=4096)
    caption: str | None = None


class TgMessage(_Telegram):
    message_id: int
    sender: TgUser | None = Field(default=None, alias="from")
    chat: TgChat
    text: str | None = Field(default=None, max_length=4096)
    # Not bounded in count: a long text may mark hundreds of spans, and an update refused 400 is
    # redelivered until Telegram gives up (the body's 256 KiB bound them).
    entities: list[TgEntity] | None = None
    caption: str | None = None
    voice: TgFile | None = None
    audio: TgFile | None = None
    document: TgFile | None = None
    photo: list[TgPhotoSize] | None = Field(default=None, max_length=32)
    reply_to_message: TgReplied | None = None


class TgUpdate(_Telegram):
    update_id: int
    message: TgMessage | None = None
    edited_message: TgMessage | None = None


# Registered only when SESSIONHUB_VOICE_TELEGRAM_WEBHOOK_PATH is set; the path is a secret, so
# the document names it as a parameter.
OPERATION = Operation(
    "post",
    "/telegram/{webhook_path}",
    "A Telegram update; the reply is a sendMessage call in the body (empty for ignored updates)",
    body=TgUpdate,
    headers=(Header("X-Telegram-Bot-Api-Secret-Token", "SESSIONHUB_VOICE_TELEGRAM_SECRET_TOKEN (401 without it)"),),
    auth=Auth.NONE,
    statuses=(400, 401, 413, 429, 503),
    ok_types=(JSON, TEXT),
    response=TelegramReply,
    tag="voice",
)


# The fields of Telegram's service messages (members joining, pins, title changes, ...): nothing
# a person sent the bot, so nothing to store or answer.
SERVICE_FIELDS = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "channel_chat_created",
        "message_auto_delete_timer_changed",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "pinned_message",
        "users_shared",
        "chat_shared",
        "write_access_allowed",
        "proximity_alert_triggered",
        "boost_added",
        "chat_background_set",
        "forum_topic_created",
        "forum_topic_edited",
        "forum_topic_closed",
        "forum_topic_reopened",
        "general_forum_topic_hidden",
        "general_forum_topic_unhidden",
        "video_chat_scheduled",
        "video_chat_started",
        "video_chat_ended",
        "video_chat_participants_invited",
    }
)

# Telegram update ids are the bot's own sequence: one owner for all of them.
TELEGRAM_OWNER = "telegram"
_ADDRESSED = re.compile(r"^/[A-Za-z0-9_]+@([A-Za-z0-9_]+)")
# A command's shape as Telegram marks one (a ``bot_command`` entity): for a sender that gives no
# entities. "/etc/hosts …", "/ 2 = …" and "/done." are no commands but notes.
_COMMAND_TOKEN = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@\w+)?(?:\s|$)")
# The ids of what one update stores (its material, the session it may make): a redelivery of an
# update whose first handling stored them and then failed stores nothing twice.
log = logging.getLogger(__name__)
_UPDATE_IDS = uuid.UUID("3f1c9a52-7e64-4d0b-8a2f-5b9e1c7d3a40")


def _nothing() -> web.Response:
    # Empty, but typed: an answer without a Content-Type leaves a client guessing.
    return web.Response(status=200, text="")


class TelegramWebhook:
    """Maps one Telegram update onto :class:`BotRoutes` for the mapped user."""

    def __init__(self, services: Services, bot: BotRoutes) -> None:
        self._s = services
        self._bot = bot
        self._config = services.voice.config
        self._answers = IdempotentAnswers(services.redis, services.keys)
        self._saying: set[asyncio.Task[None]] = set()  # words to chats under way (_slow_down)
        for user_id in self._config.telegram_users.values():
            # A mapped id that could never be a token's subject is a configuration error: say so now.
            if not re.match(USER_ID_PATTERN, user_id):
                raise ValueError(f"SESSIONHUB_VOICE_TELEGRAM_USERS: {user_id!r} is not a valid user id")

    def register(self, app: web.Application) -> None:
        """Attach the webhook route when a webhook path is configured."""
        if self._config.telegram_webhook_path:
            path = f"/telegram/{self._config.telegram_webhook_path}"
            add_secret_route(app, path, OPERATION.path, guarded(self.update))
            document(app, (OPERATION,))

    def _check_secret(self, request: web.Request) -> None:
        # Required with the webhook (server/settings.py): never open to whoever finds the path.
        expected = self._config.telegram_secret_token
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise CodedError(ErrorCode.UNAUTHORIZED, "bad or missing X-Telegram-Bot-Api-Secret-Token")

    async def update(self, request: web.Request) -> web.Response:
        """Handle one update; the reply, if any, is the response body."""
        self._check_secret(request)
        raw = await json_body(request, max_bytes=MAX_UPDATE_BYTES)
        update = validate(TgUpdate, raw)
        message = update.message  # edits are not replayed: a material is never changed after the fact
        if message is None or message.sender is None or message.sender.is_bot or self._for_another_bot(message):
            return _nothing()
        if SERVICE_FIELDS & raw["message"].keys():
            return _nothing()
        if message.chat.type != "private":
            return _in_group(message)
        # Telegram redelivers an update it got no answer for (and a proxy may deliver one twice
        # at once): one update_id is handled once; a repeat gets the first reply, or nothing
        # while the first is still being handled.
        update_id = str(update.update_id)
        try:
            stored = await self._answers.claim("telegram", TELEGRAM_OWNER, update_id)
        except InProgress:
            return _nothing()
        if stored is not None:
            return replay(stored)
        try:
            async with self._answers.running("telegram", TELEGRAM_OWNER, update_id):
                # The links the bot writes start with the public URL, else with the origin
                # Telegram addressed the webhook to: this server as the world reaches it.
                base = public_base(request, self._s.public_url)
                text = (await self._reply(message, message.sender, base, update_id))[:4096]
        except Exception as exc:
            with contextlib.suppress(Exception):  # the claim expires on its own if Redis is gone
                await self._answers.release("telegram", TELEGRAM_OWNER, update_id)
            if isinstance(exc, CodedError) and exc.code is ErrorCode.RATE_LIMITED:
                self._slow_down(message.chat.id)
            raise
        reply = TelegramReply(
            method="sendMessage", chat_id=message.chat.id, text=text, reply_to_message_id=message.message_id
        )
        response = web.json_response(reply.wire())
        body = response.body
        assert isinstance(body, bytes)
        await self._answers.store(
            "telegram", TELEGRAM_OWNER, update_id, StoredAnswer(200, "application/json", body.decode())
        )
        return response

    def _slow_down(self, chat_id: int) -> None:
        """Tell the chat, once a minute at most and with the bot's token only, that its updates
        over the limit come later (:data:`SLOW_DOWN`); sent beside the 429, not before it."""
        token = self._config.telegram_bot_token
        if not token:
            return
        files = BotFiles(api_url=self._config.telegram_api_url, token=token)

        async def say() -> None:
            try:
                if not await self._s.limiter.hit("telegram_slow_down", str(chat_id), limit=1, window_s=60):
                    return
                async with aiohttp.ClientSession(trust_env=False) as http:
                    if not await files.tell(http, chat_id, SLOW_DOWN):
                        log.info("the rate limit's word to a Telegram chat was not taken")
            except Exception as exc:  # a word unsaid (Redis away) changes nothing stored
                log.info("the rate limit's word to a Telegram chat was not sent: %s", type(exc).__name__)

        task = asyncio.get_running_loop().create_task(say())
        self._saying.add(task)
        task.add_done_callback(self._saying.discard)

    def _for_another_bot(self, message: TgMessage) -> bool:
        """A command addressed ``/done@OtherBot`` (a group with several bots) is not ours to act on."""
        name = self._config.telegram_bot_username
        if not _is_command(message):
            return False
        addressed = _ADDRESSED.match((message.text or "").lstrip())
        return bool(name and addressed and addressed.group(1).lower() != name.lower().lstrip("@"))

    async def _reply(self, message: TgMessage, sender: TgUser, base: str, update_id: str) -> str:
        user_id = self._config.telegram_users.get(str(sender.id))
        if user_id is None:
            return NOT_LINKED
        # Past it, rate_limited goes out as 429 with Retry-After (not a chat reply, which would be
        # stored as the update's answer and replayed to Telegram's redeliveries: the message lost).
        message_limit = f"at most {MESSAGES_PER_MIN} messages a minute"
        await within(
            self._s.limiter, "telegram", str(sender.id), limit=MESSAGES_PER_MIN, window_s=60, message=message_limit
        )
        claims = self._claims(user_id, sender.id)
        # Every update comes from Telegram's servers: the per-address create limit counts each
        # Telegram user as one client, not all of them as one.
        address = f"telegram:{sender.id}"
        try:
            if _is_command(message):
                return await self._command(claims, message, address, base, update_id)
            material = _material(message)
            if material is None:
                return UNSUPPORTED
            added_at = self._s.clock.now_ms()
            ids = (_update_id(update_id, "material"), _update_id(update_id, "session"))
            fetching = bool((message.voice or message.audio) and self._config.telegram_bot_token)
            body, _ = await self._bot.attach_material(
                claims, material, address=address, ids=ids, added_at=added_at, fetching=fetching
            )
            await self._fetch_later(claims, message, body, added_at)
            verb = "Новая сессия" if body["created_session"] else "Добавлено в сессию"
            return f"{verb}: {reply_link(base, body['session_id'])}"
        except CodedError as exc:
            if exc.code is ErrorCode.RATE_LIMITED:
                raise  # answered 429: Telegram delivers the update again later
            return REFUSALS.get(exc.code, f"Ошибка / error: {exc.message}")

    async def _fetch_later(self, claims: Claims, message: TgMessage, body: dict[str, Any], added_at: int) -> None:
        """With a bot token, queue the fetch of a voice note's or an audio's file (it becomes an
        audio chunk: jobs/telegram_fetch.py); without one, the material keeps its file_id alone."""
        attached = message.voice or message.audio
        if attached is None or not self._config.telegram_bot_token:
            return
        order = FetchOrder(
            material_id=str(body["material_id"]),
            file_id=attached.file_id,
            file_unique_id=attached.file_unique_id,
            added_at=added_at,
            duration_s=float(attached.duration or 0),
            index=int(body["count"]) - 1,
        )
        await queue_fetch(self._s, claims, str(body["session_id"]), order)

    def _claims(self, user_id: str, telegram_id: int) -> Claims:
        # Validated like a token's claims: a malformed mapped user id fails here, not in Redis.
        return CLAIMS_ADAPTER.validate_python(
            {
                "sub": user_id,
                "exp": int(self._s.clock.now_s()) + CLAIMS_TTL_S,
                "telegram_user_id": str(telegram_id),
                "perms": TELEGRAM_PERMISSIONS,
            }
        )

    async def _command(self, claims: Claims, message: TgMessage, address: str, base: str, update_id: str) -> str:
        replied = message.reply_to_message
        quoted = (replied.text or (replied.caption or "")[:CAPTION_CHARS]) if replied else None
        try:
            result: dict[str, Any] = await self._bot.run_command(
                claims,
                message.text or "",
                quoted,
                address=address,
                base_url=base,
                # A redelivered update whose first handling failed after /done closed the
                # session is answered as that close, not counted again.
                request_id=f"telegram-{update_id}",
            )
        except CodedError as exc:
            if exc.code is ErrorCode.INVALID_PAYLOAD:
                return UNKNOWN_COMMAND
            raise
        return str(result["reply"])


def _in_group(message: TgMessage) -> web.Response:
    """A group, supergroup or channel: a command is told to come to a private chat (nothing runs,
    so no sign-in link, no session name, no reply naming an account is ever posted where every
    member reads it); any other message is not for the bot."""
    if not _is_command(message):
        return _nothing()
    reply = TelegramReply(
        method="sendMessage", chat_id=message.chat.id, text=PRIVATE_ONLY, reply_to_message_id=message.message_id
    )
    return web.json_response(reply.wire())


def _is_command(message: TgMessage) -> bool:
    """A bot command: Telegram marks one with a ``bot_command`` entity at offset 0; a sender that
    gives no entities, by :data:`_COMMAND_TOKEN`'s shape. Any other text is a note, "/" or not."""
    text = message.text
    if text is None:
        return False
    if message.entities is not None:
        return any(e.type == "bot_command" and e.offset == 0 for e in message.entities)
    return bool(_COMMAND_TOKEN.match(text))


def _update_id(update_id: str, what: str) -> str:
    return str(uuid.uuid5(_UPDATE_IDS, f"{what}|{update_id}"))


def _material(message: TgMessage) -> Material | None:
    """The material a message carries, or None for kinds the bot does not take."""
    caption = (message.caption or "")[:CAPTION_CHARS]
    if message.voice or message.audio:
        attached = message.voice or message.audio
        assert attached is not None
        duration_s = attached.duration if attached.duration and 0 < attached.duration <= MAX_DURATION_S else 0
        return validate(
            Material,
            {"kind": "voice", "file_id": attached.file_id, "duration_s": float(duration_s), "text": caption},
        )
    if message.photo:
        largest = max(message.photo, key=lambda p: p.width * p.height)
        return validate(Material, {"kind": "photo", "file_id": largest.file_id, "text": caption})
    if message.document:
        return validate(Material, {"kind": "document", "file_id": message.document.file_id, "text": caption})
    if message.text and shows_anything(message.text):  # invisible characters alone: no text
        return validate(Material, {"kind": "text", "text": message.text})
    return None
