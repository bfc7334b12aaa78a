/**
 * sessionhub's shared browser module: the bearer token, JSON calls to the REST API and file
 * downloads, the Socket.IO connection and its badge, and session subscriptions that survive
 * reconnects without a gap or a duplicate. Plain ES module; every page imports what it needs
 * from here, and only this module writes the token record.
 */
import { io } from "../vendor/socket.io.esm.min.js";
import { answersForGood, createKey, UNCONFIRMED_CREATE } from "./create_keys.js";
import { freshId } from "./ids.js";

/**
 * localStorage key of the token record `{token, expires_at, guest, obtained_at}` (unix s, on this
 * browser's clock: see `onThisClock`).
 */
export const TOKEN_KEY = "sessionhub.token";

// Treat a token as expired a little early, so that a request in flight does not race the expiry.
const EXPIRY_MARGIN_S = 30;
const ACK_TIMEOUT_MS = 10_000;
// A call unanswered this long on a connection the browser calls up is said to be still on its way
// (`call`'s `onSlow`): a stalled network (no bytes flow, no close) otherwise shows nothing for
// the whole ACK_TIMEOUT_MS.
const SLOW_MS = 2000;
// Refusals in a row after which the socket stops fetching new guest tokens: a server that
// refuses every token must not be hammered.
const MAX_RENEWALS = 2;
// How long a downloaded file's object URL outlives the click that saves it.
const DOWNLOAD_URL_TTL_MS = 10_000;
// What a call or a create says when the browser was offline all along: it never left.
const OFFLINE_NOT_SENT = "You are offline: it was not sent. Try again once the connection is back.";

/** The page's element with this id. */
export const $ = (id) => document.getElementById(id);

/**
 * `text` a person typed (a name, a note) as a bidi isolate, to put among the page's own words: a
 * right-to-left name would otherwise pull the neighbouring "(0:05)" or "," into its run.
 */
export function bdi(text) {
  const node = document.createElement("bdi");
  node.textContent = text;
  return node;
}

/**
 * A refusal from the server, carrying its wire code (`session_not_found`, `forbidden`, ...) and
 * `details`: whatever else the refusal said (`retry_after_s`, `limit`, `state`, `details`, ...).
 */
