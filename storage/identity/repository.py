"""Identities that outlive a token: profiles, one refresh family per device, revocations.

A device holds a refresh credential ``<family id>.<secret>[.<previous secret>]`` (an HttpOnly
cookie); Redis keeps only the secrets' hashes. Every use rotates the secret
(``identity/rotate.lua``); presenting a rotated-away secret again means the credential was
copied, and the family is revoked. The credential a rotation hands out carries the secret it
replaced: a Redis that comes back without that rotation (a crash losing its last second, a
failover to a replica it had not reached) still has the previous secret as the current one, and
the rotation is then made again from it, instead of refusing the device for good. A
revoked family's id stays in :meth:`Keys.revoked_families` for as long as an access token
minted from it may live, so that every node refuses those tokens too.

A family's lifetime is judged on the server's clock (``storage.clock``, the one that mints
tokens and runs guest retention): its record keeps ``expires_ms``, set with each extension of its
TTL, and the rotation refuses it past that as the TTL would (``missing``). The TTL stays, as the
bound on memory. A record of a previous release, without the field, lives by its TTL alone, and
so does one a previous release's node rotated after the field was written (a rolling upgrade, a
rollback: that node extends the TTL and writes ``last_used_ms``, not ``expires_ms``): the field
is judged only while ``kept_ms``, when it was written, is not before ``last_used_ms``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from protocol.seen_text import cut_seen
from storage.clock import Clock
from storage.keys import Keys
from storage.scripts import plain_script

log = logging.getLogger(__name__)

FAMILY_ID = re.compile(r"^[0-9a-f]{24}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{40,64}$")
MAX_NAME_CHARS = 60
# What a user is called until they choose a name: it tells nobody apart, so attribution skips it.
DEFAULT_NAME = "Guest"
# How the ids of guests (POST /api/auth/guest) begin: one whose profile has gone is still one.
GUEST_PREFIX = "guest-"
# A profile's mark: every device of the identity was extended as it is kept now (see touch).
DEVICES_KEPT = "devices_kept"


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """How long identities and credentials live."""

    refresh_ttl_s: int  # a device not seen for this long must sign in again
    # A guest not saved is forgotten this long after its last visit, owning or not (what it owned
    # goes with it: handlers/guest_retention.py); any other identity, if it owns and saved nothing.
    guest_idle_s: int
    access_ttl_s: int  # the longest an access token may live (how long a revocation is remembered)
    revocation_poll_s: float = 2.0  # how often each node reads the revoked devices
    # How long after a rotation the secret it replaced is still answered, without a second
    # rotation: two tabs refreshing at once, and a refresh whose answer the network lost, sent
    # again (it is given the rotation's credential again: see Identities.rotation_key).
    rotation_grace_s: float = 60.0
    spent_max: int = 64
    max_devices: int = 50
    # How long a one-time link lives (SESSIONHUB_LOGIN_LINK_TTL_S): a sign-out everywhere is kept
    # that long, so that a link made before it is refused.
    link_ttl_s: int = 600


# The revocation log keeps about this many entries (each a family id and a time): a node that
# falls further behind (down for a while) reads the whole set instead.
REVOKED_LOG_MAX = 10_000
# Entries read from the log per round trip.
REVOKED_READ_BATCH = 1000
# Rotations a refresh credential may be ahead of the one Redis holds and still be brought up to it
# (Identities._caught_up): a day of hourly rotations many times over; a secret this server did not
# make costs this many HMACs to refuse.
CATCH_UP_MAX = 1000
# The streams a user clipped in looked at, at most, to find one still there (Identities.keep).
CLIPPED_CHECKED = 100
# How an entry of the revoked set and log that is a user's "sign out everywhere" begins (a family
# id is hex): ``u:<user id>``. A node of the release before takes it for a family id no token
# carries, and passes it by.
SIGNED_OUT_MARK = "u:"
# How an entry that withdraws a user's admin permission begins: ``a:<when, s>:<user id>``. The
# user's device tokens issued before then no longer carry it (auth.tokens). Passed by as above.
ADMIN_WITHDRAWN_MARK = "a:"


def _new_family(
    user_id: str, secret: str, *, label: str, grant: dict[str, Any], now_ms: int, ttl_s: int
) -> dict[Any, Any]:
    """The fields of a device (refresh family) opened now with its first ``secret``."""
    return {
        "user": user_id,
        "secret": _digest(secret),
        "created_ms": now_ms,
        "last_used_ms": now_ms,
        "rotated_ms": now_ms,
        "label": label[:120],
        "grant": json.dumps(grant),
        "expires_ms": now_ms + ttl_s * 1000,
        "kept_ms": now_ms,
    }


def signed_out_entry(user_id: str) -> str:
    """The revoked set's entry saying that ``user_id`` signed out everywhere: one per user (a
    second sign-out moves its end), so the set holds no more of them than there are users."""
    return f"{SIGNED_OUT_MARK}{user_id}"


def parse_signed_out(entry: str) -> str | None:
    """The user id of a :func:`signed_out_entry`; None for a family id (hex, never ``u:``)."""
    return entry[len(SIGNED_OUT_MARK) :] or None if entry.startswith(SIGNED_OUT_MARK) else None


def admin_withdrawn_entry(user_id: str, at_s: int) -> str:
    """The revoked set's entry saying that ``user_id`` lost the admin permission at ``at_s``."""
    return f"{ADMIN_WITHDRAWN_MARK}{at_s}:{user_id}"


