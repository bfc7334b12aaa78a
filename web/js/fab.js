/**
 * The voice FAB: a floating recorder any page of this origin embeds with one tag,
 *
 *     <script type="module" src="/static/js/fab.js"></script>
 *
 * optionally with `data-token="<JWT>"` (else the stored sign-in, else a guest token). Buttons
 * New / Rec / Cut / Pause / Done, each enabled only when it makes sense (seed 002):
 *
 * - New creates a session, makes it the active one and records into it (a paused session is
 *   left paused).
 * - Rec records into the active session; on `/session/<id>` it first activates that page
 *   session (the server checks access), unless that session is closed: then it says so and
 *   changes nothing. While paused, Rec resumes.
 * - Cut ends the current chunk and uploads it (also done automatically every `max_chunk_ms`).
 * - Pause ends the current chunk, uploads it and releases the microphone.
 * - Done sets `final_uploading`, waits (bounded) for pending uploads, then closes the active
 *   session; if that fails the FAB goes back to `paused` with the error shown.
 *
 * The recorder's state drives the session's status pictogram through `set_session_status`,
 * and the FAB's own pictogram follows the server, so every tab of the user agrees. The recorder
 * never waits for the network: Pause and Cut act at once, and the status they set is sent again
 * when the connection comes back until the server has acknowledged it.
 * The FAB follows the user's active session wherever it changes (another tab or device, the chat
 * bot's /start, /session and /done): its connection follows the user's active session
 * (`follow_active_session` at each connect answers where it stands, so a change missed while
 * offline is not lost; the server pushes every later change as `active_session`), and this
 * browser's tabs also announce the session they make active. A FAB busy with an action of its own
 * follows once it is done. Its session closed elsewhere while it records, it stops at once and
 * uploads what it recorded (the server takes chunks recorded before a close), then offers New.
 * A session that somebody else records (its status says
 * so, and the server's recording lease keeps that true) offers no New, Rec or Done here: that
 * would start a second recording beside it, or close it under its recorder.
 * Each chunk is a complete file (a fresh MediaRecorder per chunk), kept in IndexedDB until the
 * server acknowledges it; the chunk being recorded is kept there piece by piece as it grows, so
 * leaving the page (link, reload, closed tab) loses no audio: the next page load uploads it.
 * While recording, leaving the page asks first. Everything is rendered with textContent.
 */
import {
  adoptToken,
  api,
  ApiError,
  call,
  connect,
  currentUserId,
  hasToken,
  knownIdentity,
  saveFile,
  signedOutOnPurpose,
  subscribeSession,
} from "./client.js";
import { freshId } from "./ids.js";
import { sendPress, unanswered } from "./resend.js";
import { serverWaitMs, UploadQueue } from "./upload_queue.js";

const MIME_TYPES = [
  "audio/webm;codecs=opus",
  "audio/webm",
  "audio/ogg;codecs=opus",
  "audio/ogg",
  "audio/mp4",
  "audio/aac",
];
const TIMESLICE_MS = 250; // how often the recorder hands over a piece, kept at once
// Pieces come every TIMESLICE_MS while audio flows; a wall-clock gap this long between two means
// the computer slept (or the phone froze the page): no audio was recorded meanwhile.
const ASLEEP_GAP_MS = 10_000;
const CUTTING_SHOWN_MS = 1000;
const DONE_WAIT_MS = 20_000;
// Status refusals that may pass: the status is kept and sent again on the next connection.
// What a FAB recording while its connection is down says, until it is back.
const OFFLINE_RECORDING =
  "Offline: still recording on this device, kept here and uploaded once the connection is back; others see it paused until then.";
// What a FAB says once its uploads are refused for a sign-in that ran out and cannot renew itself.
const SIGN_IN_RAN_OUT =
  "Your sign-in has run out: your recording is kept on this device and sent once you sign in again.";
const RETRYABLE = new Set(["timeout", "disconnected", "unavailable", "unauthorized"]);
// What a FAB recording when its device is signed out (here or elsewhere) says once stopped.
const SIGNED_OUT_RECORDING =
  "This device was signed out: recording stopped. What it recorded is kept on this device; you can download it.";
const BUTTONS = [
  ["new", "New"],
  ["rec", "Rec"],
  ["cut", "Cut"],
  ["pause", "Pause"],
  ["done", "Done"],
];
// The visible word first, so that a voice command "click Done" still finds it.
const ACCESSIBLE_NAMES = { new: "New recording session", done: "Done: close the recording session" };
const STATUS_LABELS = {
  ready: "Ready",
  recording: "Recording",
  cutting: "Cutting",
  paused: "Paused",
  final_uploading: "Final upload",
  closed: "Closed",
  error: "Error",
};

const state = {
  mode: "idle", // idle | busy | recording | paused | finishing
  sessionId: null, // the FAB's session: the user's active session
  sessionOpen: false,
  status: null, // the FAB session's status as the server last said
  pageSessionId: null,
  maxChunkMs: 60_000,
  mimeType: undefined,
  stream: null,
  recorder: null,
  autoCut: null,
  pending: 0,
};

let socket = null;
let subscription = null;
let queue = null;
const ui = {};
// Statuses this FAB set that the server has not acknowledged yet: session id -> {status, seq}.
// Shown as the FAB's own, and sent again when the connection is back (the latest one only).
const owed = new Map();
let toldSeq = 0;

// --- rendering --------------------------------------------------------------------------

function build() {
  const root = document.createElement("div");
  root.className = "fab";
  root.id = "sessionhub-fab";
  root.setAttribute("role", "region");
  root.setAttribute("aria-label", "Voice recorder");
  ui.root = root;
  const head = document.createElement("div");
  head.className = "fab-head";
  ui.pictogram = document.createElement("span");
  ui.pictogram.id = "fab-status";
  ui.pictogram.className = "pictogram";
  ui.pictogram.setAttribute("role", "img");
  ui.label = document.createElement("span");
  ui.label.className = "fab-label";
  ui.pendingBadge = document.createElement("span");
  ui.pendingBadge.id = "fab-pending";
  ui.pendingBadge.className = "fab-pending";
  head.append(ui.pictogram, ui.label, ui.pendingBadge);
  const buttons = document.createElement("div");
  buttons.className = "fab-buttons";
  ui.buttons = {};
  for (const [action, text] of BUTTONS) {
    const button = document.createElement("button");
    button.type = "button";
    button.id = `fab-${action}`;
    button.className = "button fab-button";
    button.dataset.action = action;
    button.textContent = text;
    // The session page has a Done (and the start page a New) of its own: these say what they act on.
    if (ACCESSIBLE_NAMES[action]) button.setAttribute("aria-label", ACCESSIBLE_NAMES[action]);
    button.addEventListener("click", () => run(action));
    ui.buttons[action] = button;
    buttons.append(button);
  }
  ui.message = document.createElement("p");
  ui.message.id = "fab-message";
  ui.message.className = "fab-message";
  ui.message.setAttribute("role", "status"); // never hidden: see app.css, live regions
  // The pictogram's label and the word beside it change silently: the state is said here, once
  // per change (see announceState).
  ui.announce = document.createElement("p");
  ui.announce.id = "fab-announce";
  ui.announce.className = "visually-hidden";
  ui.announce.setAttribute("role", "status");
  root.append(head, buttons, ui.message, ui.announce, buildHeld());
  document.body.append(root);
  keepRoomFor(root);
}

