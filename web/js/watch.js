/**
 * The viewer's Clip Moment page (`/watch/<id>`). A guest token is enough (client.js gets one).
 * Each click carries a fresh submission id; when the connection drops before the answer, the
 * same id is sent again after the reconnect, so one click is stored once. The page follows the
 * stream's audience session, whose log carries state changes only (not every viewer's clip);
 * a reconnect catches up by offset (subscribeSession). "Your clips" are read from the server on
 * every (re)subscription, so a reload or another device shows them as the streamer left them
 * (edited, deleted), and again when the audience log says the streamer changed this viewer's
 * clips (`clips_changed` naming the viewer's tag); `viewer_blocked` naming it turns clipping
 * off or on. A clip this person makes on another device or in another tab comes at once on the
 * user's own channel (`own_clip`, which the connection follows at each connect: client.js), never
 * another viewer's; it is kept once by its id, whichever of it, this page's own ack and a reading
 * comes first. Text goes in via textContent only.
 */
import {
  $,
  api,
  call,
  connect,
  currentUserId,
  showConnection,
  STREAM_CONNECTION_TEXT,
  subscribeSession,
} from "./client.js";
import { STATE_LABELS, hms, idFromPath } from "./clip_format.js";
import { freshId } from "./ids.js";
import { reconcile, setText } from "./keyed.js";
import { say } from "./news.js";
import { characters, fitted } from "./text_fit.js";
import { OrphanBanner } from "./orphan_banner.js";

const NOTE_MAX = 100;
// The server's rule (PROTOCOL.md): 100 characters as a person sees them (grapheme clusters, as
// the server's \X counts), and at most 2,000 bytes of UTF-8 behind that.
const NOTE_MAX_BYTES = 2000;
const orphanBanner = new OrphanBanner();
const RETRY_AFTER_TIMEOUT_MS = 1000;
// A clip refused `unavailable` (the server's Redis away) is sent again, as the same clip, after
// this pause, until its press is MAX_PRESSED_AGO_MS old.
const RETRY_AFTER_UNAVAILABLE_MS = 2000;
// The most a click may say it waited to be sent (handlers/streams/payloads.py): one that waited
// longer is not sent, and the page says why (send).
const MAX_PRESSED_AGO_MS = 60_000;
const OFFLINE_HINT = "Offline: a clip pressed now is sent once the connection is back, at the moment you pressed.";
// A cooldown the page honours at most (the server's is 3,600 s at most: SESSIONHUB_CLIPS_COOLDOWN_S).
const MAX_COOLDOWN_S = 3600;
// The characters a note may not hold (handlers/streams/payloads.py _NOT_PLAIN): controls, line
// and paragraph separators, and the invisible ones that reorder text. Pasted with a note (from a
// chat, a web page), they were refused in words about "U+202E" while the field kept them unseen,
// so every press failed alike (audit "streamphone"): the page takes them out before it sends.
const NOT_PLAIN = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu; // \p{Cc}: C0, DEL, C1
// The clip waiting for the connection, kept in this browser: a tab closed (a phone's tab
// switcher asks nothing) or reloaded before it was sent lost the moment without a word (audit
// "streamphone"). One entry per clip; sent when the page opens again while it can still be placed.
const WAITING_KEY = "sessionhub.watch.waiting.";

const ui = {
  loading: $("loading"),
  error: $("page-error"),
  errorTitle: $("page-error-title"),
  errorMessage: $("page-error-message"),
  card: $("watch"),
  title: $("stream-title"),
  state: $("stream-state"),
  game: $("stream-game"),
  form: $("clip-form"),
  note: $("note-input"),
  counter: $("note-counter"),
  button: $("clip-button"),
  reason: $("clip-reason"),
  said: $("clip-said"),
  confirmation: $("confirmation"),
  mine: $("mine"),
  mineEmpty: $("mine-empty"),
  connection: $("connection"),
};