def parse_admin_withdrawn(entry: str) -> tuple[str, int] | None:
    """The user id and time (s) of an :func:`admin_withdrawn_entry`; None for any other entry."""
    if not entry.startswith(ADMIN_WITHDRAWN_MARK):
        return None
    at_s, _, user_id = entry[len(ADMIN_WITHDRAWN_MARK) :].partition(":")
    return (user_id, int(at_s)) if at_s.isdigit() and user_id else None


@dataclass(frozen=True, slots=True)
class Position:
    """Where a node stands in the revocation log: its epoch, and the number and id of the last
    entry read (the id tells an entry from another one numbered the same after a failover)."""

    epoch: str
    seq: int
    last_id: str


@dataclass(frozen=True, slots=True)
class Revocations:
    """Revoked families (id -> until when, ms) as of ``position``."""

    position: Position
    until: dict[str, int]


@dataclass(frozen=True, slots=True)
class Profile:
    """Who a user is, as the pages show it."""

    user_id: str
    name: str
    guest: bool
    saved: bool
    admin: bool
    created_ms: int


@dataclass(frozen=True, slots=True)
class Device:
    """One signed-in device (a refresh family)."""

    family_id: str
    label: str
    created_ms: int
    last_used_ms: int
    grant: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rotation:
    """What presenting a refresh credential did.

    ``outcome``: ``rotated`` (``credential`` is the new one), ``concurrent`` (a second tab
    within the grace time: no new credential), ``reused`` (the family is now revoked),
    ``revoked``, ``invalid``, ``missing``, ``malformed``.
    """

    outcome: str
    user_id: str = ""
    family_id: str = ""
    credential: str | None = None
    grant: dict[str, Any] | None = None


def _past(family: dict[str, str], now_ms: int) -> bool:
    """Whether a family record is past its time on the server's clock, as rotate.lua judges it:
    by ``expires_ms`` unless a use came after it was written (a previous release's node, which
    extends the TTL alone), or there is none (its TTL decides)."""
    expires_ms, kept_ms = family.get("expires_ms"), family.get("kept_ms")
    if not expires_ms or not kept_ms or int(kept_ms) < int(family.get("last_used_ms") or 0):
        return False
    return int(expires_ms) <= now_ms


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_credential(credential: str) -> tuple[str, str, str | None] | None:
    """``(family id, secret, previous secret or None)`` of a well-formed credential, else None."""
    family_id, _, secrets_part = credential.partition(".")
    secret, _, previous = secrets_part.partition(".")
    if not FAMILY_ID.match(family_id) or not _SECRET.match(secret) or (previous and not _SECRET.match(previous)):
        return None
    return family_id, secret, previous or None