/**
 * The page keeps room below its content for the FAB as tall as it is now (app.css --fab-room):
 * a kept-recordings note or a long message makes it twice as tall on a phone, and a fixed room
 * left the end of the page (the last sessions of a list) under it, out of reach.
 */
function keepRoomFor(root) {
  if (typeof ResizeObserver === "undefined") return; // the stylesheet's fixed room stays
  new ResizeObserver(() => {
    const room = root.getBoundingClientRect().height + Number.parseFloat(getComputedStyle(root).bottom);
    document.documentElement.style.setProperty("--fab-room", `${Math.ceil(room)}px`);
  }).observe(root);
}

function shownStatus() {
  // The FAB's session shows the FAB's state; with no session, the neutral ring. A recorder running
  // or paused here shows its own word before the server has it (a Pause offline is paused, a Done
  // offline is the final upload: it showed "recording" for the 10 s its call waited, the
  // microphone already off); a recording about to start waits for the server's.
  const ownRecorder = state.mode === "recording" || state.mode === "paused" || state.mode === "finishing";
  const own = ownRecorder ? owed.get(state.sessionId)?.status : null;
  if (own) return own;
  if (state.mode === "recording" && state.status !== "cutting") return "recording";
  return state.status ?? "ready";
}

/** Whether another tab or device records into the FAB's session (the server says it records, and not for us). */
function recordedElsewhere() {
  if (state.mode === "recording" || state.mode === "busy" || state.mode === "finishing") return false;
  if (owed.has(state.sessionId)) return false; // our own Pause, not yet through to the server
  return state.status === "recording" || state.status === "cutting";
}

/** The actions the FAB offers in its present mode (its enabled buttons). */
function offered() {
  const { mode } = state;
  // Another tab or device records: this one may pause it (a phone left recording in a pocket,
  // a tab left open at home), and nothing else: its recorder stops when it hears the pause.
  if (recordedElsewhere()) return { new: false, rec: false, cut: false, pause: true, done: false };
  const canRecordInto = Boolean(state.pageSessionId || (state.sessionId && state.sessionOpen));
  return {
    new: mode === "idle" || mode === "paused", // a paused session stays as it is
    rec: (mode === "idle" && canRecordInto) || mode === "paused",
    cut: mode === "recording",
    pause: mode === "recording",
    done:
      mode === "recording" || mode === "paused" || (mode === "idle" && Boolean(state.sessionId) && state.sessionOpen),
  };
}

function render() {
  if (ui.message.dataset.kind === "offline" && !state.recorder) say(""); // not recording any more
  const status = shownStatus();
  const label = STATUS_LABELS[status] ?? status;
  ui.pictogram.dataset.status = status;
  // Said as shown: a screen reader heard "Recording" where the FAB showed "Recording elsewhere".
  ui.pictogram.setAttribute("aria-label", `Recorder status: ${recordedElsewhere() ? "Recording elsewhere" : label}`);
  ui.label.textContent = !state.sessionId ? "No active session" : recordedElsewhere() ? "Recording elsewhere" : label;
  ui.root.dataset.sessionId = state.sessionId ?? "";
  announceState();
  ui.pendingBadge.textContent = state.pending ? `${state.pending} upload${state.pending > 1 ? "s" : ""} pending` : "";
  ui.pendingBadge.hidden = state.pending === 0;
  const { mode } = state;
  const enabled = offered();
  for (const [action, button] of Object.entries(ui.buttons)) button.disabled = !enabled[action];
  ui.buttons.rec.textContent = mode === "paused" ? "Resume" : "Rec";
  // The accessible name starts with the visible word, so a voice command "click Rec" finds it.
  ui.buttons.rec.setAttribute("aria-label", mode === "paused" ? "Resume recording" : "Rec: record");
  if (recordedElsewhere())
    ui.buttons.pause.setAttribute("aria-label", "Pause the recording on the other tab or device");
  else ui.buttons.pause.removeAttribute("aria-label");
}

// The state last said to assistive tech: undefined until first known once the FAB has started,
// and that first one is not said (a page load would announce what the page shows anyway).
let announced;
let started = false;

/** The state in words for assistive tech, or null while it is not known (an action under way, a
 * session whose status has not come yet). A cut is no change: the recording goes on. */
function spokenState() {
  if (!state.sessionId) return "No active session";
  if (state.mode === "busy" || (state.mode === "idle" && state.status === null)) return null;
  if (recordedElsewhere()) return "Recording elsewhere";
  const status = shownStatus() === "cutting" ? "recording" : shownStatus();
  return STATUS_LABELS[status] ?? status;
}

/** Say the recorder's state once per change (Rec, Pause, Done here, or another device's). */
function announceState() {
  const spoken = spokenState();
  if (!started || spoken === null || spoken === announced) return;
  if (announced !== undefined) ui.announce.textContent = `Recorder: ${spoken}`;
  announced = spoken;
}

function say(text, kind = "info") {
  // A live region: the same words again (a retry's) are not said again.
  if (ui.message.textContent !== text) ui.message.textContent = text;
  ui.message.dataset.kind = kind;
  // The room the page keeps for a FAB saying something (app.css): Chromium does not restyle a
  // :has(:empty) when the text goes, so the attribute says it.
  ui.message.toggleAttribute("data-said", text !== "");
}

/** What the last action said is over (Pause, Cut): "Recording into a new session." stayed under a
 * recorder that was paused. A warning or an error stays until what it says is. */
function settled() {
  if (ui.message.dataset.kind === "info") say("");
}

// --- the FAB's session --------------------------------------------------------------------

function follow(sessionId, { open = true, status = null } = {}) {
  if (sessionId !== state.sessionId) {
    followed += 1;
    subscription?.close();
    subscription = null;
    state.sessionId = sessionId;
    state.status = status;
    if (sessionId) {
      let epoch = null; // the session history's epoch this FAB saw last
      subscription = subscribeSession(ensureSocket(), sessionId, {
        onSnapshot: (session, snapshot) => {
          // A new epoch: the history went back (Redis lost its last writes), and the chunks
          // acknowledged just before may be gone with it: sent again, stored once.
          if (epoch !== null && snapshot?.epoch !== epoch) queue?.resendRecent(sessionId).catch(() => {});
          epoch = snapshot?.epoch ?? epoch;
          state.status = session.status;
          state.sessionOpen = Boolean(session.is_active);
          closedElsewhere();
          render();
        },
        onEvent: (event) => {
          if (event.type === "session_status") state.status = event.data?.status ?? state.status;
          if (event.type === "session_status" && event.data?.reason === "recorder_gone") reassert();
          else if (event.type === "session_status" && event.data?.status === "paused") pausedElsewhere(event.offset);
          if (event.type === "session_update" && "is_active" in (event.data ?? {}))
            state.sessionOpen = Boolean(event.data.is_active);
          // Deleted by its owner (session_update deleted) or by an operator (session_deleted).
          const deleted =
            (event.type === "session_update" && event.data?.deleted === true) || event.type === "session_deleted";
          if (deleted && state.mode === "paused") {
            // Nothing is left to resume or close (the microphone is free since the pause).
            state.mode = "idle";
            say("This session was deleted elsewhere: New starts another one.");
          }
          if (deleted && state.mode === "idle") follow(null);
          closedElsewhere();
          render();
        },
      });
    }
  }
  state.sessionOpen = open;
  render();
}