const ERROR_TEXT = {
  session_not_found: ["Stream not found", "There is no stream session with this link. It may have been mistyped."],
  invalid_session_id: ["Invalid link", "The link does not contain a valid session id."],
  unauthorized: ["Not signed in", "Your sign-in is missing or has expired."],
  // This browser's identity is gone (signed out elsewhere): the message says how; the identity
  // notice above offers the way back. Not "Something went wrong": nothing broke.
  identity_lost: ["Not signed in on this device", ""],
  unavailable: ["Server unreachable", "The server cannot be reached. Check the connection and reload the page."],
  // Deleted while the page was open (an operator deleted the stream): its audience log says so.
  session_deleted: ["Stream deleted", "This stream session has been deleted: it takes no more clips."],
};

const REASONS = {
  created: "The stream has not started yet.",
  paused: "The stream is paused: clips are off during the break.",
  ended: "The stream has ended.",
};

let sessionId = null;
let session = null;
let socket = null;
let subscription = null;
let live = false;
// {submission_id, note, pressedAt, pressedWallMs, user}: sent, not answered yet; `user` pressed it
let pending = null;
let connectionState = "connecting"; // the connection's last state (client.js connect's onState)
let stillSending = false; // the pending clip's answer is late (a stalled network): said so
let cooldownUntil = 0; // performance.now() ms
const mine = new Map(); // clip id -> clip: the viewer's own, as last read or acked
const ackedDuring = new Set(); // per reading of the own clips under way: the clips acked meanwhile
let mineAsked = 0;
const gone = new Set(); // clip ids the streamer removed (clips_changed): a late own_clip brings none back
// The highest clip seq a clear of this viewer reached: a clip up to it went, even one this page
// never listed (its own_clip, on another channel than the clear's hint, arriving after it).
let clearedUpTo = -1;
let viewerTag = null; // this viewer's tag in the session (GET …/clips/mine): events name them by it
let blocked = false; // the streamer blocked this viewer from clipping

function show(section) {
  for (const element of [ui.loading, ui.error, ui.card]) element.hidden = element !== section;
}

function showError(err) {
  const gone = err?.details?.reason === "deleted_with_guest" || err?.details?.reason === "deleted_by_operator";
  const [title, text] = (gone && ERROR_TEXT.session_deleted) || ERROR_TEXT[err?.code] || ["Something went wrong", ""];
  ui.errorTitle.textContent = title;
  ui.errorMessage.textContent = text || err?.message || String(err);
  ui.error.dataset.code = err?.code ?? "error";
  ui.connection.hidden = true;
  show(ui.error);
}

/** How long a `rate_limited` refusal asks to wait (its `retry_after_s`; 1 s when it names none). */
function retryAfterMs(err) {
  const seconds = Number(err.details?.retry_after_s);
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, MAX_COOLDOWN_S) * 1000 : 1000;
}

function cooldownLeftS() {
  return Math.max(0, Math.ceil((cooldownUntil - performance.now()) / 1000));
}

/** Why the button is disabled right now, or "" when a click would be taken. */
function reason() {
  if (!session) return "Loading…";
  if (pending && connectionState === "unauthorized")
    return "Not signed in: your clip is sent once you sign in again on this page, if within a minute of your press.";
  if (pending && !live) return "Offline: your clip will be sent when the connection is back.";
  if (pending) return stillSending ? "Still sending your clip…" : "Sending your clip…";
  if (blocked) return "The streamer has turned off clipping for you in this stream.";
  if (session.state !== "active") return REASONS[session.state] ?? `The stream is ${session.state}.`;
  const wait = cooldownLeftS();
  if (wait > 0) return `${COOLDOWN}${wait} s.`;
  return "";
}

// What a screen reader is told, in #clip-said: the visible reason (#clip-reason) rewrites its
// countdown four times a second, and as a live region it queued "…again in 2 s", "…in 1 s" behind
// every clip; the stream coming back live only emptied it, which says nothing. Said once per
// change: a cooldown as it starts, a state change of the stream, a reason to wait; not what the
// page shows as it loads and first connects (`said` undefined until then) nor the moment's
// "Sending your clip…".
const COOLDOWN = "Cooldown: you can clip again in ";
const BACK_LIVE = { paused: "The stream is live again.", created: "The stream is live: clips are on." };
let said;
let stateSaid = null; // the stream's state as of the last thing said
let stateNews = ""; // the stream came back live: said until something else is

