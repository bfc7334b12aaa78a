/**
 * Chunk uploads that survive failures and page reloads: every recorded chunk is written to
 * IndexedDB first and removed only once the server has acknowledged it (201, or 200 for a
 * duplicate). Failures that may pass (network, 401, 408, 429, 5xx) are retried with
 * exponential back-off; one that says how long to wait (`retry_after_s`: the server's disk is
 * full, a rate limit) is not sent again before that (bounded), whatever chunks are added
 * meanwhile: the browser coming back online, an identity change or Done try at once. A refusal that will not pass (400, 403, 404, 409, 413: its session closed
 * or deleted meanwhile, say by Done on another device) keeps the chunk, marked `refused`: it is
 * never sent again, and the person can download it (the audio exists nowhere else), then remove
 * it. Uploads run one at a time, oldest first.
 *
 * The chunk being recorded survives the page too (issue 23): each piece the recorder hands over
 * is stored at once as a *partial* chunk, owned by the recording page (a Web Lock it holds while
 * alive). A partial whose owner is gone (navigation, reload, tab closed or killed) becomes an
 * ordinary upload on the next load of any page with the FAB. A partial and its finished chunk
 * never both reach the queue: finishing deletes the partial in the same transaction, and a
 * recovered partial is turned into an upload in one transaction too. A chunk sent twice anyway
 * (acknowledged, but the page died before deleting it) is the same bytes, which the server stores
 * once per session (same sha256: 200 `duplicate`).
 *
 * A chunk belongs to the identity it was recorded as (`user_id`, its token's subject): only that
 * identity can upload it into its session. While this browser is somebody else (a new guest
 * after the old identity was signed out, another sign-in) or nobody (the identity is gone), the
 * chunk is *held*: kept, never sent to be refused, offered for download, and uploaded as soon
 * as the browser is its owner again (a device link or passkey back to that identity).
 */
import { ApiError, authorizedFetch, currentUserId, getToken, strandedIdentity, tokenUser } from "./client.js";