/**
 * The FAB's session closed elsewhere (Done on another device, the bot's /done). Paused here,
 * nothing is left to resume or to close, and the microphone is already free: it went on offering
 * Resume and Done, both refused 'not allowed in the session's current state'; now it is idle on
 * the closed session, and New is what it offers. Recording here (or cutting), it went on
 * recording, each cut refused with those words, and its chunks after the close refused too: now
 * it stops at once, and what it recorded is uploaded (the server takes a chunk recorded before
 * the close: PROTOCOL, late chunks). Returns whether it acted (and said so).
 */
// Sessions the page this recorder is on closed with its own Done (session.js): their close is
// not news from elsewhere.
const doneHere = new Set();
window.addEventListener("sessionhub:done-here", (event) => doneHere.add(event.detail?.session_id));

function closedWhere() {
  return doneHere.has(state.sessionId) ? "with Done on this page" : "elsewhere";
}

function closedElsewhere() {
  if (state.status !== "closed") return false;
  if (state.mode === "recording") {
    stopClosedRecording();
    return true;
  }
  if (state.mode !== "paused") return false;
  state.mode = "idle";
  state.sessionOpen = false;
  say(`This session was closed ${closedWhere()}: New starts another one.`);
  return true;
}

function stopClosedRecording() {
  const stream = state.stream;
  state.mode = "idle";
  state.sessionOpen = false;
  owed.delete(state.sessionId); // no status of this recorder's applies to a closed session
  const where = doneHere.has(state.sessionId) ? "with Done on this page" : "on another device";
  say(`This session was closed ${where}; what you recorded is kept in it. New starts another one.`);
  // The chunk being recorded is queued (its start was before the close: the server takes it).
  endChunk()
    .catch(() => {})
    .finally(() => {
      if (state.stream === stream) releaseStream(); // unless New has taken a new one meanwhile
    });
}

// This recorder's own id, the same across its reconnections: back after a drop, its resume (or
// its word of a pause heard meanwhile) is refused `recording_elsewhere` where another tab or
// device took the session up, instead of taking that recorder's lease or pausing it.
const RECORDER_ID = freshId();

// Per session, the offset of this recorder's latest status change the server acknowledged: a
// `paused` event at or below it is this recorder's own past (its echo can come after the ack,
// and after a Resume pressed quickly), not a pause pressed elsewhere.
const ownOffsets = new Map();
// Sessions paused with the session page's own button (session.js): said as that, not "elsewhere".
const pausedHere = new Set();
window.addEventListener("sessionhub:pause-here", (event) => {
  if (state.mode === "recording" && event.detail?.session_id === state.sessionId) pausedHere.add(state.sessionId);
});
// A pause from elsewhere heard while this recorder was starting: it stops once it records.
let pausedElsewhereWhileStarting = false;

/**
 * The session was paused by another tab or device (its FAB's Pause, the session page's) while
 * this FAB recorded into it. It went on recording under a session that said "paused": the person
 * who pressed Pause on the laptop heard the phone in their pocket go on recording, and each of its
 * cuts was refused. Now it stops as its own Pause does: the chunk being recorded is kept and
 * uploaded, the microphone is freed, and Resume records again here.
 */
function pausedElsewhere(offset) {
  if (typeof offset === "number" && offset <= (ownOffsets.get(state.sessionId) ?? 0)) return;
  if (starting) pausedElsewhereWhileStarting = true;
  if (state.mode !== "recording") return;
  stopPausedRecording();
}

function stopPausedRecording({ recordingElsewhere = false } = {}) {
  const stream = state.stream;
  const sessionId = state.sessionId;
  state.mode = "paused";
  const where = pausedHere.has(sessionId) ? "with the button on this page" : "on another tab or device";
  pausedHere.delete(sessionId);
  if (recordingElsewhere) {
    say("Another tab or device records this session now; what you recorded here is kept.");
  } else {
    say(`Paused ${where}; what you recorded is kept. Resume records again here.`);
    // Said once more as this recorder's own word: a "recording" or "cutting" of its own still on
    // its way (or owed since a drop) would otherwise land after the pause and record again. Its
    // own only: heard late (a replay after a drop), the pause may have been followed by another
    // device's recording, which this must not pause (refused `recording_elsewhere`).
    tellLater("paused", { own: true });
  }
  endChunk()
    .catch(() => {})
    .finally(() => {
      if (state.stream === stream) releaseStream(); // unless Resume has taken it again meanwhile
    });
}

/**
 * A status or an action refused `invalid_state`: when the FAB's session was closed elsewhere and
 * the FAB had not heard yet (the refusal came before the session's event), it hears it now, and
 * says that rather than the refusal's words. Resolves to whether that was the case.
 */
async function closedMeanwhile(err) {
  const sessionId = state.sessionId;
  if (err?.code !== "invalid_state" || !sessionId) return false;
  let session;
  try {
    session = await api(`/voicebot/sessions/${encodeURIComponent(sessionId)}`);
  } catch {
    return false;
  }
  if (sessionId !== state.sessionId || session.is_active || session.status !== "closed") return false;
  state.status = "closed";
  state.sessionOpen = false;
  if (!closedElsewhere()) say(`This session was closed ${closedWhere()}: New starts another one.`);
  render();
  return true;
}

/** Tell this tab's and other tabs' pages which session is now active (`/session` and FABs follow it). */
function announceActive(sessionId) {
  if (typeof BroadcastChannel === "undefined") return;
  // A channel of its own, so this tab's page hears it too (a channel never hears its own posts).
  const channel = new BroadcastChannel("sessionhub-active");
  channel.postMessage({ session_id: sessionId });
  channel.close();
}

/**
 * Set the FAB session's status. It is owed until the server acknowledges it: shown as the FAB's,
 * and sent again on the next connection. Resolves to the ack; rejects with ApiError (a refusal,
 * or no answer yet: then it stays owed).
 */
function tell(status, { resume = false, own = false } = {}) {
  if (!state.sessionId) return Promise.resolve(null);
  const told = { status, seq: ++toldSeq, resume, own };
  owed.set(state.sessionId, told);
  render();
  return send(state.sessionId, told);
}

async function send(sessionId, told) {
  told.sending = true;
  try {
    const payload = { session_id: sessionId, status: told.status };
    if (told.resume) payload.resume = true; // this recorder's own recording: its lease comes here
    const ack = await callStatus(payload, told.own);
    if (ack.changed && ack.offset > (ownOffsets.get(sessionId) ?? 0)) ownOffsets.set(sessionId, ack.offset);
    settle(sessionId, told, ack.status);
    return ack;
  } catch (err) {
    if (!RETRYABLE.has(err.code)) settle(sessionId, told, null); // refused: the server's word stands
    throw err;
  } finally {
    told.sending = false;
  }
}

// A node of the release before this page's refuses the fields it does not know (`recorder`,
// `own`) as `invalid_payload`, and a page of this release recorded nothing through it during a
// rolling upgrade or after a rollback (audit "upgrade50"): asked again without them, and not sent
// to it again on this connection (the next one may reach another node).
let olderNode = false;