function sayWhy(why) {
  if (said === undefined) {
    if (!live) return; // still connecting as the page loads: not "Offline"
    said = why; // the page's first state is on the page, not news
    stateSaid = session?.state ?? null;
    return;
  }
  if (session && stateSaid !== null && session.state !== stateSaid) stateNews = BACK_LIVE[stateSaid] ?? "";
  if (session) stateSaid = session.state;
  if (pending && live && !stillSending) return;
  if (why.startsWith(COOLDOWN) && said.startsWith(COOLDOWN)) return;
  const text = why || (!live ? OFFLINE_HINT : session?.state === "active" ? stateNews : "");
  if (text !== stateNews) stateNews = "";
  if (text === said) return;
  said = text;
  ui.said.textContent = text;
}

function render() {
  if (!session) return;
  document.title = `${session.title} · Clip Moment`;
  ui.title.textContent = session.title;
  ui.state.textContent = STATE_LABELS[session.state] ?? session.state;
  ui.state.dataset.state = session.state;
  ui.game.textContent = session.game || "";
  ui.game.hidden = !session.game;
  updateButton();
}

// A button disabled under the keyboard's focus drops the focus to the page: while a press's own
// wait lasts (its clip being sent, then the cooldown) the button is only aria-disabled, keeps the
// focus and refuses a press itself (onSubmit), saying why again. Disabled for a longer reason (the
// stream paused, the viewer blocked), the focus it drops is given back when the button can be
// pressed again, so that the next moment is one Enter away, not a page of Tabs.
let focusOwed = false;

/** Whether the button waits on its own last press: its clip on its way, or the cooldown after it. */
function pressWaits(why) {
  return pending !== null || why.startsWith(COOLDOWN);
}

function updateButton() {
  const why = reason();
  const waits = why !== "" && pressWaits(why);
  if (why && !waits && document.activeElement === ui.button) focusOwed = true;
  ui.button.disabled = why !== "" && !waits;
  if (waits) ui.button.setAttribute("aria-disabled", "true");
  else ui.button.removeAttribute("aria-disabled");
  // Offline, a live stream's button still takes the moment (in a tunnel, on a train): it is sent
  // once the connection is back, placed when pressed (send). It was disabled ("Reconnecting…").
  ui.reason.textContent = why || (session && !live ? OFFLINE_HINT : "");
  if (session) sayWhy(why);
  ui.card.dataset.state = session?.state ?? "";
  if (!why && focusOwed) {
    focusOwed = false;
    const lost = document.activeElement === null || document.activeElement === document.body;
    if (lost) ui.button.focus(); // unless the person has moved on (typing the next note)
  }
}

function updateCounter() {
  const kept = fitted(ui.note.value, NOTE_MAX, NOTE_MAX_BYTES);
  const chars = characters(kept);
  let full = chars.length >= NOTE_MAX;
  if (kept !== ui.note.value) {
    ui.note.value = kept;
    // Cut short of 100 by the bytes behind them (emoji, marks): the counter said "80/100" as if
    // there were room, and nothing said the paste was cut (audit "streamphone").
    say(
      ui.said,
      chars.length < NOTE_MAX
        ? `Your note was cut to ${chars.length} characters: these take more room than plain letters, and the note is full.`
        : `Your note was cut to ${NOTE_MAX} characters, the most a note holds.`,
    );
    full = true;
  }
  ui.counter.textContent =
    full && chars.length < NOTE_MAX ? `${chars.length}/${NOTE_MAX} · full` : `${chars.length}/${NOTE_MAX}`;
  ui.counter.dataset.full = String(full);
}

/** The note as it may be sent: the characters a note may not hold taken out (a tab is a space). */
function plainNote(text) {
  return text.replace(/\t/g, " ").replace(NOT_PLAIN, "");
}

/** Where `clip` is kept in this browser: one entry per clip, so that two tabs of one stream
 * neither overwrite nor forget each other's (audit "verify48"). */
