/**
 * Chunk uploads that survive failures and page reloads: every recorded chunk is written to
 * IndexedDB first and removed only once the server has acknowledged it (201, or 200 for a
 * duplicate). Failures that may pass (network, 401, 408, 429, 5xx) are retried with
 * exponential back-off; refusals that will not pass (400, 403, 404, 409, 413) drop the chunk
 * and are reported. Uploads run one at a time, oldest first.
 */
import { getToken } from "./client.js";

const DB_NAME = "sessionhub-fab";
const STORE = "uploads";
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 30_000;
const TRANSIENT = new Set([401, 408, 425, 429]);

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
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

/** A refusal the server will repeat for this chunk: retrying cannot help. */
class Refused extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
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
  const token = await getToken();
  // The session in the query too: a refusal (closed, foreign) comes before the audio is sent.
  const response = await fetch(`/voicebot/chunks?session_id=${encodeURIComponent(item.session_id)}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
    body: form,
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.ok) return body;
  if (response.status >= 500 || TRANSIENT.has(response.status)) {
    throw new Error(`upload failed (${response.status})`);
  }
  throw new Refused(response.status, body?.error ?? `http_${response.status}`, body?.message ?? "");
}

export class UploadQueue {
  /**
   * hooks (optional): `onChange(pendingCount)`, `onUploaded(ack, item)`, `onRefused(error, item)`,
   * `onRetry(error, delayMs)`.
   */
  constructor(hooks = {}) {
    this.hooks = hooks;
    this.db = openDb();
    this.running = false;
    this.timer = null;
    this.attempt = 0;
    this.pending = 0;
    this.waiters = [];
  }

  /** Persist a chunk, then upload it (with whatever is still waiting before it). */
  async add(item) {
    const db = await this.db;
    await inStore(db, "readwrite", (store) => store.add(item));
    this.kick(); // not awaited: recording goes on while the upload runs
    await this.count();
  }

  /** Upload everything stored (also what a previous page load left behind). */
  async kick() {
    if (this.running) return;
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
      this.setPending(items.length);
      if (items.length === 0) return;
      const item = items[0];
      try {
        const ack = await send(item);
        this.attempt = 0;
        await inStore(db, "readwrite", (store) => store.delete(item.id));
        this.hooks.onUploaded?.(ack, item);
      } catch (err) {
        if (err instanceof Refused) {
          await inStore(db, "readwrite", (store) => store.delete(item.id));
          this.hooks.onRefused?.(err, item);
          continue;
        }
        const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** this.attempt);
        this.attempt += 1;
        this.hooks.onRetry?.(err, delay);
        this.timer = setTimeout(() => this.kick(), delay);
        return;
      }
    }
  }

  async count() {
    const db = await this.db;
    this.setPending(await inStore(db, "readonly", (store) => store.count()));
    return this.pending;
  }

  setPending(count) {
    this.pending = count;
    this.hooks.onChange?.(count);
    if (count === 0) {
      for (const resolve of this.waiters.splice(0)) resolve(true);
    }
  }

  /** Resolves true once nothing is pending, false after `timeoutMs`. */
  async settled(timeoutMs) {
    if ((await this.count()) === 0) return true;
    this.kick();
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