async function callStatus(payload, own) {
  const named = olderNode ? payload : { ...payload, recorder: RECORDER_ID, ...(own ? { own: true } : {}) };
  try {
    return await call(ensureSocket(), "set_session_status", named);
  } catch (err) {
    if (named === payload || err.code !== "invalid_payload" || !/\b(recorder|own)\b/.test(err.message ?? "")) throw err;
    olderNode = true;
    return call(ensureSocket(), "set_session_status", payload);
  }
}

function settle(sessionId, told, status) {
  if (owed.get(sessionId) !== told) return; // a later status is on its way
  owed.delete(sessionId);
  if (sessionId === state.sessionId && status) state.status = status;
  // The Pause said not heard yet has been (sent again once the connection answered).
  if (ui.message.textContent === PAUSE_NOT_CONFIRMED)
    say(status === "paused" ? "Paused: every device shows it now." : "");
  render();
}

// A Pause the server has not answered within this long is said to be not there yet: on a stalled
// connection the FAB said "Paused" and freed the microphone, while every other device showed the
// session recording for 38 s, until the socket timed out (audit "voicefield").
const PAUSE_UNANSWERED_MS = 3_000;
const PAUSE_NOT_CONFIRMED =
  "Paused here, but the server has not heard it yet: other devices may still show this session recording. It is sent again as soon as the connection answers.";

/** A status set without waiting for it (Pause, Cut): a refusal is shown, no answer yet is not
 * (but a Pause unanswered for a while is), nor a move refused once a later status of this
 * recorder took its place (see `reassert`). */
function tellLater(status, options) {
  const sessionId = state.sessionId;
  const seq = toldSeq + 1; // the one `tell` is about to make
  const unanswered =
    status === "paused"
      ? setTimeout(() => {
          if (owed.get(sessionId)?.seq === seq && state.mode !== "recording") say(PAUSE_NOT_CONFIRMED, "offline");
        }, PAUSE_UNANSWERED_MS)
      : null;
  const told = tell(status, options);
  told.then(() => clearTimeout(unanswered)).catch(() => {});
  told.catch(async (err) => {
    if (RETRYABLE.has(err.code)) return;
    clearTimeout(unanswered);
    // Back after a drop, this recorder's resume was refused: a person paused the session while
    // it was away (the laptop's Pause while the phone's connection was silent). It stops here.
    if (err.code === "invalid_state" && err.details?.reason === "paused_elsewhere") {
      if (state.sessionId === sessionId && state.mode === "recording") stopPausedRecording();
      return;
    }
    // Back after a drop, another tab or device had taken the session up (a Pause pressed there,
    // then Rec): this recorder stops, and leaves that one recording.
    if (err.code === "invalid_state" && err.details?.reason === "recording_elsewhere") {
      if (state.sessionId === sessionId && state.mode === "recording")
        stopPausedRecording({ recordingElsewhere: true });
      return;
    }
    if (err.code === "invalid_state" && (owed.get(sessionId)?.seq ?? toldSeq) > seq) return;
    if (await closedMeanwhile(err)) return; // said in a person's words
    say(err.message, "error");
  });
}

/** Send again what the server has not acknowledged (the connection is back), unless its call is
 * still out: a call refused for an expired token sends itself again on the renewed connection,
 * and a second "recording" from here read as another recorder's (this page gave way to itself). */
function sendOwed() {
  for (const [sessionId, told] of owed) if (!told.sending) send(sessionId, told).catch(() => {});
}

// --- recording ----------------------------------------------------------------------------

// Browsers give the microphone to secure pages only (https, localhost): a server opened by a LAN
// name over plain http cannot record, and is told so before anything is made or changed.
function checkMicrophoneAllowed() {
  if (window.isSecureContext && navigator.mediaDevices?.getUserMedia) return;
  throw new ApiError(
    "insecure_page",
    "Recording needs a secure page: open this server over https (or on localhost). Browsers give the microphone to secure pages only.",
  );
}

function pickMimeType() {
  if (typeof MediaRecorder === "undefined") throw new ApiError("unsupported", "This browser cannot record audio.");
  return MIME_TYPES.find((type) => MediaRecorder.isTypeSupported(type));
}

const MICROPHONE_ASKED = "Waiting for the microphone: allow it in the browser's prompt to record.";
const MICROPHONE_ASKED_AFTER_MS = 400;

async function ensureStream() {
  if (state.stream) return;
  let stream;
  // The browser may ask the person first: said while it waits, nothing has started yet.
  const asking = setTimeout(() => say(MICROPHONE_ASKED), MICROPHONE_ASKED_AFTER_MS);
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    throw new ApiError("microphone", `The microphone is not available: ${err?.message ?? err}`);
  } finally {
    clearTimeout(asking);
    if (ui.message.textContent === MICROPHONE_ASKED) say("");
  }
  state.stream = stream;
  for (const track of stream.getTracks()) track.addEventListener("ended", () => microphoneEnded(stream));
}

// The browser or the system took the microphone away mid-recording (a phone call, another app,
// a phone put to sleep, a headset unplugged): the recorder stops on its own, or its track ends.
// The FAB went on showing "recording", and the server too (this connection renews the lease),
// while nothing recorded, until the next cut failed to start a recorder, leaving 'cutting'.
function microphoneEnded(stream) {
  if (state.stream !== stream || pageGoing) return; // a stream this FAB released, or the page's end
  const recorder = state.recorder;
  // A recorder still running is stopped: its onstop says the rest.
  if (recorder && recorder.state !== "inactive") recorder.stop();
  else if (state.mode === "recording") fail(microphoneStopped());
}

/** Whether the FAB's microphone has no live track left (the system ended it). */
function microphoneGone() {
  return !state.stream?.getAudioTracks().some((track) => track.readyState === "live");
}

function microphoneStopped() {
  return new ApiError(
    "microphone",
    "The microphone stopped recording (a call or another app may have taken it, or the device went to sleep). What it recorded is kept; Resume records again.",
  );
}

function releaseStream() {
  for (const track of state.stream?.getTracks() ?? []) track.stop();
  state.stream = null;
}