function waitingKey(clip) {
  return `${WAITING_KEY}${sessionId}.${clip.submission_id}`;
}

/** Keep `clip` in this browser until it is answered (see WAITING_KEY). */
function keepWaiting(clip) {
  try {
    const { submission_id, note, pressedWallMs, user } = clip;
    localStorage.setItem(waitingKey(clip), JSON.stringify({ submission_id, note, pressedWallMs, user }));
  } catch {
    // Storage full or refused (private mode): the leave prompt still guards it.
  }
}

/** `clip` answered (or given up): this browser forgets it, and only it. */
function forgetWaiting(clip) {
  try {
    localStorage.removeItem(waitingKey(clip));
  } catch {
    // nothing kept
  }
}

let restored = []; // clips of pages closed before their answer, still to send, oldest first

/**
 * The clips this browser pressed in earlier pages of this stream and never heard back about: sent
 * now, one after the other (as the same clips: their submission ids, placed at their presses),
 * those the person signed in now pressed, while they can still be placed; an older one is said,
 * and forgotten. Another person's are left for them, until they are too old for anyone.
 */
function waitingFromBefore() {
  const prefix = `${WAITING_KEY}${sessionId}.`;
  const user = currentUserId();
  const late = [];
  const kept = [];
  try {
    for (const key of Object.keys(localStorage)) {
      if (!key.startsWith(prefix)) continue;
      let clip = null;
      try {
        clip = JSON.parse(localStorage.getItem(key) || "null");
      } catch {
        clip = null;
      }
      const ago = Date.now() - (clip?.pressedWallMs ?? Number.NaN);
      if (typeof clip?.submission_id !== "string" || !(ago >= 0) || ago > MAX_PRESSED_AGO_MS) {
        localStorage.removeItem(key);
        if (clip?.user === user && ago > MAX_PRESSED_AGO_MS) late.push(clip);
      } else if (clip.user === user) kept.push(clip);
    }
  } catch {
    return; // storage refused: nothing kept to send
  }
  if (late.length) {
    const at = late.map((clip) => new Date(clip.pressedWallMs).toLocaleTimeString()).join(", ");
    const what = late.length === 1 ? `A clip you pressed at ${at} was` : `Clips you pressed at ${at} were`;
    confirm(`${what} not sent before the page closed, and too old to place now.`, "error");
  }
  restored = kept.sort((a, b) => a.pressedWallMs - b.pressedWallMs);
  nextRestored();
}

/** The next clip of a closed page made the one this page sends; false when there is none. */
function nextRestored() {
  if (pending || restored.length === 0) return false;
  const clip = restored.shift();
  pending = {
    submission_id: clip.submission_id,
    note: typeof clip.note === "string" ? clip.note : "",
    pressedAt: performance.now() - (Date.now() - clip.pressedWallMs),
    pressedWallMs: clip.pressedWallMs,
    user: clip.user,
    restored: true,
    tried: true, // it may have landed before the page closed: sent again whatever its age
  };
  confirm("A clip you pressed before a page closed is being sent now, at the moment you pressed.");
  return true;
}

function confirm(text, kind = "info") {
  ui.confirmation.textContent = text;
  ui.confirmation.dataset.kind = kind;
}

function ownItem() {
  const li = document.createElement("li");
  const when = document.createElement("span");
  when.className = "offset";
  const note = document.createElement("span");
  note.className = "note";
  li.append(when, note);
  return li;
}

function updateOwn(li, clip) {
  li.dataset.clipId = clip.clip_id;
  setText(li.querySelector(".offset"), `Segment ${clip.segment_index} · ${hms(clip.offset_ms)}`);
  setText(li.querySelector(".note"), clip.note);
}

/** The own clips, newest first (`seq` is the session's arrival order). */
function renderMine() {
  const clips = [...mine.values()].sort((a, b) => b.seq - a.seq);
  reconcile(ui.mine, clips, (clip) => clip.clip_id, ownItem, updateOwn);
  ui.mineEmpty.hidden = clips.length > 0;
}