const DB_NAME = "sessionhub-fab";
const STORE = "uploads";
const PARTIALS = "partials"; // one record per chunk being recorded: {key, owner, session_id, ...}
const PARTS = "parts"; // its pieces in order: {key, seq, blob}
const OWNER_LOCK = "sessionhub-fab-page-";
// A page that records says so here (its page id), once its lock is held: the browser's other
// pages with the FAB then wait for that lock and take over what the page leaves when it goes.
const RECORDERS_CHANNEL = "sessionhub-fab-recorders";
const RECOVER_EVERY_MS = 2000;
const RECOVER_TRIES = 30;
// Without Web Locks, a partial untouched this long is taken as abandoned.
const STALE_PARTIAL_MS = 5000;
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 30_000;
const TRANSIENT = new Set([401, 408, 425, 429]);
// The longest a refusal's `retry_after_s` is waited for: a day's cap says "at the day's end", and
// a chunk recorded since should not wait that long once there is room (tried again this often).
const SERVER_WAIT_MAX_MS = 300_000;

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 2);
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains(STORE)) db.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
      if (!db.objectStoreNames.contains(PARTIALS)) db.createObjectStore(PARTIALS, { keyPath: "key" });
      if (!db.objectStoreNames.contains(PARTS)) db.createObjectStore(PARTS, { keyPath: ["key", "seq"] });
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function inStore(db, mode, work) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const result = work(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(result?.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

/** One transaction over several stores: all of `work` happens, or none of it. */
function inStores(db, names, mode, work) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(names, mode);
    const stores = Object.fromEntries(names.map((name) => [name, tx.objectStore(name)]));
    const result = work(stores);
    tx.oncomplete = () => resolve(result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function partsOf(key) {
  return IDBKeyRange.bound([key, 0], [key, Number.MAX_SAFE_INTEGER]);
}

/** This page's id, held as a Web Lock for as long as the page lives (released when it goes). */
const PAGE_ID = globalThis.crypto?.randomUUID?.() ?? `${Date.now()}-${Math.random()}`;
const ownerHeld = navigator.locks
  ? new Promise((resolve) => {
      navigator.locks.request(OWNER_LOCK + PAGE_ID, () => {
        resolve(true);
        return new Promise(() => {}); // never settles: the lock goes with the page
      });
    })
  : Promise.resolve(false);

let announced = false;

/** Tell the browser's other pages that this one records (once, its lock held: see `outlive`). */
function announceRecorder() {
  if (announced || typeof BroadcastChannel === "undefined") return;
  announced = true;
  const channel = new BroadcastChannel(RECORDERS_CHANNEL);
  channel.postMessage({ owner: PAGE_ID });
  channel.close();
}

/** The owners (page ids) still alive, or null when this browser cannot tell. */
async function liveOwners() {
  if (!navigator.locks) return null;
  const { held = [] } = await navigator.locks.query();
  return new Set(
    held
      .map((lock) => lock.name)
      .filter((name) => name.startsWith(OWNER_LOCK))
      .map((name) => name.slice(OWNER_LOCK.length)),
  );
}

/** A refusal the server will repeat for this chunk: retrying cannot help. */
class Refused extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

/** Whether `item` may be uploaded as `me` (an item from before owners were kept: by anyone). */
function ownedBy(item, me) {
  return !item.user_id || item.user_id === me;
}

/** Whether `item` waits for its upload as `me`: that identity's, and not refused for good. */
function sendable(item, me) {
  return !item.refused && ownedBy(item, me);
}

/** The identity uploads go as: the stored token's, else the one the refresh cookie restores. */
async function whoAmI() {
  const me = currentUserId();
  if (me) return me;
  try {
    return tokenUser(await getToken());
  } catch {
    return null; // nobody now (the identity is gone): every chunk is held
  }
}

/** A refusal that says nobody can upload now: this browser's identity is gone. */
function identityGone(err) {
  return err instanceof ApiError && ["identity_lost", "no_identity", "signed_out"].includes(err.code);
}

async function send(item) {
  const form = new FormData();
  // The fields come before the file: the server checks access before reading the audio.
  form.append("session_id", item.session_id);
  form.append("start_ms", String(item.start_ms));
  form.append("end_ms", String(item.end_ms));
  form.append("duration_ms", String(item.duration_ms));
  if (item.speaker) form.append("speaker", item.speaker);
  form.append("file", item.blob, item.filename);
  // The session in the query too: a refusal (closed, foreign) comes before the audio is sent.
  // A refused token is restored from the refresh cookie once (or the identity is said gone).
  const path = `/voicebot/chunks?session_id=${encodeURIComponent(item.session_id)}`;
  let response;
  try {
    // This device's clock as it sends: the server compares a chunk's start (on this clock) with a
    // close (on its own) by the difference. A phone an hour ahead had every chunk it recorded
    // offline before a Done pressed elsewhere refused as "after the close" (audit "voicephone").
    const headers = { "X-Sent-At": String(Date.now()) };
    response = await authorizedFetch(path, { method: "POST", body: form, headers });
  } catch (err) {
    const status = err instanceof ApiError ? err.status : 0;
    if (identityGone(err) || !status || status >= 500 || TRANSIENT.has(status)) throw err;
    throw new Refused(status, err.code, err.message);
  }
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** How long a refusal asks to wait before the next try (its `retry_after_s`, bounded), in ms; 0 for none. */
export function serverWaitMs(err) {
  const seconds = Number(err?.details?.retry_after_s);
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(SERVER_WAIT_MAX_MS, seconds * 1000) : 0;
}

/** How many of the kept chunks wait for a guest this browser signed out for good (client.js
 * STRANDED_KEY): nothing will ever upload them. */
function strandedCount(items) {
  return items.filter((item) => !item.refused && strandedIdentity(item.user_id)).length;
}

/** The `refused` marks of the kept chunks the server refused for good, oldest first. */
function refusals(items) {
  return items.filter((item) => item.refused).map((item) => item.refused);
}

// How long an uploaded chunk stays in memory after its answer: should the server's Redis lose its
// last writes (a crash under `appendfsync everysec`), the session's history goes back, and these
// are sent again (the server stores each once: the same audio at the same start is a duplicate).
// Before, a chunk acknowledged in that second was gone from the session and from this browser.
const RECENT_KEPT_MS = 15_000;

export class UploadQueue {
  /**
   * hooks (optional): `onChange(pendingCount, heldCount)` (`refused`: which of the held were
   * refused), `onUploaded(ack, item)`, `onRefused(error, item)`,
   * `onRetry(error, delayMs)`.
   */
  constructor(hooks = {}) {
    this.hooks = hooks;
    this.db = openDb();
    this.running = false;
    this.timer = null;
    this.attempt = 0;
    this.notBefore = 0; // Date.now() before which the server asked not to be sent anything
    this.pending = 0;
    this.held = 0; // chunks kept, not sent: another identity's (see the header), or refused
    this.refused = []; // the `refused` marks ({status, code, message}) of the kept refused chunks
    this.stranded = 0; // of the held, how many wait for a guest signed out for good (strandedCount)
    this.gone = false; // this browser's identity is gone: nothing can be uploaded until it is back
    this.waiters = [];
    this.recent = []; // {item, at}: chunks uploaded in the last RECENT_KEPT_MS (resendRecent)
    // Back online: upload now rather than after the back-off (up to 30 s) a failed try set.
    globalThis.addEventListener?.("online", () => this.kick({ now: true }));
    // This browser is somebody again (a sign-in, a device link): held chunks may be theirs.
    globalThis.addEventListener?.("sessionhub:identity", () => this.kick({ now: true }));
    // ... or nobody (signed out elsewhere): what waits is held, and said so, at once.
    globalThis.addEventListener?.("sessionhub:identity-lost", () => this.kick({ now: true }));
    // Another page of this browser records: what it leaves (a tab closed mid-recording) is taken
    // over by this page as it goes, not by the next page to load, whenever that comes.
    this.outliving = new Set();
    if (typeof BroadcastChannel !== "undefined") {
      this.recorders = new BroadcastChannel(RECORDERS_CHANNEL);
      this.recorders.onmessage = (message) => this.outlive(message.data?.owner);
    }
  }

  /**
   * Once the page `owner` is gone (its Web Lock is granted to this page), recover its partial
   * chunk and upload what it had queued. Before, a tab closed while recording left its last
   * chunk in IndexedDB until some page of the browser loaded again; the browser's other open
   * tab recovered only what it found at its own load, so the session showed no such recording
   * on any device meanwhile (and Done elsewhere made it one the session then refused).
   */
  async outlive(owner) {
    if (!navigator.locks || typeof owner !== "string" || owner === PAGE_ID || this.outliving.has(owner)) return;
    this.outliving.add(owner);
    try {
      await navigator.locks.request(OWNER_LOCK + owner, () => {}); // granted when that page is gone
    } finally {
      this.outliving.delete(owner);
    }
    await this.recover(1);
    this.kick();
  }

  /**
   * Keep one more piece of the chunk being recorded (`meta`: session_id, start_ms, mime,
   * filename); `at` is when the recorder handed it over. Calls for one chunk must be sequential.
   */
  async savePart(key, meta, seq, blob, at) {
    await ownerHeld;
    announceRecorder();
    const db = await this.db;
    await inStores(db, [PARTIALS, PARTS], "readwrite", (s) => {
      s[PARTIALS].put({ ...meta, key, owner: PAGE_ID, end_ms: at, updated_at: Date.now() });
      s[PARTS].put({ key, seq, blob });
    });
  }

  /** The chunk `key` is complete as `item`: queue it and forget its partial, atomically. */
  async finish(key, item) {
    const db = await this.db;
    await inStores(db, [STORE, PARTIALS, PARTS], "readwrite", (s) => {
      if (item) s[STORE].add(item);
      s[PARTIALS].delete(key);
      s[PARTS].delete(partsOf(key));
    });
    this.kick();
    await this.count();
  }

  /**
   * Turn the partial chunks of pages that are gone into uploads (then upload them). Partials of
   * pages still alive (another tab recording, or the page this one replaced, still unloading)
   * are looked at again a little later. Returns how many chunks were recovered.
   */
  async recover(tries = RECOVER_TRIES) {
    const db = await this.db;
    const live = await liveOwners();
    const partials = await inStores(db, [PARTIALS], "readonly", (s) => request(s[PARTIALS].getAll()));
    let recovered = 0;
    let waiting = 0;
    for (const partial of partials) {
      const abandoned = live ? !live.has(partial.owner) : Date.now() - partial.updated_at > STALE_PARTIAL_MS;
      if (partial.owner === PAGE_ID || !abandoned) {
        if (partial.owner !== PAGE_ID) {
          waiting += 1;
          this.outlive(partial.owner); // a page recording when this one loaded
        }
        continue;
      }
      const took = await inStores(db, [STORE, PARTIALS, PARTS], "readwrite", (s) => {
        // Read again inside the write: two tabs recovering at once queue the chunk once.
        const outcome = { done: false };
        request(s[PARTIALS].get(partial.key)).then((current) => {
          if (!current) return;
          return request(s[PARTS].getAll(partsOf(partial.key))).then((parts) => {
            if (parts.length > 0) {
              const blobs = parts.sort((a, b) => a.seq - b.seq).map((p) => p.blob);
              const endMs = Math.max(current.end_ms, current.start_ms);
              s[STORE].add({
                session_id: current.session_id,
                blob: new Blob(blobs, { type: current.mime }),
                filename: current.filename,
                user_id: current.user_id,
                start_ms: current.start_ms,
                end_ms: endMs,
                duration_ms: endMs - current.start_ms,
                recovered: true,
              });
              outcome.done = true;
            }
            s[PARTIALS].delete(partial.key);
            s[PARTS].delete(partsOf(partial.key));
          });
        });
        return outcome;
      });
      if (took.done) recovered += 1;
    }
    if (recovered) this.kick();
    if (waiting && tries > 1) {
      clearTimeout(this.recoverTimer);
      this.recoverTimer = setTimeout(() => this.recover(tries - 1), RECOVER_EVERY_MS);
    }
    return recovered;
  }

  /**
   * Upload again the chunks of `sessionId` answered in the last RECENT_KEPT_MS: the session's
   * history went back (a new epoch: its Redis lost its last writes), and those may be lost with
   * it. Resolves to how many were queued again.
   */
  async resendRecent(sessionId) {
    const now = Date.now();
    const again = this.recent.filter((kept) => now - kept.at <= RECENT_KEPT_MS && kept.item.session_id === sessionId);
    this.recent = this.recent.filter((kept) => !again.includes(kept) && now - kept.at <= RECENT_KEPT_MS);
    if (again.length === 0) return 0;
    const db = await this.db;
    for (const { item } of again) await inStore(db, "readwrite", (store) => store.put(item));
    this.kick({ now: true });
    await this.count();
    return again.length;
  }

  /** Persist a chunk, then upload it (with whatever is still waiting before it). */
  async add(item) {
    const db = await this.db;
    await inStore(db, "readwrite", (store) => store.add(item));
    this.kick(); // not awaited: recording goes on while the upload runs
    await this.count();
  }

  /**
   * Upload everything stored (also what a previous page load left behind). While the server's
   * `retry_after_s` runs, only `now` (the browser back online, another identity, Done) sends:
   * a chunk cut every minute on a full disk no longer hammers it with a try each.
   */
  async kick({ now = false } = {}) {
    if (this.running) return;
    const wait = this.notBefore - Date.now();
    if (!now && wait > 0) {
      if (this.timer === null) this.timer = setTimeout(() => this.kick({ now: true }), wait);
      return;
    }
    clearTimeout(this.timer);
    this.timer = null;
    this.running = true;
    try {
      await this.drain();
    } finally {
      this.running = false;
      await this.count();
    }
  }

  async drain() {
    const db = await this.db;
    for (;;) {
      const items = await inStore(db, "readonly", (store) => store.getAll());
      const me = items.length ? await whoAmI() : null;
      this.gone = items.length > 0 && me === null;
      const ours = this.gone ? [] : items.filter((item) => sendable(item, me));
      this.stranded = strandedCount(items);
      this.setPending(ours.length, items.length - ours.length, refusals(items));
      if (ours.length === 0) return;
      const item = ours[0];
      try {
        const ack = await send(item);
        this.attempt = 0;
        this.notBefore = 0;
        await inStore(db, "readwrite", (store) => store.delete(item.id));
        const now = Date.now();
        this.recent = [...this.recent.filter((kept) => now - kept.at <= RECENT_KEPT_MS), { item, at: now }];
        this.hooks.onUploaded?.(ack, item);
      } catch (err) {
        if (err instanceof Refused) {
          // Kept, never sent again: the recording exists nowhere else (a session closed or
          // deleted from another device while this one was offline refuses it for good).
          const refused = { status: err.status, code: err.code ?? "", message: err.message };
          await inStore(db, "readwrite", (store) => store.put({ ...item, refused }));
          this.hooks.onRefused?.(err, item);
          continue;
        }
        if (identityGone(err)) {
          // Nobody can upload them now: kept, and tried again once this browser is somebody.
          this.gone = true;
          this.setPending(0, items.length);
          return;
        }
        // The server's own wait when it says one (a full disk: 60 s), never less than the back-off.
        const asked = serverWaitMs(err);
        const delay = Math.max(asked, Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** this.attempt));
        this.attempt += 1;
        this.notBefore = asked ? Date.now() + delay : 0;
        this.hooks.onRetry?.(err, delay);
        this.timer = setTimeout(() => this.kick({ now: true }), delay);
        return;
      }
    }
  }

  /** How many chunks wait for their upload as this browser's identity (held ones aside). */
  async count() {
    const db = await this.db;
    const items = await inStore(db, "readonly", (store) => store.getAll());
    const me = currentUserId();
    const ours = this.gone || me === null ? [] : items.filter((item) => sendable(item, me));
    this.stranded = strandedCount(items);
    this.setPending(ours.length, items.length - ours.length, refusals(items));
    return this.pending;
  }

  setPending(count, held = this.held, refused = this.refused) {
    this.pending = count;
    this.held = held;
    this.refused = refused;
    this.hooks.onChange?.(count, held);
    if (count === 0) {
      for (const resolve of this.waiters.splice(0)) resolve(true);
    }
  }

  /** The held chunks (`{session_id, blob, filename, start_ms, ...}`), oldest first. */
  async heldItems() {
    const db = await this.db;
    const items = await inStore(db, "readonly", (store) => store.getAll());
    const me = currentUserId();
    return this.gone || me === null ? items : items.filter((item) => !sendable(item, me));
  }

  /** Forget the held chunks `ids` (their owner has them some other way: a download). */
  async removeHeld(ids) {
    const db = await this.db;
    await inStore(db, "readwrite", (store) => {
      for (const id of ids) store.delete(id);
    });
    await this.count();
  }

  /** Resolves true once nothing is pending, false after `timeoutMs`. */
  async settled(timeoutMs) {
    if ((await this.count()) === 0) return true;
    this.kick({ now: true }); // a person's Done: one try now, whatever wait the server asked
    return new Promise((resolve) => {
      const done = (value) => {
        clearTimeout(timer);
        resolve(value);
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      this.waiters.push(done);
    });
  }
}