function startChunk() {
  const recorder = new MediaRecorder(state.stream, state.mimeType ? { mimeType: state.mimeType } : {});
  const parts = [];
  const sessionId = state.sessionId;
  const userId = currentUserId(); // whose recording this is: only they can upload it
  const startedAt = Date.now();
  const key = `${sessionId}:${startedAt}:${Math.random().toString(36).slice(2)}`;
  // A sleep mid-chunk is not audio: its time is left out of the chunk's end and duration (a
  // laptop asleep for days made a chunk "days long", refused by the server and kept on the
  // device for good), and the chunk is cut on waking, so the next one starts when audio does.
  let lastPieceAt = startedAt;
  let asleepMs = 0;
  const awake = (at) => {
    if (at - lastPieceAt >= ASLEEP_GAP_MS) {
      asleepMs += at - lastPieceAt - TIMESLICE_MS;
      if (state.recorder === recorder) wakeCut();
    }
    lastPieceAt = at;
    return at - asleepMs;
  };
  // Each piece is kept in IndexedDB as it arrives, in order, so leaving the page loses at most
  // the piece in progress (and a flush is asked for when the page is about to go).
  let saving = Promise.resolve();
  recorder.ondataavailable = (event) => {
    const at = awake(Date.now());
    if (!event.data || event.data.size === 0) return;
    parts.push(event.data);
    const seq = parts.length;
    const type = recorder.mimeType || event.data.type || "audio/webm";
    const meta = {
      session_id: sessionId,
      user_id: userId,
      start_ms: startedAt,
      mime: type,
      filename: chunkName(startedAt, type),
    };
    saving = saving.then(() => queue.savePart(key, meta, seq, event.data, at)).catch(() => {});
  };
  recorder.onerror = (event) =>
    fail(new ApiError("recorder", `Recording failed: ${event.error?.message ?? "unknown"}`));
  recorder.finished = new Promise((resolve) => {
    recorder.onstop = () => {
      const endedAt = awake(Date.now());
      resolve(saving.then(() => store(key, { sessionId, userId }, parts, recorder.mimeType, startedAt, endedAt)));
      // Still the FAB's recorder: nobody here stopped it (endChunk lets go of it first), nor the
      // page's end (a closed tab stops it too: the server pauses the session for that).
      if (state.recorder === recorder && !pageGoing && microphoneGone()) fail(microphoneStopped());
    };
  });
  recorder.start(TIMESLICE_MS);
  state.recorder = recorder;
  clearTimeout(state.autoCut);
  state.autoCut = setTimeout(autoCut, state.maxChunkMs);
}

function chunkName(startedAt, type) {
  const extension = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : type.includes("aac") ? "aac" : "webm";
  return `chunk-${startedAt}.${extension}`;
}

/** Cut now (the page woke from a sleep mid-chunk): the audio after it makes a chunk of its own. */
function wakeCut() {
  clearTimeout(state.autoCut);
  state.autoCut = setTimeout(autoCut, 0);
}

/** The automatic cut at `max_chunk_ms`; if another action is running, it comes right after. */
function autoCut() {
  if (state.mode !== "recording") return;
  if (running) {
    state.autoCut = setTimeout(autoCut, 250);
    return;
  }
  run("cut");
}

/** Stop the current recorder; resolves once its chunk is queued for upload. */
async function endChunk() {
  clearTimeout(state.autoCut);
  const recorder = state.recorder;
  state.recorder = null;
  if (!recorder || recorder.state === "inactive") return;
  recorder.stop();
  await recorder.finished;
}

async function store(key, { sessionId, userId }, parts, mimeType, startedAt, endedAt) {
  if (parts.length === 0) {
    await queue.finish(key, null);
    return;
  }
  const type = mimeType || parts[0].type || "audio/webm";
  await queue.finish(key, {
    session_id: sessionId,
    user_id: userId,
    blob: new Blob(parts, { type }),
    filename: chunkName(startedAt, type),
    start_ms: startedAt,
    end_ms: endedAt,
    duration_ms: endedAt - startedAt,
  });
}

// The recorder is starting (between its "recording" answer and its first piece), and whether the
// server paused the session meanwhile (recorder_gone: see `reassert`).
let starting = false;
let pausedWhileStarting = false;

/** The microphone, asked for before anything is told or made: the session said "recording" while
 * the browser still asked the person (as long as they took to answer), and a refused microphone
 * left a new, empty session behind, or a session showing "error". Refused, nothing changed. */
async function openMicrophone() {
  state.mimeType = pickMimeType();
  await ensureStream();
}

async function record() {
  await openMicrophone(); // at once when New or Rec has opened it already
  let ack;
  try {
    ack = await tell("recording");
  } catch (err) {
    // No answer: "recording" may still arrive, so "paused" follows it (refused, and rightly so,
    // if it never arrived: a session that did not record cannot be paused).
    if (RETRYABLE.has(err.code)) tell("paused").catch(() => {});
    throw err;
  }
  if (ack?.changed === false && (ack.previous === "recording" || ack.previous === "cutting")) giveWay();
  starting = true;
  pausedWhileStarting = false;
  pausedElsewhereWhileStarting = false;
  try {
    await ensureStream(); // taken away since (the system ended it): asked for again
    startChunk();
  } catch (err) {
    tellLater("error");
    throw err;
  } finally {
    starting = false;
  }
  state.mode = "recording";
  if (pausedElsewhereWhileStarting) stopPausedRecording();
  else if (pausedWhileStarting) reassert();
}

function pageSessionClosed() {
  return new ApiError("session_closed", "This session is closed; it records no more. New starts another one.");
}

/**
 * Another tab or device started recording into the session first, and this page had not heard
 * of it yet (a phone's Rec pressed as it woke, two presses at once): both recorded into it, and
 * the session showed one recording. This one records nothing (its "recording", answered
 * `changed: false`, left the recording lease with the recorder).
 */
function giveWay() {
  throw new ApiError(
    "conflict",
    "This session is already being recorded on another tab or device: nothing was recorded here.",
  );
}

// --- the buttons ----------------------------------------------------------------------------

const actions = {
  async new() {
    checkMicrophoneAllowed();
    await openMicrophone();
    const created = await api("/voicebot/create_session", { method: "POST", body: {}, idempotent: true });
    follow(created.session_id, { open: true, status: "ready" });
    announceActive(created.session_id);
    await record();
    say("Recording into a new session.");
  },

  async rec() {
    checkMicrophoneAllowed();
    await openMicrophone();
    const moved = await catchUp();
    if (state.mode === "paused") {
      await record();
      say("");
      return;
    }
    if (state.pageSessionId) {
      // A closed page session is said so, and not made the active one: the person's active
      // session stays where it was (it moved to the closed one, by a press that then failed).
      const page = await api(`/voicebot/sessions/${encodeURIComponent(state.pageSessionId)}`);
      if (!page.is_active) throw pageSessionClosed();
      const activated = await api("/voicebot/activate_session", {
        method: "POST",
        body: { session_id: state.pageSessionId },
      });
      follow(activated.session_id, { open: activated.is_active });
      announceActive(activated.session_id);
      if (!activated.is_active) throw pageSessionClosed(); // closed between the two calls
    }
    await record();
    say(moved ? "Your active session changed while you were offline: recording into it." : "");
  },

  // Cut and Pause act on the recorder at once, whatever the network does; the status follows.
  async cut() {
    settled();
    tellLater("cutting");
    const previous = state.recorder;
    startChunk(); // the next chunk starts at once: nothing said during the cut is lost
    await stopRecorder(previous);
    setTimeout(() => {
      const cutting = (owed.get(state.sessionId)?.status ?? state.status) === "cutting";
      if (state.mode === "recording" && cutting) tellLater("recording");
    }, CUTTING_SHOWN_MS);
  },

  /** Pause another tab's or device's recording into this session (Pause while it records elsewhere). */
  async pauseElsewhere() {
    settled();
    await tell("paused");
    say("Paused: the tab or device that was recording stops, and keeps what it recorded. Rec records here.");
  },

  async pause() {
    settled();
    await endChunk();
    releaseStream();
    state.mode = "paused";
    tellLater("paused");
  },

  async done() {
    state.mode = "finishing";
    render();
    try {
      await endChunk(); // the microphone is freed first: Done stops recording even offline
      releaseStream();
      // Sent but unanswered (a stalled network), the status stays owed and is sent again on the
      // next connection: Done goes on, its own press sent until answered (below).
      await tell("final_uploading").catch((err) => {
        if (!unanswered(err)) throw err;
      });
      // Not all sent within DONE_WAIT_MS (a slow network, a server asking to wait): closed all
      // the same, as pressed. It went back to Paused, said "not uploaded yet" with nothing left
      // to send once they were, and never said to press Done again (audit "voicephone"). The
      // chunks left are kept and sent on: the closed session takes them (late chunks, recorded
      // before its close) and processes them again.
      const left = (await queue.settled(DONE_WAIT_MS)) ? 0 : queue.pending;
      // Unanswered (a stalled network, a lost connection), this press is sent again as itself
      // (its request id) until answered, never as a second Done, which would count again.
      const sessionId = state.sessionId;
      const ack = await sendPress(
        ensureSocket(),
        "session_done",
        { session_id: sessionId },
        {
          onSlow: () => say("Still sending Done…"),
          onResend: (err) =>
            say(
              `${err.message} Done is being sent again once the connection is back, as the same press: it is never counted twice.`,
              "error",
            ),
        },
      );
      state.mode = "idle";
      if (state.sessionId === sessionId) {
        state.status = "closed";
        state.sessionOpen = false;
      }
      if (left === 0) say(`Session closed (Done × ${ack.done_count}).`);
      else
        say(
          `Session closed (Done × ${ack.done_count}). ${left} recording(s) still uploading: each is added to it as it arrives, and it is processed again.${uploadTrouble ? ` ${uploadTrouble}` : ""}`,
        );
    } catch (err) {
      // Paused for real: the recorder stops (its chunk stays queued) and the microphone is freed.
      await endChunk().catch(() => {});
      releaseStream();
      state.mode = "paused";
      tellLater("paused");
      throw err;
    }
  },
};