function addMine(clip) {
  if (!clip || gone.has(clip.clip_id) || clip.seq <= clearedUpTo) return;
  viewerTag = clip.viewer_tag ?? viewerTag;
  mine.set(clip.clip_id, clip);
  for (const acked of ackedDuring) acked.set(clip.clip_id, clip);
  renderMine();
}

/**
 * The own clips as the server holds them now. A click acked while the answer is on its way may
 * be missing from it (read before the click was stored): kept. Only the last reading asked for
 * is drawn, so an older answer never brings back a clip a newer one found deleted.
 */
// A change to some viewer's clips or block while this page does not know its own tag yet (its
// first read under way): it may be this viewer's, and a read begun before it would show what the
// streamer changed since. One more read, once, for those that come together (a raid's worth).
let taglessRead = false; // one is set for 250 ms from now
function readTagless() {
  if (taglessRead) return;
  taglessRead = true;
  setTimeout(() => {
    taglessRead = false;
    loadMine();
  }, 250);
}

async function loadMine() {
  const asked = ++mineAsked;
  const acked = new Map();
  ackedDuring.add(acked);
  try {
    const body = await api(`/api/streams/${encodeURIComponent(sessionId)}/clips/mine`);
    if (asked !== mineAsked) return;
    viewerTag = body.viewer_tag ?? viewerTag;
    blocked = body.blocked === true;
    updateButton();
    mine.clear();
    for (const clip of [...body.clips, ...acked.values()]) mine.set(clip.clip_id, clip);
    renderMine();
  } catch {
    // What is shown stays; the next subscription (a reconnect) reads them again.
  } finally {
    ackedDuring.delete(acked);
  }
}

/**
 * A clip this person made on another device or in another tab (`own_clip`, on the user's own
 * channel: the audience log carries no clip, by design, PROTOCOL "The audience session"). One of
 * another stream is not this page's.
 */
function onOwnClip(data) {
  if (data?.session_id === sessionId && data.clip?.clip_id) addMine(data.clip);
}

/**
 * Back in view, the page reads its own clips again: a phone asleep may have missed what its
 * connection was told (a system that froze the page). Live, `own_clip` has brought them already.
 */
function onVisible() {
  if (document.visibilityState === "visible" && live) loadMine();
}

