"""Every Redis key and channel name sessionhub uses, built in one place.

One session's keys share the hash tag ``{<session_id>}`` so that every atomic step on a
session (a Lua script touching its state, log and log metadata) stays valid on Redis
Cluster. Per-user keys share ``{u:<user_id>}`` for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """Key and channel builders under one configurable prefix."""

    prefix: str = "sh"

    # --- one session -------------------------------------------------------------------
    def session(self, session_id: str) -> str:
        """Hash holding the session record."""
        return f"{self.prefix}:{{{session_id}}}:session"

    def session_gone(self, session_id: str) -> str:
        """Why a deleted session is gone ("retention" or "operator"), kept a while for the
        links to it that come back (handlers/session_gone.py)."""
        return f"{self.prefix}:{{{session_id}}}:gone"

    def log(self, session_id: str) -> str:
        """Capped stream of the session's events; entry ids are ``<offset>-0``."""
        return f"{self.prefix}:{{{session_id}}}:log"

    def log_meta(self, session_id: str) -> str:
        """Hash with the log's ``epoch`` and last ``offset``."""
        return f"{self.prefix}:{{{session_id}}}:logmeta"

    def pattern_ops_seen(self, session_id: str) -> str:
        """Hash: each live-editing client's last applied op in a pattern session, client id ->
        ``<seq>|<offset>`` (the idempotency of retried ops; bounded, expires an hour after the
        session's last op)."""
        return f"{self.prefix}:{{{session_id}}}:opseen"

    def pattern_op_seen_before(self, session_id: str, client_id: str) -> str:
        """String: a client's last applied op as nodes before the per-session hash kept it,
        ``<seq>|<offset>`` (expires within the hour; read by op.lua during a rolling upgrade)."""
        return f"{self.prefix}:{{{session_id}}}:opseen:{client_id}"

    def materials(self, session_id: str) -> str:
        """List of the materials attached to a voice session (JSON objects, oldest first)."""
        return f"{self.prefix}:{{{session_id}}}:materials"

    def channel(self, session_id: str) -> str:
        """Pub/sub channel on which every event of the session is published."""
        return f"{self.prefix}:{{{session_id}}}:events"

    # --- one user ----------------------------------------------------------------------
    def user_sessions(self, user_id: str) -> str:
        """Sorted set of the user's voice session ids, scored by creation time (ms)."""
        return f"{self.prefix}:{{u:{user_id}}}:voice_sessions"

    def user_recent(self, user_id: str) -> str:
        """Sorted set of the user's sessions of every kind, scored by creation time (ms)."""
        return f"{self.prefix}:{{u:{user_id}}}:recent"

    def active_session(self, user_id: str) -> str:
        """String: the user's active voice session id (seed 002 ``active-session``)."""
        return f"{self.prefix}:{{u:{user_id}}}:active_session"

    def active_session_seq(self, user_id: str) -> str:
        """Integer: how many times the user's active session changed (never reset); every
        announcement on :meth:`active_session_channel` carries it."""
        return f"{self.prefix}:{{u:{user_id}}}:active_session:seq"

    def active_session_taken(self, user_id: str, request_id: str) -> str:
        """String with a TTL: the session one ``/done`` press (its request id) took from the
        user's active pointer, so that its resend closes that session again (``active_take.lua``)."""
        return f"{self.prefix}:{{u:{user_id}}}:active_session:taken:{request_id}"

    def material_routing(self, user_id: str) -> str:
        """String with a TTL: the lock one material holds while it finds or creates the user's
        open active session (storage/voice/route_lock.py)."""
        return f"{self.prefix}:{{u:{user_id}}}:active_session:routing"

    def active_session_channel(self, user_id: str) -> str:
        """Pub/sub channel announcing each change of the user's active session (in the user's
        slot: the script that changes the pointer publishes it, sharded on a cluster), and each
        change of the user's display name (``identity/rename.lua``) and each clip the user stored
        in a stream session (``streams/own_clip_announce.lua``): the user's channel, which a node
        subscribes while a connection of the user there follows it (server/active_feed.py)."""
        return f"{self.prefix}:{{u:{user_id}}}:active_session:changes"

    # --- global ------------------------------------------------------------------------
    def all_sessions(self) -> str:
        """Sorted set of every session id, scored by creation time (ms), for listings."""
        return f"{self.prefix}:sessions"

    # The job keys share the hash tag {jobs} so that moving a job between them is one script.
    def jobs(self) -> str:
        """Stream of queued post-processing jobs (consumer group :meth:`jobs_group`)."""
        return f"{self.prefix}:{{jobs}}:stream"

    def jobs_group(self) -> str:
        """Consumer group name of the job stream."""
        return "workers"

    def jobs_delayed(self) -> str:
        """Sorted set of jobs waiting for a retry, scored by the time they are due (ms)."""
        return f"{self.prefix}:{{jobs}}:delayed"

    def jobs_queued(self, job_id: str) -> str:
        """String with a TTL: a job of this id was queued (JobQueue.enqueue_once queues it once)."""
        return f"{self.prefix}:{{jobs}}:queued:{job_id}"

    def jobs_waiting(self, coalesce: str) -> str:
        """String with a TTL: a job queued under this name has not started yet (a coalesced
        job, JobQueue.enqueue_coalesced: a second one is not queued while it waits)."""
        return f"{self.prefix}:{{jobs}}:waiting:{coalesce}"

    def jobs_runs(self, entry_id: str) -> str:
        """Counter with a TTL: how many runs of the job stream entry ``entry_id`` started and never
        said how they went (their worker died): JobQueue.started counts one, an outcome drops it."""
        return f"{self.prefix}:{{jobs}}:runs:{entry_id}"

    def jobs_run_by(self, entry_id: str) -> str:
        """Hash with a TTL: consumer -> how many runs of the job stream entry ``entry_id`` it
        started and never said how they went (JobQueue.started, beside ``jobs_runs``): whose runs
        they were, to tell a run's death from a live worker's lost claim."""
        return f"{self.prefix}:{{jobs}}:runby:{entry_id}"

    def jobs_alive(self) -> str:
        """Hash: worker (consumer) -> when it was last heard from, unix ms (JobQueue.heard_from, at
        every claim and every heartbeat of a running job): a run's worker silent long is dead."""
        return f"{self.prefix}:{{jobs}}:alive"

    def jobs_dead(self) -> str:
        """List of jobs that exhausted their attempts (the dead-letter list)."""
        return f"{self.prefix}:{{jobs}}:dead"

    def jobs_dead_at(self) -> str:
        """Sorted set of dead-lettered job ids scored by when they were buried (ms), the newest
        ``JobQueue.dead_max`` kept: an operator reads how long a failure has waited for them."""
        return f"{self.prefix}:{{jobs}}:dead_at"

    def rate(self, bucket: str, subject: str, window: int) -> str:
        """Fixed-window rate-limit counter for ``subject`` in ``bucket``."""
        return f"{self.prefix}:rate:{bucket}:{subject}:{window}"

    # --- identity: profiles, device families, revocations ------------------------------
    # A user's keys share {u:<id>}; one device's refresh family shares {f:<family id>}, so its
    # rotation (family hash + spent list) is one script on one slot.
    def user_profile(self, user_id: str) -> str:
        """Hash: the user's display name, guest/saved/admin marks, creation time (ms)."""
        return f"{self.prefix}:{{u:{user_id}}}:profile"

    def user_families(self, user_id: str) -> str:
        """Sorted set of the user's live refresh families (devices), scored by last use (ms)."""
        return f"{self.prefix}:{{u:{user_id}}}:families"

    def family(self, family_id: str) -> str:
        """Hash: one device's refresh family (user, current secret hash, times, label, revoked)."""
        return f"{self.prefix}:{{f:{family_id}}}:family"

    def family_spent(self, family_id: str) -> str:
        """List of the family's rotated-away secret hashes, newest first (reuse detection)."""
        return f"{self.prefix}:{{f:{family_id}}}:spent"

    def guests_owning(self) -> str:
        """Sorted set: guests that own something (a voice or stream session, a listening history,
        a clip), scored by their last visit (ms); the guest sweeper deletes what a guest idle
        past ``guest_idle_s`` owned (handlers/guest_retention.py)."""
        return f"{self.prefix}:guests:owning"

    def guests_backfill(self) -> str:
        """String: how far the listing of guests that owned sessions before :meth:`guests_owning`
        existed has read :meth:`all_sessions`: ``<creation time, ms>:<the last session id read>``
        (a bare time from the version before), ``done`` once it has read all."""
        return f"{self.prefix}:guests:backfill"

    def guest_sweep_lease(self, user_id: str) -> str:
        """String with a TTL: a node is deleting what this gone guest owned (one node at a time)."""
        return f"{self.prefix}:{{u:{user_id}}}:sweep_lease"

    def user_signed_out(self, user_id: str) -> str:
        """String with a TTL: when (ms, the server's clock) the user last signed out everywhere;
        a one-time link made before it is refused (handlers/auth_http.py)."""
        return f"{self.prefix}:{{u:{user_id}}}:signed_out"

    def user_passkeys(self, user_id: str) -> str:
        """Hash passkey id -> JSON (credential id, public key, sign count, times, label, grant)."""
        return f"{self.prefix}:{{u:{user_id}}}:passkeys"

    def passkey_owner(self, passkey_id: str) -> str:
        """String: the user a passkey (by id: sha256 of its credential id) signs in as."""
        return f"{self.prefix}:passkey:{passkey_id}"

    def webauthn_challenge(self, challenge_id: str) -> str:
        """String: one pending passkey ceremony (JSON: challenge, purpose, user); read once."""
        return f"{self.prefix}:webauthn:{challenge_id}"

    def revoked_families(self) -> str:
        """Sorted set family id -> until when (ms) its access tokens must still be refused.

        The three revocation keys share a hash tag: one script writes them together."""
        return f"{self.prefix}:{{revoked}}:families"

    def revoked_log(self) -> str:
        """Stream of the revocations (family ``f``, until ``u``, number ``n``: 1, 2, ... without
        a gap), which each node reads from the last entry it read (handlers/revocation_watch.py)."""
        return f"{self.prefix}:{{revoked}}:log"

    def revoked_head(self) -> str:
        """Hash: ``seq`` and ``last`` (the revocation log's last n and entry id), ``epoch`` (names that log)."""
        return f"{self.prefix}:{{revoked}}:head"

    def revoked_families_before_log(self) -> str:
        """The sorted set :meth:`revoked_families` was before the log came (no hash tag): still
        written (and pruned) beside the log, and read with the whole set, for nodes of that version."""
        return f"{self.prefix}:auth:revoked"

    def device_opened_by(self, token_hash: str) -> str:
        """String: a guest token without a device (by hash) has opened its one device; expires with it."""
        return f"{self.prefix}:auth:opened:{token_hash}"

    def login_token(self, token_hash: str) -> str:
        """One-time login token (stored by hash, never in clear): its claims until redeemed; once
        redeemed with an attempt id, for a short TTL, the hash of that id, the claims and the
        device the redemption opens, so that the same page resending the same redemption (its
        answer lost) gets that device again instead of ``used`` (storage/login_tokens.py)."""
        return f"{self.prefix}:login:{token_hash}"

    # --- patterns ----------------------------------------------------------------------
    def pattern_players(self, session_id: str) -> str:
        """Hash of the players present in a pattern session: player id -> JSON (name, colour, expiry)."""
        return f"{self.prefix}:{{{session_id}}}:players"

    def remix_children(self, session_id: str) -> str:
        """Sorted set of the sessions remixed (or published) from this one, scored by their creation (ms).

        In the parent's hash slot, so the step that counts a remix records the child with it.
        """
        return f"{self.prefix}:{{{session_id}}}:children"

    # --- voice ---------------------------------------------------------------------------
    def voice_chunks(self, session_id: str) -> str:
        """Hash of a voice session's audio chunks: chunk id -> chunk JSON."""
        return f"{self.prefix}:{{{session_id}}}:chunks"

    def voice_chunk_order(self, session_id: str) -> str:
        """Sorted set of the session's chunk ids, scored by chunk start (ms); ties by id (upload order)."""
        return f"{self.prefix}:{{{session_id}}}:chunk_order"

    def voice_chunk_digests(self, session_id: str) -> str:
        """Hash sha256 -> chunk id: the same audio uploaded twice is one chunk."""
        return f"{self.prefix}:{{{session_id}}}:chunk_sha"

    def voice_request(self, session_id: str, action: str, user_id: str, request_id: str) -> str:
        """String with a TTL: the ack a voice action (``done``, ``process``, ``tasks``) gave
        for one client-chosen ``request_id`` of ``user_id``, so a retry of that very request is
        answered the same instead of counting or queueing again. In the session's slot: the Done
        script reads and writes it in its one step."""
        return f"{self.prefix}:{{{session_id}}}:request:{action}:{user_id}:{request_id}"

    def voice_recording_lease(self, session_id: str) -> str:
        """String with a TTL: the node and connection whose recorder is recording the session."""
        return f"{self.prefix}:{{{session_id}}}:rec_lease"

    def voice_recording_due(self) -> str:
        """Sorted set of session ids with a recording lease, scored by when a sweeper should look (ms)."""
        return f"{self.prefix}:voice:recording_due"

    def voice_audio_link_key(self) -> str:
        """String: the random key that signs short-lived audio links (shared by every node)."""
        return f"{self.prefix}:voice:audio_link_key"

    # --- clips -------------------------------------------------------------------------
    def stream_segments(self, session_id: str) -> str:
        """List of a stream session's segments (JSON objects, index order)."""
        return f"{self.prefix}:{{{session_id}}}:segments"

    def stream_clips(self, session_id: str) -> str:
        """Hash of a stream session's clips: clip id -> clip JSON."""
        return f"{self.prefix}:{{{session_id}}}:clips"

    def stream_review_index(self, session_id: str) -> str:
        """Sorted set of a stream session's clip ids in review order (score: segment * 2^40 +
        offset ms; ties by clip id), kept up by its reads from the log (``review_sync.lua``)."""
        return f"{self.prefix}:{{{session_id}}}:review_index"

    def stream_review_meta(self, session_id: str) -> str:
        """Hash: the log position (epoch, offset) the review index reflects."""
        return f"{self.prefix}:{{{session_id}}}:review_meta"

    def stream_review_build(self, session_id: str, build_id: str) -> str:
        """Sorted set: a review index being built from a copy of the clips, renamed into place
        when done; expires if its process goes away mid-build."""
        return f"{self.prefix}:{{{session_id}}}:review_build:{build_id}"

    def stream_submissions(self, session_id: str) -> str:
        """Hash of client submission ids (``<user>|<submission id>``) -> clip id (idempotency)."""
        return f"{self.prefix}:{{{session_id}}}:clip_submissions"

    def stream_cooldown(self, session_id: str, user_id: str) -> str:
        """String: when ``user_id`` may clip this session again (unix ms; expires with it)."""
        return f"{self.prefix}:{{{session_id}}}:clip_cooldown:{user_id}"

    def stream_clip_counts(self, session_id: str) -> str:
        """Hash of clips each submitter stored (``u:<user>``) and each guest address (``a:<address>``);
        never decreased, so deleting clips gives no quota back (the per-viewer and per-address caps).
        A release before the own index (:meth:`stream_own_index`) also kept each submitter's clip
        ids here (``c:<user>``); nothing reads them now."""
        return f"{self.prefix}:{{{session_id}}}:clip_counts"

    def stream_own_index(self, session_id: str) -> str:
        """Sorted set of a stream session's clips by viewer: ``<viewer tag>:<seq, 15 digits>:<clip id>``
        (score 0: read by lex range), so one viewer's clips are a range, newest last. Kept in the
        clip scripts' own steps (submit, delete, clear); built in pages from the clips where it is
        short of them (``own_index_build.lua``). ~170 bytes a clip (MEMORY USAGE: 33.6 MB over
        200,000 clips, whose hash is 80 MB), kept as long as the stream."""
        return f"{self.prefix}:{{{session_id}}}:own_index"

    def stream_blocked(self, session_id: str) -> str:
        """Set of user ids the stream's owner blocked from clipping."""
        return f"{self.prefix}:{{{session_id}}}:blocked"

    def user_streams(self, user_id: str) -> str:
        """Sorted set of the user's stream session ids, scored by creation time (ms)."""
        return f"{self.prefix}:{{u:{user_id}}}:stream_sessions"

    def user_clipped(self, user_id: str) -> str:
        """Sorted set of the stream session ids the user stored a clip in, scored by the first
        clip's time (ms): a viewer's clips are theirs, so their identity is kept for them."""
        return f"{self.prefix}:{{u:{user_id}}}:clipped"

    # --- listening ---------------------------------------------------------------------
    # A user's listening history is one session (kind ``listening``); everything it holds
    # shares that session's hash tag, so each report is one atomic script on one slot.
    def listening_history(self, user_id: str) -> str:
        """String: the id of the user's listening-history session (created on first use)."""
        return f"{self.prefix}:{{u:{user_id}}}:listening"

    def listening_records(self, history_id: str) -> str:
        """Hash: listening session id -> its record (JSON)."""
        return f"{self.prefix}:{{{history_id}}}:l:recs"

    def listening_by_start(self, history_id: str) -> str:
        """Sorted set of listening session ids, scored by ``started_at`` (ms)."""
        return f"{self.prefix}:{{{history_id}}}:l:by_start"

    def listening_by_item(self, history_id: str) -> str:
        """Sorted set (all scores 0, read by lex range): ``item_id NUL started_at(15 digits) NUL id``."""
        return f"{self.prefix}:{{{history_id}}}:l:by_item"

    def listening_items(self, history_id: str) -> str:
        """Sorted set: item id -> total listened ms (the per-item totals)."""
        return f"{self.prefix}:{{{history_id}}}:l:items"

    def listening_meta(self, history_id: str) -> str:
        """Hash: item id -> item metadata (JSON), stored once per item."""
        return f"{self.prefix}:{{{history_id}}}:l:meta"

    def listening_open(self, history_id: str) -> str:
        """Hash: device id -> the device's open listening session id."""
        return f"{self.prefix}:{{{history_id}}}:l:open"

    def listening_last(self, history_id: str) -> str:
        """Hash: device id -> the device's last finalized listening session id (resume candidate)."""
        return f"{self.prefix}:{{{history_id}}}:l:last"

    def listening_stats(self, history_id: str) -> str:
        """Hash: ``total_ms``, ``count``, ``max_span_ms`` (longest session, bounds range reads)."""
        return f"{self.prefix}:{{{history_id}}}:l:stats"

    def listening_clients(self, history_id: str) -> str:
        """Hash: offline upload ``client_id`` -> listening session id (idempotent uploads)."""
        return f"{self.prefix}:{{{history_id}}}:l:clients"

    def listening_pauses(self, history_id: str) -> str:
        """Sorted set with a TTL: the pauses and stops the history heard with a ``pause_id``
        (``device NUL item NUL pause_id``), by when they arrived (ms), a day and at most a
        thousand: the same press sent again (two tabs that kept it) changes nothing, whatever its
        first send did and whatever happened since (a delete, a clear, another item played)."""
        return f"{self.prefix}:{{{history_id}}}:l:pauses"

    def listening_cleared_clients(self, history_id: str) -> str:
        """Hash with a TTL: the upload ``client_id``s a clear took out of ``listening_clients``,
        kept a day, so that an upload stored before the clear and resent after it (its answer
        lost) is that upload, cleared, not a session brought back."""
        return f"{self.prefix}:{{{history_id}}}:l:cleared_clients"

    def listening_clear_request_before(self, history_id: str, request_id: str) -> str:
        """String with a TTL: the answer of one ``listening_clear`` press as nodes before
        :meth:`listening_clear_requests` kept it (a key per request id). Only read now, by
        clear.lua in a rolling upgrade; every one is gone a day after it was written."""
        return f"{self.prefix}:{{{history_id}}}:l:request:clear:{request_id}"

    def listening_clear_requests(self, history_id: str) -> str:
        """Sorted set: the answers ``listening_clear`` gave for client-chosen request ids (the
        newest few, a day), so a resend of a press after a lost ack is answered the same instead
        of deleting what was played since. One key per history, in its slot (clear.lua)."""
        return f"{self.prefix}:{{{history_id}}}:l:requests:clear"

    def listening_due(self) -> str:
        """Sorted set of history ids with open sessions, scored by when the sweeper should look (ms)."""
        return f"{self.prefix}:listening:due"

    # --- admin ---------------------------------------------------------------------------
    # Every admin index shares the hash tag {admin}, so one script updates them all atomically
    # (on Redis Cluster they live on one shard, apart from any session's keys).
    def admin_kind_of(self) -> str:
        """Hash session id -> kind of every indexed session (its size is the session count)."""
        return f"{self.prefix}:{{admin}}:kind_of"

    def idempotent_answer(self, scope: str, owner: str, key: str) -> str:
        """String: the stored answer of the request named ``key`` by ``owner`` in ``scope``
        (empty while the first such request is still running); see storage/idempotency.py."""
        return f"{self.prefix}:{{idem:{owner}}}:{scope}:{key}"

    def idempotent_index(self, scope: str, owner: str) -> str:
        """Sorted set: ``owner``'s :meth:`idempotent_answer` keys in ``scope``, scored by claim
        time (ms); the bound on how many one caller keeps (storage/idempotency.py). ``#`` is
        no character of a key, so it names no answer."""
        return f"{self.prefix}:{{idem:{owner}}}:{scope}#keys"

    def probe_channel(self) -> str:
        """Channel: published to and subscribed once by a process starting, to see that its Redis
        user may (storage/redis_fitness.py); under the prefix, where an ACL limited to it allows."""
        return f"{self.prefix}:probe"

    def log_id_key(self) -> str:
        """String: the secret sealing event ids to their place in a log (storage/events.py)."""
        return f"{self.prefix}:log_id_key"

    def upload_bytes(self, who: str) -> str:
        """String (expiring): audio and material bytes stored by ``who`` (``u:<user>`` or
        ``a:<address>``) in the current quota day (a day from the first upload)."""
        return f"{self.prefix}:{{q:{who}}}:upload_bytes"

    def material_bytes(self, who: str) -> str:
        """String (expiring): chat-bot material bytes stored in Redis by ``who`` (``u:<user>`` or
        ``a:<address>``) in the current quota day, besides :meth:`upload_bytes` (which they also
        count in): audio goes to disk, materials to Redis's memory."""
        return f"{self.prefix}:{{q:{who}}}:material_bytes"

    def admin_created(self, scope: str) -> str:
        """Sorted set of session ids scored by creation (ms); ``scope`` is a kind or ``*`` (all)."""
        return f"{self.prefix}:{{admin}}:created:{scope}"

    def admin_accessed(self, scope: str) -> str:
        """Sorted set of session ids scored by last access (ms); ``scope`` is a kind or ``*``."""
        return f"{self.prefix}:{{admin}}:accessed:{scope}"

    def admin_updated(self) -> str:
        """Sorted set of session ids scored by their last event's time (ms)."""
        return f"{self.prefix}:{{admin}}:updated"

    def admin_size(self) -> str:
        """Sorted set of session ids scored by their stored size (bytes)."""
        return f"{self.prefix}:{{admin}}:size"

    def admin_remixes(self) -> str:
        """Sorted set of session ids scored by their ``remix_count`` (0 for every new session)."""
        return f"{self.prefix}:{{admin}}:remixes"

    def admin_bytes(self) -> str:
        """Hash kind -> total stored bytes of that kind's sessions."""
        return f"{self.prefix}:{{admin}}:bytes"

    def admin_files(self) -> str:
        """Sorted set of session ids scored by the bytes of the files they keep outside Redis
        (a voice session's audio, on disk or in S3); a session with none is not in it."""
        return f"{self.prefix}:{{admin}}:files"

    def admin_file_bytes(self) -> str:
        """Hash kind -> total bytes of the files that kind's sessions keep outside Redis."""
        return f"{self.prefix}:{{admin}}:file_bytes"

    def admin_ops(self) -> str:
        """Hash ``reads:<yyyymm>`` / ``writes:<yyyymm>`` -> operations counted that month."""
        return f"{self.prefix}:{{admin}}:ops"

    def admin_audit(self) -> str:
        """Capped stream of admin actions that changed data: who, what, when."""
        return f"{self.prefix}:{{admin}}:audit"

    def cleanups(self) -> str:
        """Hash session id -> JSON (record, since) of deletions whose follow-up outside the
        session's keys (``SessionKind.on_delete``) has not finished yet (storage/cleanups.py)."""
        return f"{self.prefix}:cleanups"

    def admin_nodes(self) -> str:
        """Hash node id -> JSON heartbeat (bus live, clients, when), written by every serve node."""
        return f"{self.prefix}:{{admin}}:nodes"

    def admin_stats(self) -> str:
        """Hash of figures only a recalculation can know (``deepest_remix``, ``deepest_remix_at``)."""
        return f"{self.prefix}:{{admin}}:stats"

    def jobs_dead_settled(self, job_id: str) -> str:
        """String with a TTL: how an operator settled the dead letter ``job_id`` (``retried`` or
        ``discarded``; storage/dead_letters.py), so a press repeated after its answer was lost is
        answered as the first was, and changes nothing. In ``{jobs}``: the same script moves it."""
        return f"{self.prefix}:{{jobs}}:dead_settled:{job_id}"