async function stopRecorder(recorder) {
  if (!recorder || recorder.state === "inactive") return;
  recorder.stop();
  await recorder.finished;
}

let running = false;
// Clicks that came while an action ran (a cut keeps Cut, Pause and Done enabled, and an automatic
// cut may be running when the person presses Pause): each runs after it, in the order clicked,
// if the FAB still offers it then. Dropping them lost a Pause pressed during a cut.
const clicked = [];

async function run(action) {
  if (running) {
    if (!clicked.includes(action)) clicked.push(action);
    return;
  }
  running = true;
  const hadFocus = ui.root.contains(document.activeElement);
  const before = state.mode;
  // Decided before the mode turns busy (a busy FAB records nothing elsewhere, as far as it shows).
  const name = action === "pause" && recordedElsewhere() ? "pauseElsewhere" : action;
  if (action !== "cut" && action !== "done") state.mode = "busy"; // a cut keeps recording
  render();
  try {
    await actions[name]();
    if (state.mode === "busy") state.mode = before;
  } catch (err) {
    if (action !== "done") {
      // Whatever failed, the mode follows what is really there: a live recorder or none.
      if (!state.recorder) releaseStream();
      state.mode = state.recorder ? "recording" : before === "recording" || before === "paused" ? "paused" : "idle";
    }
    // Refused because the session closed elsewhere meanwhile: said in a person's words.
    if (!(await closedMeanwhile(err))) say(err?.message ?? String(err), "error");
  } finally {
    running = false;
    closedElsewhere(); // heard while this action ran (a Rec that was starting, say)
    render();
    keepFocus(action, hadFocus);
    runNextClicked();
    followPushed(); // a change pushed while this action ran
  }
}

// While an action runs its buttons are disabled, and a disabled button loses the focus to the
// page: a keyboard user who pressed Rec found the focus back at the top of the page, Pause a
// whole page of Tabs away. It comes back to what they will press next.
const FOCUS_NEXT = {
  new: ["pause", "new"],
  rec: ["pause", "rec"],
  cut: ["cut", "pause"],
  pause: ["rec", "new"],
  done: ["new", "rec"],
};

function keepFocus(action, hadFocus) {
  const lost = document.activeElement === null || document.activeElement === document.body;
  if (!hadFocus || !lost) return; // the person has moved on: their focus stays where they put it
  const order = [...FOCUS_NEXT[action], ...Object.keys(ui.buttons)];
  order
    .map((name) => ui.buttons[name])
    .find((button) => !button.disabled)
    ?.focus();
}

function runNextClicked() {
  while (clicked.length > 0) {
    const action = clicked.shift();
    if (offered()[action]) {
      run(action);
      return;
    }
  }
}

function fail(err) {
  clearTimeout(state.autoCut);
  state.recorder = null;
  releaseStream();
  state.mode = "paused";
  tellLater("error");
  say(err.message, "error");
  render();
}

// --- recordings kept on this device (web/js/upload_queue.js: held chunks) -------------------
// A recording is uploaded only as the identity that made it. Once that identity is gone (this
// device signed out elsewhere, then "Start as a new guest") its chunks wait here for it: they
// upload when this browser is that identity again, and meanwhile the person can download them.
// A recording the server refused for good (its session closed or deleted from another device
// while this one was offline) is kept here too, to be downloaded: nowhere else holds it.

// Why a recording was refused, in a person's words (by the refusal's code).
const REFUSED_WHY = {
  invalid_state: "its session was closed meanwhile",
  session_not_found: "its session was deleted meanwhile",
  forbidden: "this identity may no longer add to its session",
  quota_exceeded: "the day's storage quota is used up",
  limit_reached: "its session holds as many recordings as it may",
  payload_too_large: "it is larger than the server takes",
};

function buildHeld() {
  ui.held = document.createElement("div");
  ui.held.id = "fab-held";
  ui.held.className = "fab-message fab-held";
  ui.held.hidden = true;
  ui.heldText = document.createElement("p");
  ui.heldText.setAttribute("role", "status");
  ui.heldDownload = heldButton("fab-held-download", "Download", downloadHeld);
  ui.heldRemove = heldButton("fab-held-remove", "Remove from this browser", removeHeld);
  ui.heldRemove.hidden = true;
  ui.held.append(ui.heldText, ui.heldDownload, " ", ui.heldRemove);
  return ui.held;
}

function heldButton(id, text, action) {
  const button = document.createElement("button");
  button.type = "button";
  button.id = id;
  button.className = "button fab-button";
  button.textContent = text;
  button.addEventListener("click", () => action().catch((err) => say(err?.message ?? String(err), "error")));
  return button;
}

let downloadedIds = []; // the held chunks this page has handed over as files