async function send() {
  if (!pending || !socket?.connected) return; // the next subscribe sends it
  const attempt = pending;
  updateButton();
  if (attempt.user !== currentUserId()) {
    // Pressed by the person signed in then: another one signed in since (on the sign-in the page
    // asked for, or in another tab) would have sent it as theirs (audit "verify48").
    pending = null;
    forgetWaiting(attempt);
    confirm("Not clipped: that clip was pressed by the person signed in before, so it is not sent as you.", "error");
    updateButton();
    if (nextRestored()) send();
    return;
  }
  try {
    // When it was pressed, not when it arrives: a click held while the connection was down
    // (sent again once it is back) is placed at the moment the viewer saw. Older than the server
    // places, it would land where it is not: said, not sent (unless a try of it may have landed).
    const waited = Math.max(0, Math.round(performance.now() - attempt.pressedAt));
    if (waited > MAX_PRESSED_AGO_MS && !attempt.tried) {
      pending = null;
      forgetWaiting(attempt);
      confirm(
        "Not clipped: the connection was away more than a minute after you pressed, too long to place it.",
        "error",
      );
      return;
    }
    attempt.tried = true;
    const pressedAgo = Math.min(MAX_PRESSED_AGO_MS, waited);
    const payload = {
      session_id: sessionId,
      submission_id: attempt.submission_id,
      note: attempt.note,
      pressed_ago_ms: pressedAgo,
    };
    const ack = await call(socket, "clip_submit", payload, undefined, {
      onSlow: () => {
        if (pending !== attempt) return;
        stillSending = true;
        updateButton();
      },
    });
    pending = null;
    forgetWaiting(attempt);
    stillSending = false;
    orphanBanner.edited(); // a clip is a change to the stream: active again
    cooldownUntil = performance.now() + ack.cooldown_s * 1000;
    if (ack.clip) {
      addMine(ack.clip);
      confirm(`Clipped! Segment ${ack.clip.segment_index} at ${hms(ack.clip.offset_ms)}.`);
    } else {
      confirm("That clip was already saved, and the streamer has removed it since.");
    }
    // Only the note that went: one typed while it was on its way is the next moment's (it was
    // wiped by this answer: audit "streamphone").
    if (ui.note.value.trim() === attempt.note) {
      ui.note.value = "";
      updateCounter();
    }
  } catch (err) {
    if (pending !== attempt) return;
    if (err.code === "disconnected") {
      stillSending = false; // sent afresh once the connection is back
      confirm("Connection lost: your clip will be sent again when the connection is back.", "error");
    } else if (err.code === "timeout") {
      // Sent again as the same clip (its submission id): stored once, however many tries.
      if (err.details?.unconfirmed)
        confirm(`${err.message} Your clip is being sent again, as the same clip: it is never stored twice.`, "error");
      setTimeout(send, RETRY_AFTER_TIMEOUT_MS);
    } else if (err.code === "unavailable" && performance.now() - attempt.pressedAt < MAX_PRESSED_AGO_MS) {
      // The server could not store it now (its Redis away): dropped, the viewer had to press
      // again and the clip landed at that later moment (audit "longopen"). Sent again as the same
      // clip (its submission id), placed at the press, while it can still be placed there.
      confirm("The server cannot store clips right now: your clip is being sent again, as the same clip.", "error");
      setTimeout(send, RETRY_AFTER_UNAVAILABLE_MS);
    } else if (
      err.code === "rate_limited" &&
      attempt.restored &&
      performance.now() - attempt.pressedAt + retryAfterMs(err) < MAX_PRESSED_AGO_MS
    ) {
      // A closed page's second clip, sent right after its first: the cooldown between them
      // passed while the pages were closed. Sent once it ends, still placed at its press.
      confirm("Your next clip from before is sent once the cooldown ends, at the moment you pressed.");
      setTimeout(send, retryAfterMs(err));
    } else {
      pending = null;
      forgetWaiting(attempt);
      stillSending = false;
      if (err.code === "invalid_state") refreshState();
      if (err.code === "forbidden") loadMine(); // blocked meanwhile: the page learns it and says so
      if (err.code === "rate_limited") cooldownUntil = performance.now() + retryAfterMs(err);
      if (err.code === "unavailable")
        confirm("Not clipped: the server could not store clips for a minute. Press again once it can.", "error");
      else confirm(`Not clipped: ${err.message}`, "error");
    }
  } finally {
    updateButton();
    if (nextRestored()) send(); // the next clip of a closed page, once this one is answered
  }
}

/** The stream's state from the server, when a refusal says the page's one is out of date. */
async function refreshState() {
  try {
    const fresh = await api(`/api/streams/${encodeURIComponent(sessionId)}`);
    session = { ...session, state: fresh.state };
    render();
  } catch {
    // the live subscription will bring it
  }
}

/** A press the button refuses (aria-disabled: its last press still waits): why, said again. */
function sayRefused(why) {
  said = why;
  say(ui.said, why);
}

function onSubmit(event) {
  event.preventDefault();
  const why = reason();
  if (pending && why !== "") {
    // A second moment while the first still waits: one clip waits at a time. It said the first
    // one's "will be sent when the connection is back", as if this one were taken too (audit
    // "streamphone"). Its note stays in the box.
    const text =
      "Not clipped: your last clip still waits to be sent, and one clip can wait at a time. Your note stays in the box.";
    confirm(text, "error");
    sayRefused(text);
    return;
  }
  if (why !== "") {
    sayRefused(why);
    return;
  }
  const plain = plainNote(ui.note.value);
  if (plain !== ui.note.value) {
    ui.note.value = plain; // what it looked like, without what it could not hold
    updateCounter();
  }
  pending = {
    submission_id: freshId(),
    note: plain.trim(),
    pressedAt: performance.now(),
    pressedWallMs: Date.now(),
    user: currentUserId(),
  };
  keepWaiting(pending);
  stillSending = false;
  confirm("");
  updateButton(); // offline, send() waits for the connection: the button says the clip waits
  send();
}