export class ApiError extends Error {
  constructor(code, message, status = 0, details = {}) {
    super(message || code);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

/** Whether `err` is a call that got no answer (the server unreachable, or the connection lost
 * before the answer came): whatever it asked may have been done. */
export function noAnswer(err) {
  return err instanceof ApiError && err.status === 0;
}

/** The fields of an error body or ack beyond the ones ApiError names. */
function extraFields(body, named) {
  if (!body || typeof body !== "object" || Array.isArray(body)) return {};
  return Object.fromEntries(Object.entries(body).filter(([key]) => !named.includes(key)));
}

// --- token ------------------------------------------------------------------------------

function storedToken() {
  try {
    const record = JSON.parse(localStorage.getItem(TOKEN_KEY) ?? "null");
    return record && typeof record.token === "string" && record.token ? record : null;
  } catch {
    return null;
  }
}

/** Who `token` says its bearer is (its `sub`), or null; read, not checked: the server checks. */
export function tokenUser(token) {
  try {
    const payload = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    const sub = JSON.parse(atob(payload)).sub;
    return typeof sub === "string" ? sub : null;
  } catch {
    return null;
  }
}

/** Whose token this browser holds now (fresh or not), or null. */
export function currentUserId() {
  const record = storedToken();
  return record ? tokenUser(record.token) : null;
}

/** Whether this browser holds a token record (a first visit has none, and mints no guest to look). */
export function hasToken() {
  return storedToken() !== null;
}

/**
 * Whether this browser's token is its refresh cookie's (a device's): only then is a new one of
 * the same identity one refresh away. A token from elsewhere (a bot's sign-in link, one pasted
 * on /admin) is not, and refreshing would bring back whatever identity the cookie holds.
 */
export function hasDeviceToken() {
  return storedToken()?.device === true;
}

/**
 * `expiresAt` (unix s, on the server's clock) of `token`, moved onto this browser's clock: the
 * token's life as the server counted it (its `exp` less its `iat`) from now. A phone whose clock
 * runs ahead of the server's otherwise found every token expired at birth and renewed it on every
 * call (each renewal rotating the refresh cookie, up to the server's limit); one behind kept
 * presenting tokens the server had let run out. A token without `iat` keeps its `expiresAt`.
 */
function onThisClock(token, expiresAt) {
  if (typeof expiresAt !== "number" || !Number.isFinite(expiresAt)) return expiresAt;
  try {
    const payload = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    const iat = JSON.parse(atob(payload)).iat;
    if (typeof iat === "number" && Number.isFinite(iat) && iat <= expiresAt)
      return Date.now() / 1000 + (expiresAt - iat);
  } catch {
    // not a JWT this page can read: the server's time stands
  }
  return expiresAt;
}

/**
 * Keep `token` as this browser's identity. `expiresAt` (unix s) may be unknown: a record without
 * it is tried, and the server decides. Only a `guest` token is ever replaced by a new guest.
 */
export function keepToken(token, { expiresAt, guest = false } = {}) {
  localStorage.removeItem(SIGNED_OUT_KEY); // somebody again, by the person's choice (a pasted token)
  const record = { token, guest, obtained_at: Date.now() / 1000 };
  if (typeof expiresAt === "number" && Number.isFinite(expiresAt)) record.expires_at = onThisClock(token, expiresAt);
  localStorage.setItem(TOKEN_KEY, JSON.stringify(record));
}

/** Keep `token` (a signed-in user's, handed over by the page) unless it is already the one kept. */
export function adoptToken(token) {
  if (storedToken()?.token !== token) keepToken(token);
}

function isFresh(record) {
  // A record without expires_at (put there by a sign-in flow) is tried; the server decides.
  if (typeof record.expires_at !== "number") return true;
  // A token living less than the margin (a short SESSIONHUB_GUEST_TOKEN_TTL_S) gets a quarter of
  // its life as margin: else it would count as expired from birth, and be renewed on every call.
  const life = typeof record.obtained_at === "number" ? record.expires_at - record.obtained_at : Infinity;
  return record.expires_at - Math.min(EXPIRY_MARGIN_S, life / 4) > Date.now() / 1000;
}

// A token this page may restore by itself: one backed by this browser's refresh cookie
// (`device`), or a guest token from before the cookies. A token pasted in by hand is not:
// replacing it would silently turn a signed-in user into somebody else.
function renewable(record) {
  return record === null || record.guest === true || record.device === true;
}

// Past half its life a token is renewed in the background, for the same user.
function dueForRefresh(record) {
  if (!renewable(record) || typeof record.obtained_at !== "number") return false;
  return Date.now() / 1000 > (record.obtained_at + record.expires_at) / 2;
}

/**
 * The bearer token: the stored one while fresh, else this browser's identity restored from
 * its refresh cookie. Only a browser that never had an identity becomes a new guest; one whose
 * identity cannot be restored is told so (ApiError `identity_lost`, see `restoreIdentity`).
 */
export async function getToken() {
  const record = storedToken();
  if (record && isFresh(record)) {
    if (dueForRefresh(record)) restoreIdentity().catch(() => {});
    return record.token;
  }
  if (!renewable(record)) throw new ApiError("unauthorized", "Your sign-in has expired; sign in again.", 401);
  return restoreIdentity();
}

/** Forget `token` after the server refused it; false when it is not ours to replace. */
function dropRefused(token) {
  const record = storedToken();
  if (!renewable(record)) return false;
  if (record && record.token === token) {
    // Remember that there was an identity: restoring must say so if it fails, not mint a guest.
    if (localStorage.getItem(IDENTITY_KEY) === null)
      localStorage.setItem(IDENTITY_KEY, JSON.stringify({ user_id: null }));
    localStorage.removeItem(TOKEN_KEY);
  }
  return true;
}

// --- identity: the refresh cookie (issue 22) -------------------------------------------
// The identity itself is an HttpOnly cookie this script never sees; `IDENTITY_KEY` only
// remembers that this browser had one, so that losing it is said, never papered over.

/** localStorage key of `{user_id, name, kept_for_s?}` (`kept_for_s` null: kept while its devices are used): the identity this browser last had. */
export const IDENTITY_KEY = "sessionhub.identity";

/**
 * localStorage key of `{user_id, at}`: a tab of this browser is signing `user_id` out on purpose
 * (Sign out, Sign out everywhere), written before its request. The server's `signed_out` push, and
 * its refusals of the device, reach the browser's other tabs while that request is still out, before
 * its tab forgets the identity: they are the person's own sign-out (nobody), not an identity lost,
 * and marking it lost then could land after that tab's forgetting (another tab's storage is read
 * as it was a moment ago) and leave every tab saying "This device was signed out."
 */
const LEAVING_KEY = "sessionhub.leaving";
// Long enough for any sign-out's request and push; a later refusal of that user is another matter.
const LEAVING_FOR_MS = 60_000;

/**
 * localStorage key of `{at}` (ms): this browser was signed out on purpose (Sign out, Sign out
 * everywhere) and has kept no identity since. While it is there no page, in any tab, now or on a
 * later visit, makes the browser a new guest by itself (a page that makes one on a first visit
 * would: the sign-out cleared the cookie, and the browser looked new): the person chooses
 * (Start as a new guest, a device link, a passkey), and keeping an identity removes it.
 */
export const SIGNED_OUT_KEY = "sessionhub.signed_out";

/** Whether this browser was signed out on purpose and is nobody since (see SIGNED_OUT_KEY). */
export function signedOutOnPurpose() {
  return localStorage.getItem(SIGNED_OUT_KEY) !== null && storedToken() === null && knownIdentity() === null;
}

const SIGNED_OUT_MESSAGE =
  "You signed out on this browser. Start as a new guest, or sign in with a passkey or a device link.";

/** The refusal of a page's call while this browser is signed out on purpose: nothing was sent. */
function signedOutError() {
  return new ApiError("signed_out", SIGNED_OUT_MESSAGE, 401, { reason: "signed_out" });
}

/** Whether a tab of this browser has just signed `userId` out on purpose (see LEAVING_KEY). */
function leftOnPurpose(userId) {
  try {
    const leaving = JSON.parse(localStorage.getItem(LEAVING_KEY) ?? "null");
    return Boolean(userId) && leaving?.user_id === userId && Math.abs(Date.now() - leaving.at) < LEAVING_FOR_MS;
  } catch {
    return false;
  }
}

/** Forget which identity this browser had (before starting over as a new guest on purpose). */
export function forgetIdentity() {
  lostHere = null;
  localStorage.removeItem(IDENTITY_KEY);
}

// The server's definitive refusal of this browser's identity (signed out, reused, expired), once
// heard: kept in the page, and in IDENTITY_KEY (`lost: reason`) for this browser's other pages
// and tabs. Asking again would only be refused again (a console error each time, six and more
// on a page that calls the API from several places), so nobody asks until an identity is kept
// anew (a sign-in, a device link, a new guest: `rememberIdentity`).
let lostHere = null;

// The refusals that say the identity is gone for good (any other is this page's business only).
const FINAL_REASONS = new Set(["revoked", "reused", "expired", "no_credential"]);

/** Remember that this browser's identity is gone, for `reason` (a refusal's `details.reason`). */
function markLost(reason) {
  const known = knownIdentity();
  // Nothing left to mark (signed out on purpose, or storage cleared), a sign-out on purpose under
  // way in some tab, or a refusal that may pass.
  if (known === null || !FINAL_REASONS.has(reason) || leftOnPurpose(known.user_id)) return;
  localStorage.setItem(IDENTITY_KEY, JSON.stringify({ ...known, lost: reason }));
}

/** The refusal already heard here or in another tab, or null: this identity is not asked for again. */
function alreadyLost() {
  const known = knownIdentity();
  if (typeof known?.lost === "string")
    return lostHere ?? lost(new ApiError("unauthorized", "", 401, { reason: known.lost }));
  // Another tab has kept an identity since (a new guest, a sign-in): this page may use it.
  if (lostHere && FINAL_REASONS.has(lostHere.details?.reason) && known?.user_id) lostHere = null;
  return lostHere;
}

const REFRESH_LOCK = "sessionhub.refresh";
// Sent with every cookie request: a request a cross-site form cannot make (see PROTOCOL.md).
const PAGE_HEADERS = { "Content-Type": "application/json", "X-Sessionhub-Client": "web" };

function rememberIdentity(body) {
  lostHere = null;
  localStorage.removeItem(LEAVING_KEY); // an identity again: a refusal from now on is about it
  localStorage.removeItem(SIGNED_OUT_KEY);
  const record = {
    token: body.token,
    expires_at: onThisClock(body.token, body.expires_at),
    guest: body.guest === true,
    device: true,
    obtained_at: Date.now() / 1000,
  };
  localStorage.setItem(TOKEN_KEY, JSON.stringify(record));
  // How long a guest is kept without a visit (`rememberKeptFor`) stays known for the same identity.
  const keptFor = knownIdentity()?.user_id === body.user_id ? knownIdentity()?.kept_for_s : undefined;
  localStorage.setItem(
    IDENTITY_KEY,
    JSON.stringify({
      user_id: body.user_id,
      name: body.name ?? "",
      ...(keptFor === undefined ? {} : { kept_for_s: keptFor }),
    }),
  );
  window.dispatchEvent(new CustomEvent("sessionhub:identity", { detail: { user_id: body.user_id } }));
  return record.token;
}

/**
 * Keep `name` as the display name of `userId`, this browser's identity (renamed here): the
 * browser's other tabs follow it (a storage event), whether or not a refresh follows.
 */
export function rememberName(userId, name) {
  const known = knownIdentity();
  if (known?.user_id !== userId || known.lost) return;
  localStorage.setItem(IDENTITY_KEY, JSON.stringify({ ...known, name }));
}

/**
 * Keep how long `userId` (this browser's identity) is kept without a visit (`/api/auth/me`'s
 * `forgotten_after_s`; null for an identity kept as long as its devices are used: an account, a
 * guest that saved a passkey): once it has run out, the page can say in days what became of it,
 * when the server no longer answers for it (and, for a kept one, that nothing was deleted).
 */
export function rememberKeptFor(userId, seconds) {
  const known = knownIdentity();
  if (known?.user_id !== userId || known.lost) return;
  const { kept_for_s: _, ...rest } = known;
  const keptFor = typeof seconds === "number" || seconds === null ? { kept_for_s: seconds } : {};
  localStorage.setItem(IDENTITY_KEY, JSON.stringify({ ...rest, ...keptFor }));
}

/** The identity this browser last had (`{user_id, name, kept_for_s?}`, see `rememberKeptFor`), or null. */
export function knownIdentity() {
  try {
    return JSON.parse(localStorage.getItem(IDENTITY_KEY) ?? "null");
  } catch {
    return null;
  }
}

async function authPost(path, extraHeaders = {}) {
  const response = await request(path, {
    method: "POST",
    headers: { ...PAGE_HEADERS, ...extraHeaders },
    body: "{}",
    credentials: "same-origin",
  });
  return { response, body: await readJson(response) };
}

// A refresh whose answer is lost (the network dropped) is sent again after these pauses: the
// server made the rotation, and within its grace time it answers the same cookie again.
const REFRESH_RETRY_MS = [1000, 3000];

async function refreshPost(bearer) {
  for (const waitMs of [...REFRESH_RETRY_MS, null]) {
    try {
      return await authPost("/api/auth/refresh", bearer);
    } catch (err) {
      if (waitMs === null) throw err;
      await sleep(waitMs);
    }
  }
}

function lost(error) {
  const message =
    {
      revoked: "This device was signed out.",
      reused: "Your sign-in was used from somewhere else, so this device was signed out to be safe.",
      expired: "Your sign-in here has expired.",
    }[error.details?.reason] ?? "Your identity on this device could not be restored.";
  const err = new ApiError("identity_lost", message, 401, error.details);
  lostHere = err;
  // Signed out on purpose in another tab: the page follows that tab (nobody, once it forgot the
  // identity: a storage event), and says nothing was lost.
  if (leftOnPurpose(knownIdentity()?.user_id)) return err;
  markLost(error.details?.reason);
  window.dispatchEvent(new CustomEvent("sessionhub:identity-lost", { detail: err }));
  return err;
}

/** Whether this browser holds a refresh cookie (HttpOnly: only the server can tell). */
async function holdsCredential() {
  const response = await request("/api/auth/credential", { credentials: "same-origin" });
  if (!response.ok) return true; // cannot tell (an older server): the refresh finds out
  return (await readJson(response))?.present !== false;
}

async function refreshOnce(orNewGuest) {
  const gone = alreadyLost();
  if (gone) throw gone;
  // Signed out on purpose: nobody until the person chooses, whichever page asks (nothing to ask
  // the server either: the sign-out cleared the cookie).
  if (signedOutOnPurpose()) throw signedOutError();
  if (storedToken() === null && knownIdentity() === null && !(await holdsCredential())) {
    // A first visit: nobody to restore. Asked, not tried: a refused refresh is a console error.
    if (orNewGuest) return startNewGuest();
    throw new ApiError("no_identity", "This browser has no identity yet.", 401, { reason: "no_credential" });
  }
  const legacy = storedToken();
  // A guest token from before the cookies still proves who it is: the server then sets the cookie.
  // A device's token not yet run out goes along too: should Redis have lost the device (its last
  // second lost in a crash), the server opens it again by its token instead of saying "expired".
  const unexpired = legacy !== null && typeof legacy.expires_at === "number" && legacy.expires_at > Date.now() / 1000;
  const sent = (legacy?.guest === true && !legacy.device && isFresh(legacy)) || (legacy?.device && unexpired);
  const bearer = sent ? { Authorization: `Bearer ${legacy.token}` } : {};
  const { response, body } = await refreshPost(bearer);
  if (response.ok) return rememberIdentity(body);
  const error = toError(response, body);
  if (error.code === "rate_limited" || response.status >= 500) throw error;
  const hadOne = storedToken() !== null || knownIdentity() !== null;
  if (error.details?.reason === "no_credential" && !hadOne) {
    if (orNewGuest) return startNewGuest(); // a first visit: nobody to lose
    throw new ApiError("no_identity", "This browser has no identity yet.", 401, error.details);
  }
  throw lost(error);
}

let refreshing = null;

/**
 * This browser's identity, restored from its refresh cookie (one request for every caller,
 * and one tab at a time: two tabs presenting the same cookie would look like a stolen one).
 * Rejects with ApiError `identity_lost` (and fires `sessionhub:identity-lost` on window) when
 * there was an identity and it cannot be restored. A browser that never had one becomes a new
 * guest, unless `orNewGuest` is false (then: ApiError `no_identity`).
 */
export function restoreIdentity({ orNewGuest = true } = {}) {
  // A caller that must not mint a guest joins a restore in flight, but never lends its
  // "no guest" to the callers that may (they would be left without a token).
  if (!orNewGuest) return refreshing ?? lockedRefresh(false);
  refreshing ??= lockedRefresh(true).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

function lockedRefresh(orNewGuest) {
  const startedAt = Date.now() / 1000;
  const run = async () => {
    const record = storedToken(); // another tab (or caller) may have refreshed while we waited
    if (record?.device && isFresh(record) && record.obtained_at >= startedAt) return record.token;
    return refreshOnce(orNewGuest);
  };
  return navigator.locks ? navigator.locks.request(REFRESH_LOCK, run) : run();
}

/** Become a new guest on purpose (first visit, or after the page said the old identity is gone). */
export async function startNewGuest() {
  const { response, body } = await authPost("/api/auth/guest");
  if (!response.ok) throw toError(response, body);
  return rememberIdentity(body);
}

/**
 * Whose identity a one-time link signs this browser in as (`{user_id, name}`); the link stays
 * unused. Rejects with ApiError (`unauthorized` when the link was used or has expired).
 */
export async function peekLoginToken(loginToken) {
  return postLoginToken("/api/auth/one_time/peek", loginToken);
}

/** POST a one-time link's token to `path` as a page request; its answer, or an ApiError. */
async function postLoginToken(path, loginToken, attempt = undefined) {
  const response = await request(path, {
    method: "POST",
    headers: PAGE_HEADERS,
    body: JSON.stringify(attempt ? { token: loginToken, attempt } : { token: loginToken }),
    credentials: "same-origin",
  });
  const body = await readJson(response);
  if (!response.ok) throw toError(response, body);
  return body;
}

/**
 * Redeem a one-time link (a device link, or a chat bot's `/login` link) and keep what it gives.
 * Rejects with ApiError (`unauthorized` when the link was used or has expired). `onRetry` is
 * called before each redemption sent again, for the page to say so.
 */
export async function signInWithLoginToken(loginToken, { onRetry = () => {} } = {}) {
  // A redemption whose answer is lost (the network dropped: the server used the link up and
  // opened a device whose cookie never came) is sent again with the same attempt id after the
  // refresh's pauses: within a minute the server answers it with a device (PROTOCOL, one_time).
  const attempt = freshId();
  let body;
  for (const waitMs of [...REFRESH_RETRY_MS, null]) {
    try {
      body = await postLoginToken("/api/auth/one_time", loginToken, attempt);
      break;
    } catch (err) {
      if (waitMs === null || err.status !== 0) throw err; // an answer (a refusal) is final
      onRetry();
      await sleep(waitMs);
    }
  }
  // A device link opens a device (its cookie came with this answer); a bot link gives a bare token.
  if (body.device_id) {
    rememberIdentity(body);
    return body.user_id;
  }
  const record = {
    token: body.token,
    expires_at: onThisClock(body.token, body.expires_at),
    guest: false,
    obtained_at: Date.now() / 1000,
  };
  localStorage.removeItem(SIGNED_OUT_KEY);
  localStorage.setItem(TOKEN_KEY, JSON.stringify(record));
  return body.user_id;
}

/** True when this browser can use passkeys (WebAuthn with the JSON helpers). */
export function passkeysSupported() {
  return (
    typeof PublicKeyCredential !== "undefined" && typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function"
  );
}

let offered = null; // this page's one question to the server: do you offer passkeys?

/**
 * Resolves to true when this browser can use passkeys and the server offers them (a server
 * without SESSIONHUB_PUBLIC_URL does not). Unanswered (offline), true: the press says if not.
 */
export function passkeysOffered() {
  if (!passkeysSupported()) return Promise.resolve(false);
  offered ??= request("/api/auth/passkeys/offered", { credentials: "omit" })
    .then((response) => (response.ok ? response.json() : { enabled: true }))
    .then((body) => body.enabled !== false)
    .catch(() => true);
  return offered;
}

/** Keep this identity with a new passkey (the browser asks the person); resolves to its view. */
export async function addPasskey(label = "") {
  const { challenge_id, options } = await api("/api/auth/passkeys/register/options", { method: "POST" });
  const credential = await navigator.credentials.create({
    publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
  });
  try {
    return await api("/api/auth/passkeys/register", {
      method: "POST",
      body: { challenge_id, credential: credential.toJSON(), label },
    });
  } catch (err) {
    // No answer: the server may have saved it (`unconfirmed`); a refusal saved nothing.
    if (noAnswer(err)) throw new ApiError(err.code, err.message, 0, { unconfirmed: true });
    throw err;
  }
}

/** Sign this browser in with a passkey: it becomes the passkey's user (a new device of theirs). */
export async function signInWithPasskey() {
  const started = await authPost("/api/auth/passkeys/login/options");
  if (!started.response.ok) throw toError(started.response, started.body);
  const { challenge_id, options } = started.body;
  const credential = await navigator.credentials.get({
    publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
  });
  const response = await request("/api/auth/passkeys/login", {
    method: "POST",
    headers: PAGE_HEADERS,
    body: JSON.stringify({ challenge_id, credential: credential.toJSON() }),
    credentials: "same-origin",
  });
  const body = await readJson(response);
  if (!response.ok) throw toError(response, body);
  rememberIdentity(body);
  return body.user_id;
}

/**
 * localStorage key of the ids of the guests this browser signed out for good: no passkey, and no
 * other device left signed in as it (the person was asked first). Nothing can sign in as such a
 * guest again, so what waits here for it (the FAB's held recordings) is said to be stranded, not
 * to upload "once you sign in again". The last STRANDED_KEPT, newest last.
 */
export const STRANDED_KEY = "sessionhub.stranded";
const STRANDED_KEPT = 20;

/** Whether `userId` is a guest this browser signed out for good (see STRANDED_KEY). */
export function strandedIdentity(userId) {
  // Signed in as it after all (a link made before the sign-out): not stranded.
  return Boolean(userId) && userId !== currentUserId() && strandedIds().includes(userId);
}

function strandedIds() {
  try {
    const ids = JSON.parse(localStorage.getItem(STRANDED_KEY) ?? "[]");
    return Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : [];
  } catch {
    return [];
  }
}

/**
 * Sign this device out (`everywhere`: every device of this user); the page then has no identity.
 * `stranding`: the person was told nothing could sign in as this guest again, and went on.
 */
export async function signOut({ everywhere = false, stranding = false } = {}) {
  const userId = knownIdentity()?.user_id;
  if (userId) localStorage.setItem(LEAVING_KEY, JSON.stringify({ user_id: userId, at: Date.now() }));
  try {
    const body = await signOutRequest(everywhere);
    if (stranding && userId) {
      const ids = [...strandedIds().filter((id) => id !== userId), userId].slice(-STRANDED_KEPT);
      localStorage.setItem(STRANDED_KEY, JSON.stringify(ids));
    }
    // First, so that the browser's other tabs, told by the storage events that follow, find it.
    localStorage.setItem(SIGNED_OUT_KEY, JSON.stringify({ at: Date.now() }));
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(IDENTITY_KEY);
    return body;
  } catch (err) {
    localStorage.removeItem(LEAVING_KEY); // still signed in: a revocation from now on is not ours
    throw err;
  }
}

async function signOutRequest(everywhere) {
  let body;
  if (everywhere) {
    // With a current token (restored first if needed): this must not fail silently.
    body = await api("/api/auth/logout_all", { method: "POST", body: {} });
  } else {
    const headers = { ...PAGE_HEADERS };
    const record = storedToken();
    if (record) headers.Authorization = `Bearer ${record.token}`;
    const response = await request("/api/auth/logout", {
      method: "POST",
      headers,
      body: "{}",
      credentials: "same-origin",
    });
    body = await readJson(response);
    if (!response.ok) throw toError(response, body);
  }
  return body;
}

// --- REST -------------------------------------------------------------------------------

async function request(path, init) {
  try {
    return await fetch(path, init);
  } catch {
    throw new ApiError("unavailable", "The server cannot be reached.");
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function toError(response, body) {
  const code = typeof body?.error === "string" ? body.error : `http_${response.status}`;
  const message = typeof body?.message === "string" ? body.message : response.statusText;
  return new ApiError(code, message, response.status, extraFields(body, ["error", "message"]));
}

// An idempotent create whose answer is lost (no answer, 409 while the first run still runs, a
// proxy's 502-504) is sent again with the same Idempotency-Key after these pauses: the retry
// gets the first run's answer instead of making a second session.
const LOST_ANSWER_RETRY_MS = [500, 1500];
const LOST_ANSWER_STATUSES = new Set([409, 502, 503, 504]);

/**
 * Call the JSON API with the bearer token; resolves to the parsed body, rejects with ApiError.
 * A refused guest token is replaced once and the call repeated. `idempotent`: a create sent with
 * an Idempotency-Key (PROTOCOL, Retries) and sent again with it when its answer is lost.
 */
export async function api(path, { method = "GET", body, idempotent = false } = {}) {
  const create = idempotent ? createKey(method, path, body) : null;
  const key = create?.key ?? null;
  const waits = key ? [...LOST_ANSWER_RETRY_MS] : [];
  for (let attempt = 0; ; attempt += 1) {
    const token = await getToken();
    const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (key) headers["Idempotency-Key"] = key;
    let response;
    // Offline before the first send, nothing can have reached the server: no retries to wait for.
    const offlineFirst = attempt === 0 && navigator.onLine === false;
    try {
      response = await request(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      // Its key stays: it never left, but an earlier press of the same create may have.
      if (offlineFirst && key) throw new ApiError("unavailable", OFFLINE_NOT_SENT);
      if (!waits.length) throw key ? unconfirmed(err) : err;
      await sleep(waits.shift());
      continue;
    }
    const data = await readJson(response);
    if (response.ok) {
      create?.answered();
      return data;
    }
    if (waits.length && LOST_ANSWER_STATUSES.has(response.status)) {
      await sleep(waits.shift());
      continue;
    }
    if (response.status === 401 && attempt === 0 && dropRefused(token)) continue;
    const error = toError(response, data);
    if (!create) throw error;
    if (answersForGood(response.status)) create.answered();
    // Still running, or a proxy's 502-504 (the server's own 503 says why, and made nothing).
    else if (response.status === 409 || (LOST_ANSWER_STATUSES.has(response.status) && !data?.error)) {
      throw unconfirmed(error);
    }
    throw error;
  }
}

/** What a page says of a create that failed: "`prefix`: why", or, its answer lost, that it may have been made. */
export function createFailure(prefix, err) {
  return err?.details?.unconfirmed ? err.message : `${prefix}: ${err?.message}`;
}

/** A keyed create's error when no answer came: it may have been made, and pressing again is safe. */
function unconfirmed(err) {
  return new ApiError("unavailable", UNCONFIRMED_CREATE, err.status ?? 0, { unconfirmed: true });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Fetch `path` with the bearer token as a file, not JSON: resolves to the response, body unread.
 * A refusal rejects with ApiError and its wire code; a refused guest token is replaced once.
 */
export async function authorizedFetch(path, init = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const token = await getToken();
    const headers = { ...(init.headers ?? {}), Authorization: `Bearer ${token}` };
    const response = await request(path, { ...init, headers });
    if (response.ok) return response;
    if (response.status === 401 && attempt === 0 && dropRefused(token)) continue;
    throw toError(response, await readJson(response));
  }
}

/**
 * Run `work` with `buttons` disabled meanwhile (no second press while it runs); resolves to what
 * it resolves to. A disabled button drops the keyboard's focus to the page, the next Tab starting
 * from the top: the one that had it gets it back once enabled again, unless the focus has moved.
 */
export async function whileBusy(buttons, work) {
  const focused = buttons.find((button) => button === document.activeElement) ?? null;
  for (const button of buttons) button.disabled = true;
  try {
    return await work();
  } finally {
    for (const button of buttons) button.disabled = false;
    const lost = document.activeElement === null || document.activeElement === document.body;
    if (focused?.isConnected && lost) focused.focus();
  }
}

/** Hand `blob` to the browser as a download named `filename`. */
export function saveFile(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), DOWNLOAD_URL_TTL_MS);
}

/**
 * Download `path` as a file: a plain link cannot carry the bearer token, so fetch it and hand it
 * over. `filename` is a name or `(response) => name`. Rejects with ApiError.
 */
export async function download(path, filename) {
  const response = await authorizedFetch(path);
  const blob = await response.blob();
  saveFile(blob, typeof filename === "function" ? filename(response) : filename);
  return response; // its headers stay readable (e.g. how many parts an export has)
}

// --- Socket.IO --------------------------------------------------------------------------

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  connected: "Connecting…", // connected, not yet subscribed: live once the page's subscribe is answered
  live: "Live",
  offline: "Offline — reconnecting…",
  // Refused by the connections-per-address cap (a crowd behind one address): not offline, and
  // the manager keeps trying, so the place a closed connection gives back is taken.
  crowded: "Too many connections from this network — retrying…",
  unauthorized: "Not signed in",
};

/**
 * On a stream's pages "Live" is the stream's own state, which may be another: there the badge
 * says the connection is up in other words.
 */
export const STREAM_CONNECTION_TEXT = { live: "Connected" };

/**
 * Show a connection state ("connecting", "connected", "live", "offline", "crowded", "unauthorized") on
 * `badge`; `words` overrides the text of some states.
 */
export function showConnection(badge, state, words = {}) {
  badge.dataset.state = state;
  const text = words[state] ?? CONNECTION_TEXT[state] ?? CONNECTION_TEXT.connecting;
  // The badge is a live region: the same words written again were said again, six times for one
  // network drop while the socket retried (audit "voicephone").
  if (badge.textContent !== text) badge.textContent = text;
}

/**
 * Open the page's Socket.IO connection to this server.
 *
 * `onState(state, detail)` hears "connecting", "connected", "offline", "crowded" and "unauthorized".
 */
export function connect({ onState = () => {} } = {}) {
  let renewals = 0;
  // Why the last handshake went without a token, when that may pass (see tokenFailedForNow),
  // and the pause before the next try of one.
  let noTokenForNow = null;
  let tokenRetryMs = TOKEN_RETRY_FIRST_MS;
  let tokenRetry = null;
  const socket = io({
    transports: ["websocket", "polling"],
    tryAllTransports: true,
    // The callback form runs on every (re)connect, so each attempt presents a current token.
    auth: (send) => {
      getToken().then(
        (token) => {
          noTokenForNow = null;
          presented.set(socket, token);
          send({ token });
        },
        (err) => {
          noTokenForNow = tokenFailedForNow(err) ? err : null;
          presented.delete(socket);
          send({});
        },
      );
    },
  });
  socket.on("connect", () => {
    renewals = 0;
    tokenRetryMs = TOKEN_RETRY_FIRST_MS;
    // At each connect: what the page was not told while away (a rename elsewhere) comes with it.
    followUser(socket);
    onState("connected");
  });
  // Signed out (the server's `signed_out`, then its disconnect) or refused for good: the page says
  // "Not signed in" and waits for an identity, not "reconnecting…" for ever (socket.io-client
  // does not reconnect after a server's disconnect or a refusal).
  let waitingForIdentity = false;
  // The browser holds another identity than this connection's (another tab signed in, or
  // started over, before this connection heard its old identity's sign-out).
  const movedOn = () => {
    const stored = storedToken()?.token;
    return Boolean(stored) && stored !== presented.get(socket);
  };
  // The server took a permission back from this connection's token (an operator withdrew the
  // user's admin): its disconnect follows, and the connection is made again with a token the
  // refresh cookie gives as the user stands now (socket.io-client would not reconnect by itself).
  let withdrawn = false;
  socket.on("permissions_withdrawn", () => {
    withdrawn = true;
  });
  socket.on("disconnect", (reason) => {
    if (withdrawn && reason === "io server disconnect") {
      withdrawn = false;
      dropRefused(presented.get(socket));
      onState("connecting");
      socket.connect();
      return;
    }
    withdrawn = false;
    if (!waitingForIdentity) onState("offline", reason);
    else if (movedOn()) identityBack();
  });
  socket.on("signed_out", (data) => {
    waitingForIdentity = true;
    if (movedOn()) {
      onState("connecting"); // not this browser's identity any more: its own follows
    } else if (knownIdentity() === null || leftOnPurpose(knownIdentity().user_id)) {
      // This browser signed out on purpose (another tab's Sign out, done or under way): nobody,
      // as that tab shows, not an identity lost.
      localStorage.removeItem(TOKEN_KEY);
      onState("unauthorized");
    } else {
      signedOutHere(data, onState);
    }
  });
  // An identity again (signed in, or a new guest, in this tab or another of this browser): the
  // connection is made again with it, and the page's subscriptions follow (they resubscribe at
  // each connect).
  const identityBack = () => {
    if (!waitingForIdentity || socket.connected) return;
    waitingForIdentity = false;
    renewals = 0;
    onState("connecting");
    socket.connect();
  };
  window.addEventListener("sessionhub:identity", identityBack);
  window.addEventListener("storage", (event) => {
    if (event.key === TOKEN_KEY && event.newValue) identityBack();
  });
  // The person renamed themselves (here or on another device): the page's identity badge follows
  // (web/js/identity.js). Every connection follows the user's renames (followUser).
  socket.on("user_renamed", renamed);
  socket.on("connect_error", (err) => {
    if (err?.message !== "unauthorized") {
      // The manager retries by itself. A handshake refused 429 is the per-address cap: a
      // WebSocket's refusal shows no status, but the long-polling one tried after it does.
      onState(err?.description === 429 ? "crowded" : "offline", err?.message);
      return;
    }
    // No token to present because the refresh failed for now (the server's Redis away, a 503, the
    // refresh rate-limited, no answer): not "Not signed in" for good, which left a page open past
    // its token's life stuck until reloaded, every press meanwhile never sent (audit "longopen").
    // Offline, and the handshake is tried again after a pause, doubling up to a bound.
    if (noTokenForNow !== null && !lostHere) {
      onState("offline", noTokenForNow.message);
      clearTimeout(tokenRetry);
      tokenRetry = setTimeout(() => {
        if (!socket.connected && !waitingForIdentity) socket.connect();
      }, tokenRetryMs);
      tokenRetryMs = Math.min(tokenRetryMs * 2, TOKEN_RETRY_MAX_MS);
      return;
    }
    // A refused token is final for socket.io-client: renew (a guest token only) and retry here,
    // unless the identity is gone for good (asking again is refused again).
    if (renewals < MAX_RENEWALS && !lostHere && dropRefused(presented.get(socket))) {
      renewals += 1;
      onState("connecting");
      socket.connect();
      return;
    }
    waitingForIdentity = true;
    onState("unauthorized", err?.data?.message ?? err.message);
  });
  onState("connecting");
  return socket;
}

// A handshake that went without a token because the refresh failed for now is tried again after
// this pause, doubled at each failure up to the bound.
const TOKEN_RETRY_FIRST_MS = 1000;
const TOKEN_RETRY_MAX_MS = 10_000;

/** Whether getting a token failed for a reason that passes (no answer, the server's 5xx, a 429),
 * not because the identity is gone or was never there (a 4xx answer). */
function tokenFailedForNow(err) {
  const status = err?.status ?? 0;
  return status === 0 || status >= 500 || status === 429 || err?.code === "rate_limited";
}

function renamed(data) {
  window.dispatchEvent(new CustomEvent("sessionhub:renamed", { detail: data }));
}

// A follow refused for now (the server busy or stopping) is asked again after this pause.
const FOLLOW_USER_RETRY_MS = 2000;

/**
 * Follow the user's renames on `socket` (`follow_user`, at each connect): every page's identity
 * badge shows a rename made on another device at once. Its answer carries the name as it stands,
 * so a rename made while the page loaded (after it read its name, before this follow) shows too.
 * The same follow brings the clips the user makes on their other devices (`own_clip`, see
 * watch.js). Sent first at each connect: the server answers a connection's events in order, so a
 * page's subscriptions sent after it are answered once it follows.
 */
function followUser(socket) {
  const id = socket.id;
  call(socket, "follow_user", {}, ACK_TIMEOUT_MS, { resend: false }).then(
    (ack) => {
      renamed({ user_id: ack.user_id, name: ack.name });
      // What the user's channel brings (a clip made on another device: `own_clip`) reaches this
      // connection from now on: a page that read its own things before (a follow asked again
      // after a refusal) reads them again (watch.js).
      window.dispatchEvent(new CustomEvent("sessionhub:followed", { detail: { socket } }));
    },
    (err) => {
      if (err?.code === "unavailable" || err?.code === "timeout")
        setTimeout(() => socket.connected && socket.id === id && followUser(socket), FOLLOW_USER_RETRY_MS);
    },
  );
}

// The server signed this device out (here or from another device): say so, keep no token.
function signedOutHere(data, onState) {
  localStorage.removeItem(TOKEN_KEY);
  const err = lost(new ApiError("unauthorized", "", 401, { reason: "revoked" }));
  onState("unauthorized", data?.message ?? err.message);
}

/**
 * Emit `event` and resolve to its `{ok: true}` ack; reject with ApiError otherwise.
 *
 * An access token outlived by its connection (a page open longer than the token lives) gets its
 * next event refused `unauthorized` before the event does anything: the connection then takes a
 * fresh token (`renew_token`, or made again) and the event is sent once more, so a person's click
 * is not lost to it. `resend: false` leaves a resend after a connection made again to the caller
 * (a subscription resubscribes on every connect); after a renewal in place it is sent here.
 *
 * `onSlow()` runs once when no answer has come after SLOW_MS while the connection looks up: the
 * page says it is still sending (offline, the page says so itself: see `isOffline`). An answer
 * that never comes on a connection still up rejects with ApiError `timeout` whose
 * `details.unconfirmed` is true: the event went out and may have been applied, or not.
 */
export async function call(socket, event, payload, timeoutMs = ACK_TIMEOUT_MS, { resend = true, onSlow } = {}) {
  const slow = onSlow ? setTimeout(() => !isOffline(socket) && onSlow(), SLOW_MS) : null;
  try {
    for (let attempt = 0; ; attempt += 1) {
      let ack;
      try {
        ack = await emitOnce(socket, event, payload, timeoutMs);
      } catch (err) {
        // Dropped by a renewal of the connection another call started (its refusal came first):
        // sent again once the connection is back, as that call's is.
        const renewing = renewals.get(socket);
        if (err?.code === "disconnected" && renewing && resend && attempt === 0 && (await renewing)) continue;
        throw err;
      }
      if (ack && ack.ok === true) return ack;
      if (ack?.error === "unauthorized" && (socket.connected || renewals.has(socket)) && attempt === 0) {
        const back = await renew(socket, timeoutMs); // one for every call refused meanwhile
        // Renewed in place, no connect follows to send it again (a subscription's own resend):
        // sent again here whatever `resend` says.
        if (back === IN_PLACE || (resend && back)) continue;
        // Not back yet (the refresh failing for now, Redis away: connect() tries again): the
        // event was refused before it did anything, so it is a call the connection dropped, which
        // pages send again once it is back, not a refusal to show in the server's words.
        if (!back && !socket.connected && !lostHere) {
          throw new ApiError("disconnected", "The connection was lost before the server answered.");
        }
      }
      throw new ApiError(
        ack?.error ?? "invalid_response",
        ack?.message ?? "",
        0,
        extraFields(ack, ["ok", "error", "message"]),
      );
    }
  } finally {
    clearTimeout(slow);
  }
}

async function emitOnce(socket, event, payload, timeoutMs) {
  try {
    return await socket.timeout(timeoutMs).emitWithAck(event, payload);
  } catch (err) {
    // socket.io-client rejects on a timeout and on a disconnect; only the message differs.
    if (/disconnected/.test(err?.message ?? "")) {
      throw new ApiError("disconnected", "The connection was lost before the server answered.");
    }
    // Still offline: the event waited in socket.io-client's buffer, which drops it on the timeout.
    if (!socket.connected) throw new ApiError("timeout", OFFLINE_NOT_SENT);
    // Sent on a connection still up (a stalled network looks so): whether it was applied is not
    // known. Said so; what to do next is the page's to say (only it knows whether a retry is safe).
    const seconds = Math.round(timeoutMs / 1000);
    throw new ApiError(
      "timeout",
      `Not confirmed: the server did not answer within ${seconds} s (the connection may be stalled).`,
      0,
      { unconfirmed: true },
    );
  }
}

/**
 * Whether a call made on `socket` now would wait for the connection to come back (up to its
 * timeout): a page says so at once, instead of seconds of nothing after a press.
 */
export function isOffline(socket) {
  return !socket?.connected || navigator.onLine === false;
}

// The renewal of each socket's connection under way (a promise of `reconnected`): calls refused
// `unauthorized` together (a press that sends three at once) share one. Each made its own, and
// each reconnect dropped the calls the others had resent: nothing a press asked for was done.
const renewals = new WeakMap();

// What a renewal resolves to when the connection took its new token and stayed.
const IN_PLACE = "in place";

// The token each socket's connection goes by: the one its handshake presented, or the one it
// renewed to since (`renew_token`).
const presented = new WeakMap();

/**
 * Have `socket`'s connection go by a current token, once for every call refused meanwhile;
 * resolves IN_PLACE (it stayed) or true (it was made again) once it does, false after `timeoutMs`.
 */
function renew(socket, timeoutMs) {
  let pending = renewals.get(socket);
  if (!pending) {
    pending = renewInPlace(socket, timeoutMs).finally(() => renewals.delete(socket));
    renewals.set(socket, pending);
  }
  return pending;
}

/**
 * The connection takes the identity's next token (`renew_token`) and stays: made again, its
 * close would end the recording lease it holds (every other tab saw the session paused, then
 * recording), leave its pattern presence and read every subscription's replay again. Refused
 * (another identity now, a server from before the event) or not answered, it is made again, and
 * the handshake presents the current token.
 */
async function renewInPlace(socket, timeoutMs) {
  const refused = presented.get(socket);
  // The server refused it (expired on its clock, which may run ahead of this browser's): a new
  // one is asked for, not the same one sent back.
  if (refused !== undefined && storedToken()?.token === refused) dropRefused(refused);
  const token = await getToken().catch(() => null);
  if (token !== null && socket.connected) {
    try {
      const ack = await socket.timeout(timeoutMs).emitWithAck("renew_token", { token });
      if (ack?.ok === true) {
        presented.set(socket, token);
        return IN_PLACE;
      }
    } catch {
      // Not answered (disconnected, or timed out): made again below.
    }
  }
  const back = reconnected(socket, timeoutMs);
  socket.disconnect().connect(); // the handshake presents a current token
  return back;
}

/** Resolves true once `socket` is connected again, false after `timeoutMs`. */
function reconnected(socket, timeoutMs) {
  return new Promise((resolve) => {
    const done = (ok) => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      resolve(ok);
    };
    const onConnect = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on("connect", onConnect);
  });
}

function isLogEvent(sessionId, data) {
  return (
    data !== null &&
    typeof data === "object" &&
    data.session_id === sessionId &&
    typeof data.epoch === "string" &&
    Number.isInteger(data.offset)
  );
}

// A subscribe answered `unavailable` is asked again after this pause, doubled each time up to the most.
const SUBSCRIBE_RETRY_MS = 1000;
const SUBSCRIBE_RETRY_MAX_MS = 15_000;

/**
 * Follow one session's events on `socket` across reconnects, in order, each exactly once.
 *
 * Tracks the last applied `(epoch, offset)` and the id of the event there: events at or below
 * it are dropped, a reconnect resubscribes from it (the server replays what was missed, after
 * checking that the event at that offset is still the one we saw), and a `session_resync`, a
 * new epoch or an unrecovered resubscribe start over from a `session_snapshot`. A subscribe
 * answered `unavailable` (Redis away a moment) is asked again after a pause, not given up.
 *
 * handlers (all optional): `onSnapshot(session, snapshot)`, `onEvent(event)`,
 * `onSubscribed(ack)`, `onError(apiError)`. Returns `{close()}`.
 */
export function subscribeSession(socket, sessionId, handlers = {}) {
  let epoch = null; // null until a snapshot: events before it are not ours to apply
  let offset = null;
  let lastId = null; // id of the event at `offset`: lets the server notice a rewritten history
  let inFlight = false;
  let queued = null; // "resume" | "fresh": what to ask for once the request in flight is answered
  let generation = 0; // acks of requests sent before a disconnect are stale
  let snapshotSeen = false;
  let closed = false;
  let retryTimer = null; // a subscribe answered `unavailable`, asked again after a pause
  let retryMs = 0;

  function subscribe(mode) {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (mode === "fresh") {
      epoch = null;
      offset = null;
      lastId = null;
    }
    if (closed || !socket.connected) return; // the "connect" listener resubscribes
    if (inFlight) {
      // Concurrent subscribes of one session would race on the server: one at a time.
      queued = queued === "fresh" || mode === "fresh" ? "fresh" : "resume";
      return;
    }
    const payload = epoch === null ? { session_id: sessionId } : { session_id: sessionId, epoch, offset };
    if (epoch !== null && lastId) payload.last_id = lastId;
    const mine = ++generation;
    inFlight = true;
    snapshotSeen = false;
    call(socket, "subscribe_on_session", payload, ACK_TIMEOUT_MS, { resend: false }).then(
      (ack) => mine === generation && answered(ack, null),
      (err) => mine === generation && answered(null, err),
    );
  }

  function answered(ack, err) {
    inFlight = false;
    // The server answers an unrecoverable resume with a snapshot; ask again if it did not.
    if (ack?.recovered === false && !snapshotSeen) queued = "fresh";
    if (err?.code === "timeout" && !queued) queued = "resume";
    if (ack) retryMs = 0;
    if (err?.code === "unavailable" && !queued && !closed) {
      // Redis away for a moment (a restart, a failover): asked again after a pause, growing to
      // SUBSCRIBE_RETRY_MAX_MS, for as long as the connection stays up. Answered once and left,
      // the page showed what it had until it was reloaded, its live updates stopped for good.
      retryMs = Math.min(retryMs ? retryMs * 2 : SUBSCRIBE_RETRY_MS, SUBSCRIBE_RETRY_MAX_MS);
      retryTimer = setTimeout(() => subscribe("resume"), retryMs);
      return;
    }
    if (queued) {
      const mode = queued;
      queued = null;
      subscribe(mode);
    }
    if (ack) handlers.onSubscribed?.(ack);
    if (err) handlers.onError?.(err);
  }

  function onSnapshot(data) {
    if (!isLogEvent(sessionId, data)) return;
    epoch = data.epoch;
    offset = data.offset;
    lastId = typeof data.last_id === "string" ? data.last_id : null;
    snapshotSeen = true;
    handlers.onSnapshot?.(data.session, data);
  }

  function onLogEvent(data) {
    if (epoch === null) return; // a fresh subscribe is on its way: its snapshot comes first
    if (data.epoch !== epoch) {
      subscribe("fresh"); // the log restarted: our history is void
    } else if (data.offset <= offset) {
      // seen already: a replay overlapping live delivery
    } else if (data.offset !== offset + 1) {
      subscribe("resume"); // a gap: the server replays it from the log
    } else {
      offset = data.offset;
      lastId = typeof data.id === "string" ? data.id : null;
      handlers.onEvent?.(data);
    }
  }

  function onAny(name, data) {
    if (closed) return;
    if (name === "session_snapshot") onSnapshot(data);
    else if (name === "session_resync") data?.session_id === sessionId && subscribe("fresh");
    else if (isLogEvent(sessionId, data)) onLogEvent(data);
  }

  const onConnect = () => subscribe("resume");
  const onDisconnect = () => {
    generation += 1;
    inFlight = false;
    queued = null;
    clearTimeout(retryTimer); // the "connect" listener resubscribes
    retryTimer = null;
  };

  socket.onAny(onAny);
  socket.on("connect", onConnect);
  socket.on("disconnect", onDisconnect);
  subscribe("fresh");

  return {
    close() {
      closed = true;
      clearTimeout(retryTimer);
      socket.offAny(onAny);
      socket.off("connect", onConnect);
      socket.off("disconnect", onDisconnect);
      if (socket.connected) socket.emit("unsubscribe_from_session", { session_id: sessionId }, () => {});
    },
  };
}