function renderHeld(held) {
  ui.held.hidden = held === 0;
  if (held === 0) return;
  const refused = Math.min(queue.refused.length, held);
  const stranded = Math.min(queue.stranded, held - refused);
  const waiting = held - refused - stranded;
  const said = [];
  if (refused > 0) {
    const whys = [...new Set(queue.refused.map((mark) => REFUSED_WHY[mark.code] ?? mark.message))];
    const [these, it] = refused === 1 ? ["1 recording", "It is"] : [`${refused} recordings`, "They are"];
    said.push(`${these} could not be uploaded (${whys.join("; ")}). ${it} kept on this device.`);
  }
  if (stranded > 0) {
    // Its guest was signed out from its last device, with no passkey: no sign-in brings it back,
    // and "uploads once you sign in again" promised what cannot happen (audit "returning").
    const [these, are, they] = stranded === 1 ? ["1 recording", "is", "it"] : [`${stranded} recordings`, "are", "they"];
    said.push(
      `${these} made here as a guest that was signed out from its last device ${are} kept on this device: ` +
        `no device can sign in as that guest again, so ${they} cannot be uploaded.`,
    );
  }
  if (waiting > 0) {
    const [these, are, they, upload, them] =
      waiting === 1
        ? ["1 recording", "is", "it", "uploads", "it"]
        : [`${waiting} recordings`, "are", "they", "upload", "them"];
    said.push(
      queue.gone
        ? `${these} made here ${are} kept on this device: ${they} ${upload} once you sign in again as the ` +
            `identity that made ${them} (a device link or passkey).`
        : `${these} made here as another identity ${are} kept on this device: ${they} ${upload} once this ` +
            `browser is that identity again (a device link or passkey).`,
    );
  }
  said.push(`You can download ${held === 1 ? "it" : "them"} now.`);
  ui.heldText.textContent = said.join(" ");
}

async function downloadHeld() {
  const items = await queue.heldItems();
  for (const item of items) saveFile(item.blob, `recording-${item.session_id}-${item.filename}`);
  downloadedIds = items.map((item) => item.id);
  ui.heldRemove.hidden = downloadedIds.length === 0;
  say(`${items.length} recording${items.length === 1 ? "" : "s"} downloaded.`);
}

async function removeHeld() {
  await queue.removeHeld(downloadedIds);
  downloadedIds = [];
  ui.heldRemove.hidden = true;
  say("");
  // The note and its buttons are gone, and the keyboard's focus with them: it stays in the FAB.
  const lost = document.activeElement === null || document.activeElement === document.body;
  if (lost)
    Object.values(ui.buttons)
      .find((button) => !button.disabled)
      ?.focus();
}

// --- start-up -------------------------------------------------------------------------------

/** The FAB's connection, opened on first use: a first visit mints no guest token by itself. */
function ensureSocket() {
  if (socket) return socket;
  socket = connect();
  socket.on("connect", () => {
    olderNode = false; // first: reassert below sends with the fields again
  });
  socket.on("connect", reassert);
  // The user's active session, followed on every connection (after a reconnection the answer
  // says where it stands now: a change made meanwhile is not lost), then pushed on each change.
  socket.on("connect", followActive);
  socket.on("active_session", onActiveSession);
  socket.on("connect", () => {
    connectedOnce = true;
    if (ui.message.dataset.kind === "offline") say("");
  });
  socket.on("disconnect", () => {
    caughtUp = false;
    // The server pauses a recording whose recorder's connection went: every other client shows
    // it paused, while this one records on (its audio kept here, and uploaded once back). It
    // said "Recording" and nothing else, as if all were well (audit "phonelife").
    // Not over a sign-in that ran out: the connection drops for that too (its token refused), and
    // "once the connection is back" promised what no connection would bring (a loaded CI run).
    if (state.recorder && ui.message.textContent !== SIGN_IN_RAN_OUT) say(OFFLINE_RECORDING, "offline");
  });
  // The network back before the socket noticed it had gone: what is owed is sent now.
  window.addEventListener("online", sendOwed);
  // Signed out (this device revoked, or every device from another): nobody to record for. The
  // microphone stayed on, the FAB saying "Offline: still recording…" beside "Not signed in",
  // for audio that could never upload (audit "returning" F2). It stops, its chunk kept here.
  window.addEventListener("sessionhub:identity-lost", () => {
    if (!state.recorder) return;
    run("pause").then(() => say(SIGNED_OUT_RECORDING, "error"));
  });
  return socket;
}

/**
 * The server pauses a recording whose recorder's connection went (its recording lease): after a
 * reconnection, a recorder still recording says so again, and takes the lease on this one
 * (unchanged status: no event, but the lease moves). A status the server never acknowledged (a
 * Pause pressed offline) is sent again, so it is never left at `recording` while nobody records.
 *
 * A Cut (or its "recording" after) owed while recording gives way to that "recording": the
 * session may be paused now (the lost connection's close), and a cut is refused there. So it was
 * when a recording outlived its access token: the Cut that found the token expired made the
 * connection again, was sent again and refused, and the session stayed paused under a recorder
 * recording on (another tab then offered Rec into it).
 */
function reassert() {
  // A pause heard while this FAB's recorder is starting (its "recording" answered, the microphone
  // not yet open) is answered once it records: else the session stayed paused under a recording.
  if (starting) pausedWhileStarting = true;
  const pending = owed.get(state.sessionId)?.status;
  if (state.mode === "recording" && state.sessionId && (!pending || pending === "cutting" || pending === "recording"))
    tellLater("recording", { resume: true });
  sendOwed();
}

// --- following the active session set elsewhere ----------------------------------------------

let followed = 0; // counts session switches: an answer about the active session older than one is stale
// The user's active session as the server last pushed it (null: none; undefined: not told yet).
let pushedActive;

/** Whether the FAB may move to another session: nothing of its own is going on. */
function mayFollow() {
  return !running && (state.mode === "idle" || state.mode === "paused");
}

/** Follow `sessionId`, made active elsewhere; a paused recording here stays paused (and owed). */
function adopt(sessionId, open = true) {
  if (!sessionId || sessionId === state.sessionId || !mayFollow()) return;
  state.mode = "idle";
  say("");
  follow(sessionId, { open });
}

/** Follow the user's active session on this connection (answered with where it stands now). */
function followActive() {
  call(socket, "follow_active_session", {}, undefined, { resend: false })
    .then(onActiveSession, () => {
      // Not followed on this connection (the server is busy or stopping): the next connection asks.
    })
    .finally(() => {
      caughtUp = true;
      for (const resolve of caughtUpWaiters.splice(0)) resolve();
    });
}

// Whether the FAB knows the user's active session as it is now: false from a disconnect until
// the next connection's follow_active_session is answered. A device back from days offline still
// shows the session it had then (maybe closed since, another one active): a Rec pressed before
// the catch-up went to that stale session, refused, its error then wiped by the catch-up.
let caughtUp = false;
let connectedOnce = false;
const caughtUpWaiters = [];
const CATCH_UP_WAIT_MS = 10_000; // as long as any call waits for its answer

/**
 * Wait (bounded) until the FAB knows the user's active session as it is now, saying so at once
 * when offline; then it is on that session (Rec records into the active session). Resolves to
 * whether that moved the FAB to another session.
 */