function apply(event) {
  orphanBanner.edited(); // the streamer changed the stream: active again
  if (event.type === "stream_state" && typeof event.data?.state === "string") {
    session = { ...session, state: event.data.state };
    // "Clipped! …" was about the stream as it was: with clips off it would read as still valid.
    if (session.state !== "active" && ui.confirmation.dataset.kind === "info") confirm("");
    render();
  } else if (event.type === "clips_changed" && event.data?.viewer_tag === viewerTag) {
    if (event.data.change === "removed") for (const id of event.data.clip_ids ?? []) gone.add(id);
    // A clear names no clip: every clip this page lists went (one made meanwhile is read anew).
    if (event.data.change === "cleared") {
      for (const id of mine.keys()) gone.add(id);
      if (Number.isInteger(event.data.up_to_seq)) clearedUpTo = Math.max(clearedUpTo, event.data.up_to_seq);
    }
    loadMine(); // the streamer edited, deleted or cleared this viewer's clips: read them as they are
  } else if (event.type === "viewer_blocked" && event.data?.viewer_tag === viewerTag) {
    blocked = event.data.blocked === true;
    updateButton();
  } else if (["clips_changed", "viewer_blocked"].includes(event.type) && viewerTag === null) {
    readTagless();
  } else if (event.type === "session_deleted") {
    // It went on showing the stream live and its Clip button, answered 'no such session'.
    deleted();
  }
}

/** The stream is gone: no more clips, no more live updates. */
function deleted() {
  subscription?.close();
  for (const clip of [pending, ...restored]) if (clip) forgetWaiting(clip);
  pending = null;
  restored = [];
  showError({ code: "session_deleted" });
}

function connectionChanged(state) {
  connectionState = state;
  live = state === "live";
  showConnection(ui.connection, state, STREAM_CONNECTION_TEXT);
  updateButton();
}

async function main() {
  ui.form.addEventListener("submit", onSubmit);
  document.addEventListener("visibilitychange", onVisible);
  // A clip clicked but not stored yet (its connection went before the answer) lives only in this
  // page, which sends it again once the connection is back: leaving asks first, as it would be
  // lost without a word.
  window.addEventListener("beforeunload", (event) => {
    if (!pending) return;
    event.preventDefault();
    event.returnValue = ""; // older Chromium shows the prompt only with this set
  });
  ui.note.addEventListener("input", updateCounter);
  setInterval(() => cooldownUntil > 0 && updateButton(), 250);
  try {
    sessionId = idFromPath("watch");
    session = await api(`/api/streams/${encodeURIComponent(sessionId ?? "")}`);
    sessionId = session.session_id;
    waitingFromBefore();
    show(ui.card);
    render();
    orphanBanner.show(sessionId, session);
    socket = connect({ onState: (state) => connectionChanged(state) });
    socket.on("own_clip", onOwnClip);
    // The server's link to the user's channel came back: a clip made meanwhile reached nobody.
    socket.on("own_clips_resync", () => live && loadMine());
    // A follow answered after the subscription (asked again after a refusal): what came between
    // the reading and it reached this page by no own_clip.
    window.addEventListener("sessionhub:followed", (event) => {
      if (event.detail?.socket === socket && live) loadMine();
    });
    subscription = subscribeSession(socket, session.audience_id, {
      onSnapshot: (snapshot) => {
        session = { ...session, state: snapshot.state };
        render();
      },
      onEvent: apply,
      onSubscribed: (ack) => {
        connectionChanged("live");
        ui.connection.dataset.recovered = String(ack.recovered ?? "");
        ui.connection.dataset.missed = String(ack.missed ?? 0);
        loadMine();
        send();
      },
      onError: (err) => {
        // Subscribed again (a reconnect) after the stream was deleted: its last event was missed,
        // but the deletion is what happened.
        if (err.code === "session_not_found") deleted();
        else confirm(`Live updates stopped: ${err.message}`, "error");
      },
    });
  } catch (err) {
    showError(err);
  }
}

main();
