/**
 * The Idempotency-Key of a create, kept until the create is answered.
 *
 * A create whose answer was lost past the page's own resends (the network gone for longer) may
 * have been made: the page cannot know. The person presses again, and a fresh key made a second
 * session, stream or copy. The key of a create not answered is kept instead, for the same request
 * (method, path and body), and the next one sends it again: the server answers with the object the
 * first made (PROTOCOL, "Retries"), or makes it now if the first never arrived. Kept per tab in
 * sessionStorage, so a reload of the page (or a visit back to it) keeps it too.
 */
import { freshId } from "./ids.js";

const STORE_KEY = "sessionhub.creates.unanswered";
// Well inside the day the server keeps a key's answer; an older press is a new request.
const KEEP_MS = 60 * 60 * 1000;

/** What a create whose answer was lost says: it may have been made, and a press again is safe. */
export const UNCONFIRMED_CREATE =
  "No answer from the server, so it may have been made: press again, which is safe (nothing is made twice).";

function read() {
  try {
    const kept = JSON.parse(sessionStorage.getItem(STORE_KEY) ?? "null");
    return kept && typeof kept === "object" && !Array.isArray(kept) ? kept : {};
  } catch {
    return {};
  }
}

function write(kept) {
  try {
    if (Object.keys(kept).length) sessionStorage.setItem(STORE_KEY, JSON.stringify(kept));
    else sessionStorage.removeItem(STORE_KEY);
  } catch {
    // storage refused (a private window, full): the key lives as long as this call only
  }
}

/**
 * The key for the create `method path body`: the one of the same create still unanswered, or a
 * fresh one, kept until `answered(request)` says its answer came.
 */
export function createKey(method, path, body) {
  const request = `${method} ${path} ${JSON.stringify(body ?? null)}`;
  const now = Date.now();
  const kept = Object.fromEntries(Object.entries(read()).filter(([, entry]) => now - entry?.at < KEEP_MS));
  const key = typeof kept[request]?.key === "string" ? kept[request].key : freshId();
  kept[request] = { key, at: kept[request]?.at ?? now };
  write(kept);
  return {
    key,
    /** The create was answered (made, or refused for good): its next press is a new request. */
    answered() {
      const left = read();
      delete left[request];
      write(left);
    },
  };
}

/**
 * Whether an HTTP status answers a create for good. Not: no answer at all (0), `409` (the first
 * still running), a `5xx` (a proxy's, or a failure that may have made it): those keep the key.
 */
export function answersForGood(status) {
  return status > 0 && status < 500 && status !== 409;
}