async function catchUp() {
  ensureSocket();
  // A socket that will not connect again (the server ended it: this device was signed out) has
  // nothing to catch up on: the action goes ahead and its call says what is wrong.
  if (!socket.active) return false;
  const offline = "Offline: recording starts when the connection is back…";
  if (caughtUp) {
    // The browser knows it is offline before the socket does (a ping away): the call then waits
    // for the connection, up to its timeout, and says nothing meanwhile unless told here.
    if (navigator.onLine === false) say(offline);
    return false;
  }
  // Offline only once it has been online: a first connection still being made is just that.
  say(connectedOnce || navigator.onLine === false ? offline : "Connecting…");
  await new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      caughtUpWaiters.splice(caughtUpWaiters.indexOf(done), 1);
      reject(new ApiError("timeout", "You are offline: nothing was recorded. Try again once the connection is back."));
    }, CATCH_UP_WAIT_MS);
    caughtUpWaiters.push(done);
  });
  say("");
  if (state.pageSessionId || !pushedActive || pushedActive === state.sessionId) return false;
  follow(pushedActive); // it changed meanwhile: the one active now, as the label shows
  return true;
}

/**
 * The user's active session: `{session_id, seq}`, the answer to following it and then the
 * server's `active_session` push on every change (in order). A cleared one (`null`: the session was closed or deleted) leaves the FAB on that
 * session, whose own events show it closed; a set one is followed now, or once the FAB's own
 * action is over, and announced to this tab's page (`/session` follows it).
 */
function onActiveSession(data) {
  if (data === null || typeof data !== "object" || !("session_id" in data)) return;
  pushedActive = typeof data.session_id === "string" ? data.session_id : null;
  followPushed();
}

function followPushed() {
  if (!pushedActive || pushedActive === state.sessionId || !mayFollow()) return;
  adopt(pushedActive);
  announceActive(pushedActive);
}

function watchActive() {
  // The same browser's tabs announce the session they make active (this tab's own New too: a no-op).
  if (typeof BroadcastChannel !== "undefined") {
    new BroadcastChannel("sessionhub-active").addEventListener("message", (message) => {
      const sessionId = message.data?.session_id;
      if (typeof sessionId === "string") adopt(sessionId);
    });
  }
  // Other tabs and devices: the server's push, on the FAB's connection. A page that had no token
  // at its load (signed in since, in another tab) opens it when it comes back into view.
  const connectOnceSignedIn = () => {
    if (!socket && hasToken()) ensureSocket();
  };
  document.addEventListener("visibilitychange", connectOnceSignedIn);
  window.addEventListener("focus", connectOnceSignedIn);
}

// What the FAB last said of an upload being retried (until one goes through, or is refused).
let uploadTrouble = "";

/** Why an upload is tried again later, and when, in a person's words (the server's reason first). */
function uploadTroubleWords(err, delayMs) {
  const seconds = Math.round(delayMs / 1000);
  const when = seconds >= 90 ? `${Math.round(seconds / 60)} min` : `${seconds} s`;
  if (err?.details?.reason === "storage_full") {
    return `The server's disk is full: your recording is kept on this device and sent when there is room (next try in ${when}).`;
  }
  if (err?.code === "rate_limited") {
    return `The server takes no more uploads for now: your recording is kept on this device and sent in ${when}.`;
  }
  if (serverWaitMs(err)) {
    return `The server cannot take uploads now: your recording is kept on this device and sent in ${when}.`;
  }
  if (err?.status === 401 || err?.code === "unauthorized") {
    // A sign-in that ran out and cannot renew itself (a token without a refresh cookie): "Upload
    // failed; retrying" said nothing of what would help, while the kept chunks piled up (audit
    // "voicephone").
    return SIGN_IN_RAN_OUT;
  }
  // No countdown in it: each retry's new number was said anew by a screen reader, five times in
  // 25 s offline (audit "voicephone"); the same words are said once.
  return "Upload failed: your recording is kept on this device and tried again shortly.";
}

function unsayUploadTrouble() {
  if (uploadTrouble && ui.message.textContent === uploadTrouble) say("");
  uploadTrouble = "";
}

function adoptPageToken() {
  const tag = document.querySelector('script[type="module"][src*="/static/js/fab.js"][data-token]');
  const token = tag?.dataset.token;
  if (!token) return;
  adoptToken(token);
}

function pageSessionId() {
  const match = /^\/session\/([0-9a-fA-F-]{36})\/?$/.exec(location.pathname);
  return match ? match[1].toLowerCase() : null;
}

// The page is being unloaded (pagehide): its recorder stops with it, which is no microphone failure.
let pageGoing = false;

/** The page is going (or may be killed while hidden): have the recorder hand over what it has. */
function flush() {
  if (state.recorder?.state === "recording") state.recorder.requestData();
}

function watchLeaving() {
  window.addEventListener("beforeunload", (event) => {
    if (state.mode !== "recording" && state.mode !== "finishing") return;
    flush();
    event.preventDefault();
    event.returnValue = ""; // older Chromium shows the prompt only with this set
  });
  window.addEventListener("pagehide", () => {
    pageGoing = true;
    flush();
  });
  window.addEventListener("pageshow", () => {
    pageGoing = false; // back from the back-forward cache
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") flush();
  });
}

async function start() {
  build();
  watchLeaving();
  watchActive();
  render();
  adoptPageToken();
  state.pageSessionId = pageSessionId();
  queue = new UploadQueue({
    onChange: (count, held) => {
      state.pending = count;
      renderHeld(held);
      render();
    },
    // The kept-recordings note says what became of it (kept, to download): nothing more here,
    // but why an upload is being retried, said before, would now be untrue.
    onRefused: unsayUploadTrouble,
    onRetry: (err, delayMs) => {
      uploadTrouble = uploadTroubleWords(err, delayMs);
      // Offline, a failed upload is what "Offline: … uploaded once the connection is back"
      // already says: the two took turns, each read out again (audit "voicefield").
      if (ui.message.textContent === OFFLINE_RECORDING && !navigator.onLine) return;
      say(uploadTrouble, "error");
    },
    onUploaded: unsayUploadTrouble,
  });
  try {
    const config = await fetch("/voicebot/fab/config").then((r) => r.json());
    if (Number.isInteger(config?.max_chunk_ms)) state.maxChunkMs = config.max_chunk_ms;
    // A token is no identity when the browser already heard that it is gone (another page or
    // tab was refused): what it recorded is held, as without a token.
    const gone = typeof knownIdentity()?.lost === "string";
    if (hasToken() && !gone) {
      ensureSocket(); // the pushes of the active session (onActiveSession)
      const before = followed;
      const { active_session: active } = await api("/voicebot/active_session", { method: "POST" });
      // A push that came first is newer than this answer, or the same.
      if (active && followed === before) follow(active.session_id, { open: Boolean(active.is_active) });
      queue.kick(); // chunks a previous page load left behind
      queue.recover(); // and the chunk it was recording when it went
    } else if (knownIdentity() !== null || signedOutOnPurpose()) {
      // No token, but this browser had an identity (its token dropped when it was signed out
      // elsewhere): what it recorded is said held at once, or uploaded if the identity is
      // restored. Not left to the page's `sessionhub:identity-lost`, which may have been heard
      // before this module loaded. No guest is minted: a browser that had one is never given one.
      // Signed out here on purpose, the same: the page after the sign-out showed nothing of the
      // recordings still kept on the device.
      queue.kick();
      queue.recover(); // a chunk left mid-recording is held with the rest
    }
  } catch (err) {
    say(err?.message ?? String(err), "error");
    if (err?.code === "identity_lost") {
      // Refused as it started (the device signed out meanwhile): what it recorded is held.
      queue.kick();
      queue.recover();
    }
  }
  started = true;
  render();
}

start();