class Identities:
    """Profiles, device families and revocations in Redis."""

    def __init__(
        self, *, redis: Redis, keys: Keys, clock: Clock, config: IdentityConfig, rotation_key: bytes | None = None
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self.config = config
        # With a key, a rotation's new secret is derived from the one it replaces (an HMAC only
        # this server can make), so the secret replaced, presented again within the grace time,
        # is answered with the very credential its rotation made: the second of two racing tabs,
        # or a refresh whose answer was lost. Without one, secrets are random and such a
        # presentation gets a token but no credential.
        self._rotation_key = rotation_key
        self._rotate = plain_script(redis, "identity/rotate.lua")
        self._revoke = plain_script(redis, "identity/revoke.lua")
        self._catch_up = plain_script(redis, "identity/catch_up.lua")
        self._family_open = plain_script(redis, "identity/family_open.lua")
        self._family_keep = plain_script(redis, "identity/family_keep.lua")
        self._rename = plain_script(redis, "identity/rename.lua")
        self._revoked_add = plain_script(redis, "identity/revoked_add.lua")
        self._revoked_read = plain_script(redis, "identity/revoked_read.lua")

    # --- profiles --------------------------------------------------------------------
    async def create_user(self, user_id: str, *, name: str = "Guest", guest: bool = True) -> Profile:
        """Record a new user (kept ``guest_idle_s`` until it owns or saves something)."""
        key = self._keys.user_profile(user_id)
        now_ms = self._clock.now_ms()
        fields: dict[Any, Any] = {"name": name, "guest": int(guest), "saved": 0, "admin": 0, "created_ms": now_ms}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self.config.guest_idle_s)
            await pipe.execute()
        return Profile(user_id, name, guest, False, False, now_ms)

    async def profile(self, user_id: str) -> Profile:
        """The user's profile; a user known only from a token gets a default one."""
        raw = cast(dict[str, str], await self._redis.hgetall(self._keys.user_profile(user_id)))
        if not raw:
            return Profile(user_id, "", guest=user_id.startswith(GUEST_PREFIX), saved=False, admin=False, created_ms=0)
        return Profile(
            user_id=user_id,
            name=raw.get("name", ""),
            guest=raw.get("guest") == "1",
            saved=raw.get("saved") == "1",
            admin=raw.get("admin") == "1",
            created_ms=int(raw.get("created_ms") or 0),
        )

    async def names(self, user_ids: Iterable[str]) -> dict[str, str]:
        """The chosen display names of ``user_ids`` (one round trip for all of them); a user with
        no profile, no name or the default one is left out."""
        wanted = sorted(set(user_ids))
        if not wanted:
            return {}
        # Non-transactional: the profiles live on as many slots as there are users.
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in wanted:
                pipe.hget(self._keys.user_profile(user_id), "name")
            found = await pipe.execute()
        return {
            user_id: str(name) for user_id, name in zip(wanted, found, strict=True) if name and name != DEFAULT_NAME
        }

    async def rename(self, user_id: str, name: str) -> None:
        """Set the display name (kept as long as the profile is), announced to the user's
        connections that follow the user's channel (a ``user_renamed`` event) in the same step."""
        keys = [self._keys.user_profile(user_id)]
        kept = cut_seen(name, MAX_NAME_CHARS)  # whole characters: never half a flag or a syllable
        await self._rename(keys=keys, args=[kept, user_id, self._keys.active_session_channel(user_id)])
        await self.keep(user_id)

    async def known(self, user_id: str) -> bool:
        """Whether the user has a profile here (signed in, as a guest or otherwise, at least once)."""
        return bool(await self._redis.exists(self._keys.user_profile(user_id)))

    async def admin_granted(self, user_id: str) -> bool:
        """Whether the user holds the admin permission now (``sessionhub admin grant``): a token
        minted before a revoke still says it until it expires."""
        return bool(await self._redis.hget(self._keys.user_profile(user_id), "admin") == "1")

    async def set_admin(self, user_id: str, admin: bool) -> None:
        """Grant or withdraw the admin permission; tokens carry it from their next refresh.

        A withdrawal changes only a profile that exists: a revoke of a mistyped id made a profile
        kept for good (audit "verify39b")."""
        key = self._keys.user_profile(user_id)
        if not admin:
            if await self._redis.exists(key):  # one expiring in between is withdrawn by its expiry
                await self._redis.hset(key, "admin", 0)
                await self._withdraw_admin(user_id)
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "admin", int(admin))
            pipe.hsetnx(key, "created_ms", self._clock.now_ms())
            pipe.hsetnx(key, "saved", 1)
            pipe.persist(key)  # an operator's grant is not a guest's passing visit
            await pipe.execute()

    async def _withdraw_admin(self, user_id: str) -> None:
        """Tell every node that ``user_id``'s device tokens issued until now lose the admin
        permission: without it they kept it (``read_all`` on every session and history, a
        stream's moderation) until they expired, up to ``access_ttl_s`` (audit "operatorday").
        Remembered as long as such a token lives, as a sign-out everywhere is."""
        now_ms = self._clock.now_ms()
        until_ms = now_ms + self._user_mark_lasting_ms()
        await self._log_revoked([admin_withdrawn_entry(user_id, now_ms // 1000)], until_ms=until_ms, before_log=False)

    async def mark_saved(self, user_id: str, saved: bool) -> None:
        """Mark the identity saved (it holds a passkey) or not; a saved one never expires idle.

        Every device of the user's is kept as the identity now is (:meth:`owns_now`): a guest's
        devices kept its idle time from their last refresh, so the laptop a passkey was saved on
        was signed out 30 days later (and told its things were gone) though the identity lived."""
        key = self._keys.user_profile(user_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "saved", int(saved))
            pipe.hset(key, DEVICES_KEPT, 1)  # owns_now below (see touch)
            pipe.hsetnx(key, "created_ms", self._clock.now_ms())
            pipe.hsetnx(key, "name", "Guest")
            await pipe.execute()
        await self.owns_now(user_id)

    async def keep(self, user_id: str) -> int:
        """Extend the user's identity keys; their lifetime (s). A visit of the user's.

        An account (or a guest that saved a passkey, or was made an admin) that owns a session,
        a history, a clip or a saved credential lives as long as its devices are used
        (``refresh_ttl_s``). Any other guest lasts ``guest_idle_s`` after its last visit, owning
        something or not: one that owns something is listed in :meth:`Keys.guests_owning` with
        this visit's time, and what it owned is deleted once it is gone
        (``handlers.guest_retention``), so a passing visitor costs bounded storage.
        """
        k = self._keys
        owned = await self._redis.exists(
            k.user_recent(user_id),
            k.user_sessions(user_id),
            k.user_streams(user_id),
            k.listening_history(user_id),
        ) or await self._clipped_live(user_id)
        marks: Any = await self._redis.hmget(k.user_profile(user_id), ["saved", "admin", "guest"])
        saved, admin, guest = (mark == "1" for mark in marks)
        kept = saved or admin
        passing = not kept and (guest or user_id.startswith(GUEST_PREFIX))
        ttl_s = self.config.refresh_ttl_s if (owned or kept) and not passing else self.config.guest_idle_s
        # Non-transactional: the index of guests is in a slot of its own.
        async with self._redis.pipeline(transaction=False) as pipe:
            if (owned or kept) and not passing:
                pipe.persist(k.user_profile(user_id))
            else:
                pipe.expire(k.user_profile(user_id), ttl_s)
            pipe.expire(k.user_families(user_id), ttl_s)
            if passing and owned:
                pipe.zadd(k.guests_owning(), {user_id: self._clock.now_ms()})
            elif kept:
                pipe.zrem(k.guests_owning(), user_id)  # saved now: what it owns is kept with it
            await pipe.execute()
        return ttl_s

    async def _clipped_live(self, user_id: str) -> bool:
        """Whether the user has clips in a stream session that still exists. The index of the
        streams they clipped in is written at a first clip and was never pruned: a stream
        deleted (by its streamer, an operator, the guest sweep) kept an account that owned
        nothing else "owning" for good, its devices kept months instead of the idle time (audit
        "retention"). Looked at only when nothing else is owned; its gone streams are dropped."""
        key = self._keys.user_clipped(user_id)
        ids = cast(list[str], await self._redis.zrange(key, 0, CLIPPED_CHECKED - 1))
        if not ids:
            return False
        async with self._redis.pipeline(transaction=False) as pipe:  # each stream in its own slot
            for session_id in ids:
                pipe.exists(self._keys.session(session_id))
            found = await pipe.execute()
        gone = [session_id for session_id, there in zip(ids, found, strict=True) if not there]
        if gone:
            await self._redis.zrem(key, *gone)
        return len(gone) < len(ids) or bool(await self._redis.zcard(key))

    async def owns_now(self, user_id: str) -> None:
        """``user_id`` came to own something (a session, a clip): keep the identity and every
        device of theirs as :meth:`keep` says, now (an account's as long as an owner's; a
        guest's for its idle time from now, and listed as owning). A guest who made something
        and left at once would otherwise have their devices' credentials run out after the
        guest idle time set at their last refresh, before what it made goes."""
        ttl_s = await self.keep(user_id)
        families: Any = await self._redis.zrange(self._keys.user_families(user_id), 0, -1)
        if not families:
            return
        # Sent together (up to max_devices): one round trip's wait, not one per device; a script
        # each, since a cluster pipeline cannot carry scripts and each family has its own slot.
        await asyncio.gather(*(self._keep_family(family_id, ttl_s) for family_id in families))

    # --- device families -------------------------------------------------------------
    async def first_opening_by(self, token: str, *, ttl_s: int) -> bool:
        """True the first time ``token`` (a guest token without a device) asks to open one; False
        after. One token opens one device: a script repeating the refresh of one token would
        otherwise open a device record (and later a revoked entry) each time."""
        token_hash = hashlib.sha256(token.encode()).hexdigest()
        return bool(await self._redis.set(self._keys.device_opened_by(token_hash), "1", nx=True, ex=max(ttl_s, 1)))

    @staticmethod
    def new_family_id() -> str:
        """A fresh device (family) id, for a device opened under an id chosen beforehand."""
        return secrets.token_hex(12)

    async def open_family(
        self, user_id: str, *, label: str, grant: dict[str, Any], family_id: str | None = None
    ) -> tuple[str, str]:
        """A new device for ``user_id``: its family id and its first credential.

        ``grant`` (perms, guest, telegram_user_id) is what tokens minted from it may carry. With
        a ``family_id`` chosen beforehand (a link's redemption, which a page may send again), the
        device is opened once: opened again, nothing is written and the same first credential is
        answered (derived from the id with the rotation key), so every answer is that device;
        an empty credential once the device has rotated it (its browser had the first answer and
        keeps the cookie it holds now).
        """
        if family_id is not None:
            return await self._open_chosen(user_id, family_id, label=label, grant=grant)
        family_id, secret = secrets.token_hex(12), secrets.token_urlsafe(32)
        now_ms = self._clock.now_ms()
        ttl_s = await self.keep(user_id)
        fields = _new_family(user_id, secret, label=label, grant=grant, now_ms=now_ms, ttl_s=ttl_s)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(self._keys.family(family_id), mapping=fields)
            pipe.expire(self._keys.family(family_id), ttl_s)
            pipe.zadd(self._keys.user_families(user_id), {family_id: now_ms})
            pipe.expire(self._keys.user_families(user_id), ttl_s)
            await pipe.execute()
        await self._cap_devices(user_id)
        return family_id, f"{family_id}.{secret}"

    async def _open_chosen(self, user_id: str, family_id: str, *, label: str, grant: dict[str, Any]) -> tuple[str, str]:
        if not FAMILY_ID.match(family_id):
            raise ValueError(f"not a family id: {family_id!r}")
        secret = self._first_secret(family_id)
        now_ms = self._clock.now_ms()
        ttl_s = await self.keep(user_id)
        fields = _new_family(user_id, secret, label=label, grant=grant, now_ms=now_ms, ttl_s=ttl_s)
        flat = [part for pair in fields.items() for part in pair]
        opened = await self._family_open(keys=[self._keys.family(family_id)], args=[ttl_s, fields["secret"], *flat])
        if opened == -1:  # opened and used since: not the lost first answer's page
            return family_id, ""
        if opened == 1:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zadd(self._keys.user_families(user_id), {family_id: now_ms})
                pipe.expire(self._keys.user_families(user_id), ttl_s)
                await pipe.execute()
            await self._cap_devices(user_id)
        return family_id, f"{family_id}.{secret}"

    def _first_secret(self, family_id: str) -> str:
        """The first secret of a device opened under a chosen id: the same for every opening of
        it (an HMAC only this server can make), random without a rotation key."""
        if self._rotation_key is None:
            return secrets.token_urlsafe(32)
        mac = hmac.new(self._rotation_key, f"open:{family_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    async def rotate(self, credential: str) -> Rotation:
        """Trade a credential for the next one (see :class:`Rotation`); revokes on reuse."""
        parts = split_credential(credential)
        if parts is None:
            return Rotation("malformed")
        family_id, secret, previous = parts
        now_ms = self._clock.now_ms()
        presented = secret
        outcome, user_id, current, fresh = await self._rotate_from(family_id, secret, now_ms)
        if outcome == "invalid" and previous is not None:
            # Unknown to Redis, yet made by a rotation from ``previous``: a Redis that lost that
            # rotation still has ``previous`` as current, and it is made again from there. Only
            # an unknown secret gets here: one Redis remembers as rotated away is a reuse.
            outcome, user_id, current, fresh = await self._rotate_from(family_id, previous, now_ms)
            secret = previous
        if outcome == "invalid" and await self._caught_up(family_id, presented, now_ms):
            outcome, user_id, current, fresh = await self._rotate_from(family_id, presented, now_ms)
            secret = presented
        if outcome == "reused":
            await self._forget(user_id, [family_id])
        if outcome not in ("rotated", "concurrent"):
            return Rotation(outcome, user_id, family_id)
        await self.touch(user_id, family_id, now_ms)
        grant = json.loads(await self._redis.hget(self._keys.family(family_id), "grant") or "{}")
        # "concurrent": the rotation's credential again, if it is the one Redis holds (without a
        # key, or with a key changed since the rotation, ``fresh`` matches nothing: no cookie).
        rotated = outcome == "rotated" or (outcome == "concurrent" and _digest(fresh) == current)
        next_credential = f"{family_id}.{fresh}.{secret}" if rotated else None
        return Rotation(outcome, user_id, family_id, next_credential, grant)

    def _next_secret(self, family_id: str, secret: str) -> str:
        """The secret a rotation from ``secret`` hands out (derived with the rotation key, so the
        same each time; random without one)."""
        if self._rotation_key is None:
            return secrets.token_urlsafe(32)
        return self._derived(self._rotation_key, family_id, _digest(secret))

    @staticmethod
    def _derived(key: bytes, family_id: str, digest: str) -> str:
        mac = hmac.new(key, f"{family_id}:{digest}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    @classmethod
    def _chain_to(cls, key: bytes, family_id: str, stored: str, target: str) -> list[str] | None:
        """The hashes from ``stored`` up to the one before ``target`` along the device's chain;
        None when ``target`` is not within :data:`CATCH_UP_MAX` of it. Up to a few ms of HMACs
        for a secret never made here: run off the event loop (audit "verify40b")."""
        chain = [stored]
        for _ in range(CATCH_UP_MAX):
            following = _digest(cls._derived(key, family_id, chain[-1]))
            if following == target:
                return chain
            chain.append(following)
        return None

    async def _caught_up(self, family_id: str, presented: str, now_ms: int) -> bool:
        """Bring the family up to ``presented`` when it is a later secret of its chain than the
        one Redis holds: True when it now holds it. Rotations are derived (:meth:`_next_secret`),
        so from the hash Redis holds the secrets handed out after it follow, and only this server
        made them: a Redis restored from an older backup (or failed over to a replica behind)
        holds one rotations back, and every browser that rotated twice or more since was signed
        out, a guest losing everything it made (audit "restore"; one rotation back was already
        made good). The rotations are replayed, so the secrets they rotated away are spent again:
        an older copy still comes back as a reuse. Never reached by a secret behind the one Redis
        holds (it is spent, or unknown) or by one this server did not make."""
        if self._rotation_key is None:
            return False
        stored = await self._redis.hget(self._keys.family(family_id), "secret")
        if not stored:
            return False
        chain = await asyncio.to_thread(self._chain_to, self._rotation_key, family_id, str(stored), _digest(presented))
        if chain is None:
            return False
        target = _digest(presented)
        # One step, never revoking: replayed one rotation at a time, a second request racing
        # through presented a secret the first had just spent, and the device was revoked as a
        # reuse (audit "verify40b").
        outcome = await self._catch_up(
            keys=[self._keys.family(family_id), self._keys.family_spent(family_id)],
            args=[target, now_ms, self.config.refresh_ttl_s, self.config.spent_max, *chain],
        )
        return outcome in ("caught_up", "moved")

    async def _rotate_from(self, family_id: str, secret: str, now_ms: int) -> tuple[str, str, str, str]:
        """Run the rotation script with ``secret`` presented: (outcome, user, the current secret's
        hash after it, the secret a rotation from ``secret`` hands out)."""
        fresh = self._next_secret(family_id, secret)
        outcome, user_id, current = await self._rotate(
            keys=[self._keys.family(family_id), self._keys.family_spent(family_id)],
            args=[
                _digest(secret),
                _digest(fresh),
                now_ms,
                self.config.refresh_ttl_s,
                int(self.config.rotation_grace_s * 1000),
                self.config.spent_max,
            ],
        )
        return outcome, user_id, current, fresh

    async def touch(self, user_id: str, family_id: str, now_ms: int) -> None:
        """A device was used: extend it and its identity (as long as ``keep`` says).

        A guest kept for the refresh lifetime has every device of its extended once, at the
        first use of any of them (``devices_kept``): one saved with a passkey by a release before
        :meth:`mark_saved` extended its devices (or made an admin, which extends none) kept each
        device's guest idle time from its last use, so the laptop left unused after an upgrade
        was signed out 30 days later though the identity lived."""
        ttl_s = await self.keep(user_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._keys.user_families(user_id), {family_id: now_ms})
            pipe.expire(self._keys.user_families(user_id), ttl_s)
            await pipe.execute()
        kept_guest = ttl_s == self.config.refresh_ttl_s and user_id.startswith(GUEST_PREFIX)
        if kept_guest and await self._redis.hsetnx(self._keys.user_profile(user_id), DEVICES_KEPT, 1):
            await self.owns_now(user_id)
        elif ttl_s == self.config.guest_idle_s:
            # An identity kept for its idle time from any visit keeps every device of it that
            # long: a guest's phone unused for 30 days was signed out on day 31 though its laptop
            # had kept the guest alive on day 25 (audit "daysdevices"). Up to max_devices.
            families: Any = await self._redis.zrange(self._keys.user_families(user_id), 0, -1)
            await asyncio.gather(*(self._keep_family(f, ttl_s) for f in {family_id, *families}))
        else:
            await self._keep_family(family_id, ttl_s)

    async def _keep_family(self, family_id: str, ttl_s: int) -> None:
        """Extend a device's family (if it still exists) ``ttl_s`` from now: its TTL and its
        expiry on the server's clock, in one step (a family gone meanwhile is not written)."""
        now_ms = self._clock.now_ms()
        keys = [self._keys.family(family_id), self._keys.family_spent(family_id)]
        await self._family_keep(keys=keys, args=[ttl_s, now_ms + ttl_s * 1000, now_ms])

    async def family_user(self, family_id: str) -> str:
        """The user a family belongs to ("" when unknown)."""
        if not FAMILY_ID.match(family_id):
            return ""
        return cast(str | None, await self._redis.hget(self._keys.family(family_id), "user")) or ""

    async def devices(self, user_id: str) -> list[Device]:
        """The user's live devices, most recently used first."""
        ids = cast(list[str], await self._redis.zrevrange(self._keys.user_families(user_id), 0, -1))
        async with self._redis.pipeline(transaction=False) as pipe:
            for family_id in ids:
                pipe.hgetall(self._keys.family(family_id))
            records: list[dict[str, str]] = await pipe.execute()
        found: list[Device] = []
        gone: list[str] = []
        now_ms = self._clock.now_ms()
        for family_id, raw in zip(ids, records, strict=True):
            if not raw or raw.get("revoked") == "1" or raw.get("user") != user_id or _past(raw, now_ms):
                gone.append(family_id)
                continue
            grant = json.loads(raw.get("grant") or "{}")
            found.append(
                Device(family_id, raw.get("label", ""), int(raw["created_ms"]), int(raw["last_used_ms"]), grant)
            )
        if gone:
            await self._redis.zrem(self._keys.user_families(user_id), *gone)
        return found

    async def revoke(self, user_id: str, family_id: str) -> bool:
        """Sign one device of ``user_id`` out; False when it is not one of theirs."""
        if not FAMILY_ID.match(family_id):
            return False
        done = await self._revoke(keys=[self._keys.family(family_id)], args=[user_id, self._clock.now_ms()])
        if done:
            await self._forget(user_id, [family_id])
        return bool(done)

    async def revoke_all(self, user_id: str) -> tuple[int, list[str]]:
        """Sign ``user_id`` out everywhere: when (ms), and the family ids revoked.

        First the time is kept (``link_ttl_s``, as long as a link may live: a link made before
        it is refused) and logged for every node (a token bound to no device issued before it is
        refused), then every device listed is revoked. In that order: a device a link's
        redemption lists after the list was read is one whose redemption, checking the time
        after listing it, sees it (handlers/auth_http.py).
        """
        now_ms = self._clock.now_ms()
        await self._redis.set(self._keys.user_signed_out(user_id), now_ms, ex=self.config.link_ttl_s)
        # Past its access_ttl_s no token bound to no device issued before it lives; nor does one a
        # node renewed before it heard of the sign-out (a poll later, and a second of iat's).
        until_ms = now_ms + self._user_mark_lasting_ms()
        await self._log_revoked([signed_out_entry(user_id)], until_ms=until_ms, before_log=False)
        ids = cast(list[str], await self._redis.zrange(self._keys.user_families(user_id), 0, -1))
        revoked = [family_id for family_id in ids if await self.revoke(user_id, family_id)]
        return now_ms, revoked

    def _user_mark_lasting_ms(self) -> int:
        """How long a user's mark in the revoked set (a sign-out everywhere, an admin withdrawn)
        lasts: every token issued before it has expired by then, and one a node renewed before it
        heard of the mark (a poll later, and a second of iat's)."""
        return (self.config.access_ttl_s + math.ceil(self.config.revocation_poll_s) + 1) * 1000

    async def reapply(self, entries: dict[str, int]) -> None:
        """Apply again revocations still in force that Redis no longer holds, each until its own
        end (``entries``: a revoked set's entries -> until, ms): a Redis restored from an older
        backup (or failed over to a replica behind, or flushed) brought back the devices signed
        out since, the users' sessions ended everywhere and the admins withdrawn, and the nodes
        that were refusing them forgot them at their next full read (audit "restore"). What they
        ended in the records is ended again: the device's family revoked, every device a user
        listed at the sign-out everywhere, the admin flag. Logged again, for every node."""
        for entry, until_ms in entries.items():
            user = parse_signed_out(entry)
            withdrawal = None if user else parse_admin_withdrawn(entry)
            if user is not None:
                at_ms = until_ms - self._user_mark_lasting_ms()  # when it was signed out (revoke_all's until)
                if at_ms > await self.signed_out_at(user):
                    await self._redis.set(self._keys.user_signed_out(user), at_ms, ex=self.config.link_ttl_s)
                for family_id in cast(list[str], await self._redis.zrange(self._keys.user_families(user), 0, -1)):
                    await self._revoke(keys=[self._keys.family(family_id)], args=[user, self._clock.now_ms()])
                    await self._log_revoked([family_id], until_ms=until_ms, before_log=True)
            elif withdrawal is not None:
                key = self._keys.user_profile(withdrawal[0])
                if await self._redis.hget(key, "admin") == "1":
                    # A grant made after the withdrawal leaves no trace to weigh against it: said,
                    # so that an operator who granted it back since grants it again.
                    await self._redis.hset(key, "admin", 0)
                    log.warning(
                        "the admin permission of %s, withdrawn after the backup Redis was restored from, "
                        "is withdrawn again (granted back since? grant it again)",
                        withdrawal[0],
                    )
            elif FAMILY_ID.match(entry):
                owner = await self._redis.hget(self._keys.family(entry), "user")
                if owner:
                    await self._revoke(keys=[self._keys.family(entry)], args=[owner, self._clock.now_ms()])
                    await self._redis.zrem(self._keys.user_families(str(owner)), entry)
            await self._log_revoked([entry], until_ms=until_ms, before_log=user is None and withdrawal is None)

    async def signed_out_at(self, user_id: str) -> int:
        """When (ms) ``user_id`` last signed out everywhere, as long as a link may live; 0 if not."""
        at_ms = await self._redis.get(self._keys.user_signed_out(user_id))
        return int(at_ms) if at_ms else 0

    async def family_live(self, user_id: str, family_id: str) -> bool:
        """Whether ``family_id`` is a device of ``user_id`` that is not signed out nor gone."""
        if not FAMILY_ID.match(family_id):
            return False
        raw = cast(dict[str, str], await self._redis.hgetall(self._keys.family(family_id)))
        return (
            bool(raw)
            and raw.get("user") == user_id
            and raw.get("revoked") != "1"
            and not _past(raw, self._clock.now_ms())
        )

    async def _forget(self, user_id: str, family_ids: list[str]) -> None:
        # Access tokens of these families live at most access_ttl_s more: refused that long.
        if user_id:
            await self._redis.zrem(self._keys.user_families(user_id), *family_ids)
        until_ms = self._clock.now_ms() + self.config.access_ttl_s * 1000
        await self._log_revoked(family_ids, until_ms=until_ms, before_log=True)

    async def _log_revoked(self, entries: list[str], *, until_ms: int, before_log: bool) -> None:
        """Add ``entries`` (family ids, or a user's :func:`signed_out_entry`) to the revoked set
        and log until ``until_ms``; also to the set of the release before the log (``before_log``)."""
        keys, now_ms = self._keys, self._clock.now_ms()
        await self._revoked_add(
            keys=[keys.revoked_families(), keys.revoked_log(), keys.revoked_head()],
            args=[until_ms, now_ms, secrets.token_hex(8), REVOKED_LOG_MAX, *entries],
        )
        if not before_log:
            return
        # Also where a node of the version before the log reads (the whole set, every poll):
        # while both versions run, a device signed out on a new node is refused on an old one.
        # Kept pruned here, since only those nodes pruned it. (Drop once no such node runs.)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(keys.revoked_families_before_log(), "-inf", now_ms)
            pipe.zadd(keys.revoked_families_before_log(), dict.fromkeys(entries, until_ms))
            await pipe.execute()

    async def _cap_devices(self, user_id: str) -> None:
        # Bounded storage per user: past max_devices the least recently used device is signed out.
        key = self._keys.user_families(user_id)
        extra = await self._redis.zcard(key) - self.config.max_devices
        if extra > 0:
            for family_id in cast(list[str], await self._redis.zrange(key, 0, extra - 1)):
                await self.revoke(user_id, family_id)

    async def revoked_all(self) -> Revocations:
        """Every family whose access tokens must still be refused (expired ones are dropped),
        with the log position that read stands for: the reads after it start there."""
        keys, now_ms = self._keys, self._clock.now_ms()
        seq, last_id, epoch, flat = await self._revoked_read(
            keys=[keys.revoked_families(), keys.revoked_head()], args=[now_ms]
        )
        until = {str(flat[i]): int(float(flat[i + 1])) for i in range(0, len(flat), 2)}
        before = cast(
            list[tuple[str, float]],
            await self._redis.zrangebyscore(keys.revoked_families_before_log(), now_ms, "+inf", withscores=True),
        )
        for family_id, until_ms in before:
            until[str(family_id)] = max(until.get(str(family_id), 0), int(until_ms))
        return Revocations(Position(str(epoch), int(seq), str(last_id)), until)

    async def revoked_since(self, position: Position) -> Revocations | None:
        """The revocations logged after ``position`` (one small read when there are none); None
        when the log cannot say what came after it -- replaced (another epoch), trimmed past it,
        or gone back (a failover to a replica without its last entries, perhaps numbered again
        since): the caller reads :meth:`revoked_all` instead."""
        keys = self._keys
        seq, last_id, epoch = cast(
            list[str | None], await self._redis.hmget(keys.revoked_head(), ["seq", "last", "epoch"])
        )
        head = Position(epoch or "", int(seq or 0), last_id or "")
        if head.epoch != position.epoch:
            return None
        if head.last_id == position.last_id:
            return Revocations(position, {})  # nothing new: the one read of a quiet poll
        if head.seq <= position.seq:
            return None  # another last entry, no more of them: the log went back and on again
        until: dict[str, int] = {}
        at, after = position.seq, position.last_id
        while at < head.seq:
            entries = cast(
                list[tuple[str, dict[str, str]]],
                await self._redis.xrange(
                    keys.revoked_log(), f"({after}" if after else "-", "+", count=REVOKED_READ_BATCH
                ),
            )
            for entry_id, fields in entries:
                if int(fields["n"]) != at + 1:
                    return None  # trimmed past it, or numbered again after a failover
                until[fields["f"]] = max(until.get(fields["f"], 0), int(fields["u"]))
                at, after = at + 1, str(entry_id)
            if len(entries) < REVOKED_READ_BATCH:
                break
        if at < head.seq:
            return None  # the head counts entries the log does not hold after ours
        return Revocations(Position(position.epoch, at, after), until)
