/**
 * The listening player: a few items that play a Web Audio tone and report play, pause and
 * stop to the server (`listening_report`). While an item plays the page reports `playing`
 * every few seconds; the server coalesces those to one write per throttle interval.
 * Server data reaches the DOM through textContent only.
 */
import { $, ApiError, api, call, connect, currentUserId, showConnection } from "./client.js";
import { freshId } from "./ids.js";
import { DEVICE_KEY, listeningDeviceOf } from "./listening_device.js";

const ITEMS = [
  {
    item_id: "demo-audiobook-1",
    title: "The Quiet Hour",
    artist: "A. Narrator",
    album: "Demo Books",
    duration_s: 3600,
    hz: 220,
  },
  {
    item_id: "demo-podcast-7",
    title: "Episode 7: Time Ranges",
    artist: "The Redis Show",
    album: "Demo Casts",
    duration_s: 1800,
    hz: 330,
  },
  { item_id: "demo-song-3", title: "Four Forty", artist: "Tone Band", album: "Sine Waves", duration_s: 240, hz: 440 },
];
const HEARTBEAT_MS = 2000;
// The tabs of one browser are one device (one id in localStorage), and the server keeps one item
// playing per device: two tabs playing two items switched each other's item off at every
// heartbeat, leaving 2 s fragments of one and nothing of the other. A tab that starts playing
// tells the others, which stop, as a second player app on a phone stops the first.
const TABS = "BroadcastChannel" in window ? new BroadcastChannel("sessionhub.listening.player") : null;

const ui = { items: $("items"), now: $("now-playing"), notice: $("player-notice"), connection: $("connection") };

let socket = null;
let historyId = null;
let current = null; // {item, startedMs (page clock), heard: {id, endedAt} (server clock) or null}
let heartbeat = null;
let audio = null; // {context, oscillator, gain}
const positions = new Map(); // item_id -> seconds already played
// item_id -> how many times this page played or settled it, or had a pause or stop answered: a
// read of positions that began before one of those is older than what the page knows, and is
// not applied (seen in CI: a read answered late put "Resumes at 0:02" on a book just paused at
// 0:50). item_id -> pauses and stops sent and not answered yet: the server may not have them.
const changes = new Map();
const unanswered = new Map();
let positionReads = 0; // under way
const rows = new Map(); // item_id -> {row, state}

/** The id made from the signed-in device kept, unless this browser has one already. */
async function adoptDeviceId() {
  if (localStorage.getItem(DEVICE_KEY)) return;
  try {
    const me = await api("/api/auth/me");
    const device = typeof me.device_id === "string" ? me.device_id : "";
    // A bare token names no device: a random id, as before. A play pressed meanwhile made one.
    if (device && !localStorage.getItem(DEVICE_KEY)) localStorage.setItem(DEVICE_KEY, listeningDeviceOf(device));
  } catch {
    // Not answered: a random id at the first report, as before.
  }
}

function deviceId() {
  let id = localStorage.getItem(DEVICE_KEY);
  if (!id || !/^[A-Za-z0-9_.:-]{1,64}$/.test(id)) {
    id = `web-${freshId().slice(0, 8)}`;
    localStorage.setItem(DEVICE_KEY, id);
  }
  return id;
}

function notice(text) {
  ui.notice.textContent = text; // never hidden: a region shown as it is filled goes unsaid
}

function position(item) {
  const base = positions.get(item.item_id) ?? 0;
  if (current?.item === item) return base + (performance.now() - current.startedMs) / 1000;
  return base;
}

// A pause or stop's own id, the same for every send of one press (its answer lost, or kept in the
// browser and sent by two tabs): the server applies it once. A second send arriving after the
// person played the item again ended that new play at its last report.
const pauseId = (press) => `${deviceId()}.${Math.round(press.wall)}`;

/** `agoMs`: a pause or stop sent late, pressed that long ago; the server ends the session then.
 * `press`: when it was pressed (its id), for a pause or stop. `stretch`: the play a `playing`
 * reports (it says which session it continues). */
async function report(item, status, agoMs = null, press = null, stretch = null) {
  if (!socket?.connected) throw new Error("You are offline.");
  if (!historyId) throw new Error("Your history is not open yet.");
  const payload = {
    session_id: historyId,
    item_id: item.item_id,
    status,
    device_id: deviceId(),
    position_s: Math.round(Math.min(position(item), item.duration_s) * 10) / 10,
    item: { title: item.title, artist: item.artist, album: item.album, duration_s: item.duration_s },
  };
  if (agoMs !== null) payload.ago_ms = Math.min(OWED_FOR_MS, Math.max(0, Math.round(agoMs)));
  if (status !== "playing") payload.pause_id = pauseId(press ?? { wall: Date.now() });
  const continues = status === "playing" ? continuing(stretch) : null;
  if (continues) payload.continues = continues;
  return call(socket, "listening_report", payload);
}

/** The session a play continues: the last one the server answered for it, while the play has not
 * stopped since (no sleep seen, nothing played unheard since a waking). The server's silence sweep
 * ends that session when no report gets through for a minute (its node down, the network gone);
 * said, the next report takes it up again over the silence, as one play, instead of a new session
 * after an uploaded span (three entries for one play before). */
function continuing(stretch) {
  // Said only after reports failed (`missed`): a node of the release before refuses the field,
  // and sent with every heartbeat it refused them all (audit "upgrade40"); refused once, it is
  // not said again on this play (`noContinues`).
  if (!stretch?.heard || !stretch.missed || stretch.noContinues) return null;
  if (stretch.stopped !== null || stretch.awake.length > 0) return null;
  return stretch.heard.id;
}

/** A `playing` report of `stretch` failed: the next one may say the play continues; refused for
 * the field itself (a node of the release before), it is not said again. */
function reportFailed(stretch, err) {
  if (!stretch) return;
  if (err?.code === "invalid_payload" && String(err?.message ?? "").includes("continues")) stretch.noContinues = true;
  else stretch.missed = true;
}

function startTone(hz) {
  try {
    const context = audio?.context ?? new AudioContext();
    const oscillator = context.createOscillator();
    const gain = context.createGain();
    oscillator.frequency.value = hz;
    gain.gain.value = 0.04;
    oscillator.connect(gain).connect(context.destination);
    oscillator.start();
    audio = { context, oscillator, gain };
  } catch {
    audio = null; // no audio output: the reports still tell the story
  }
}

function stopTone() {
  try {
    audio?.oscillator.stop();
  } catch {
    // already stopped
  }
}

// A button pressed by keyboard is disabled by what it did (Play while its item plays, Pause and
// Stop once it has stopped), and a disabled button drops the focus to the page: the next Tab
// started from the top. The focus goes to what that row offers next.
const FOCUS_NEXT = { play: ["pause", "stop"], pause: ["play", "stop"], stop: ["play"] };

function handFocusOn(focused) {
  if (!focused?.disabled || !focused.closest(".player-item")) return;
  const kind = Object.keys(FOCUS_NEXT).find((name) => focused.classList.contains(name));
  const row = focused.closest(".player-item");
  FOCUS_NEXT[kind]
    .map((name) => row.querySelector(`button.${name}`))
    .find((button) => !button.disabled)
    ?.focus();
}

function render() {
  const focused = document.activeElement;
  for (const item of ITEMS) {
    const { row } = rows.get(item.item_id);
    const playing = current?.item === item;
    row.dataset.state = playing ? "playing" : rows.get(item.item_id).state;
    row.querySelector(".play").disabled = playing;
    row.querySelector(".pause").disabled = !playing;
    row.querySelector(".stop").disabled = !playing && rows.get(item.item_id).state !== "paused";
    showPosition(item);
  }
  handFocusOn(focused);
  ui.now.textContent = current ? `Playing: ${current.item.title} — ${current.item.artist}` : "Nothing playing.";
  ui.now.dataset.state = current ? "playing" : "idle";
}

function changed(item) {
  changes.set(item.item_id, (changes.get(item.item_id) ?? 0) + 1);
}

/** This page knows better than a read of the server: it plays the item, or owes or awaits the
 * answer to a pause or stop of it. */
function ownWord(item) {
  return current?.item === item || owed.has(item.item_id) || (unanswered.get(item.item_id) ?? 0) > 0;
}

function settle(item, state) {
  changed(item);
  // Stop keeps the place as Pause does: it ends the play at once (a play after it is a new
  // session), not the place. It rewound, and its report said where the rewind put it: every
  // stopped play ended at 0:00 in the history, and other devices started the book over (audit
  // "playerhonest").
  positions.set(item.item_id, position(item));
  rows.get(item.item_id).state = state;
  showPosition(item);
}

function clockText(seconds) {
  const whole = Math.floor(seconds);
  const [h, m, s] = [Math.floor(whole / 3600), Math.floor(whole / 60) % 60, whole % 60];
  return `${h ? `${h}:${String(m).padStart(2, "0")}` : m}:${String(s).padStart(2, "0")}`;
}

/** "Resumes at 12:34" under a row whose item was heard part of the way. */
function showPosition(item) {
  const at = current?.item === item ? 0 : (positions.get(item.item_id) ?? 0); // playing: the row says so
  const el = rows.get(item.item_id).row.querySelector(".position");
  const ended = at >= item.duration_s - 1;
  el.textContent = ended ? "Heard to the end: plays from the start" : at >= 1 ? `Resumes at ${clockText(at)}` : "";
  el.dataset.seconds = String(Math.round(at));
}

// Where each item was left, on any device: the newest session of the item ends there (its
// `end_position_s`), so a book paused on the phone plays on from there on the laptop, and a page
// opened again plays on from where it was. Read when the connection opens and when the tab is
// shown again (the person picked up this device), for the items this page has no word of its
// own on (`ownWord`: newer than what it would read), applied only if it still has none.
async function readPositions() {
  document.body.dataset.positionReads = String(++positionReads);
  await Promise.all(
    ITEMS.map(async (item) => {
      if (ownWord(item)) return;
      const before = changes.get(item.item_id) ?? 0;
      try {
        const query = new URLSearchParams({ item_id: item.item_id, limit: "1" });
        const [newest] = (await api(`/api/listening/sessions?${query}`)).sessions;
        const since = (changes.get(item.item_id) ?? 0) !== before; // played or paused here meanwhile
        if (!newest || since || ownWord(item)) return;
        const at = newest.end_position_s ?? 0;
        positions.set(item.item_id, at < item.duration_s - 1 ? at : 0); // heard to the end: from the start
        showPosition(item);
      } catch {
        // unread: the position this page knows stays (a position is a convenience, not a record)
      }
    }),
  );
  document.body.dataset.positionReads = String(--positionReads); // 0: every read applied or set aside
}

/** Another tab of this browser plays now: this one stops without a report (that tab's play
 * already ended this one's session on the server, or continues it for the same item). */
function yieldToAnotherTab() {
  if (!current) return;
  tick(current);
  // What it played unheard is uploaded (sent now, or once back), up to a heartbeat before the
  // other tab's play: never into the session that play's report began.
  const now = { page: performance.now(), wall: Date.now() };
  uploadAwake(current.item, endAwake(current, { page: now.page - HEARTBEAT_MS, wall: now.wall - HEARTBEAT_MS }));
  settle(current.item, "paused");
  current = null;
  clearInterval(heartbeat);
  stopTone();
  render();
  ui.now.textContent = "Paused here: another tab of this browser is playing.";
}

// A pause or stop the server did not hear (pressed offline, or its answer lost with the
// connection), by item: sent again once the connection is back, saying how long ago it was
// pressed (`ago_ms`), so that the session ends at the press: it was dropped with "Report
// failed", and the history said the item was playing until the sweeper ended it at its last
// heartbeat; then, sent at its arrival, it counted the time offline after the press; past the
// server's silence it was lost, and so was what was played offline before it. Kept a day (the
// most the server takes).
// The time since the press is read on the wall clock (`Date.now()`): the page's own clock stops
// while the machine sleeps, and a pause pressed before a night asleep would end at the morning.
const owed = new Map(); // item_id -> {item, status, press: {page, wall}, heardBefore, awake}
const OWED_FOR_MS = 86_400_000;

/** The report's failure says the server did not hear it (may be heard once sent again). */
function unheard(err) {
  return !(err instanceof ApiError) || ["timeout", "disconnected", "unavailable"].includes(err.code);
}

// Played while the server heard nothing (offline, or a tab's timers held back): once it has
// ended the session at its last report (the sweep: a crash, for all it knows), the next report
// starts a new one and that span was in neither. This play went on all the while, so the span
// from the end the server last acknowledged to the new session's start (both on the server's
// clock) is uploaded, once: its client id is the ended session's, so a resend is a duplicate.
const gaps = new Map(); // client_id -> upload payload not answered yet

// The pauses and stops owed and the uploads not answered yet outlive the page (a reload, a closed
// tab, a phone that dropped the page): kept in this browser for the identity they are of, and sent
// by the next /player page of it once connected. What the page's own clock placed (a press on the
// server's clock by the last ack) is not kept: a new page's clock starts again.
const KEPT_KEY = "sessionhub.listening.owed";
// Whose history this page owes to: the identity it was opened as. Another identity taking the
// browser meanwhile (a sign-in in another tab) gets none of it: kept under this one's name, sent
// by a page of this identity only.
// Read once the browser has a token (a first visit mints one as it connects).
let pageUser = null;
const owner = () => {
  pageUser ??= currentUserId();
  return pageUser;
};
const keptKey = () => `${KEPT_KEY}:${owner()}`;
const mine = () => currentUserId() !== null && owner() === currentUserId();

// What this page held or took back, by key: in the browser's store, an entry it does not know is
// another tab's (open, or closed before this page loaded it), kept when this page writes.
const handled = new Set();
const pauseKey = (pause) => `${pause.item_id}@${pause.pressed}`;

// What the browser keeps is read as untrusted text (another version of the page, a hand-edited
// store): entries of another shape are left out, and at most this many of each.
const KEPT_MAX = 200;

function readKept() {
  let kept = null;
  try {
    kept = JSON.parse(localStorage.getItem(keptKey()) ?? "null");
  } catch {
    return null;
  }
  if (!kept || typeof kept !== "object" || kept.user !== owner()) return null;
  const span = (pair) => Array.isArray(pair) && pair.length === 2 && pair.every(Number.isFinite);
  const pauses = (Array.isArray(kept.pauses) ? kept.pauses : []).filter(
    (pause) =>
      pause &&
      typeof pause.item_id === "string" &&
      ["paused", "stopped"].includes(pause.status) &&
      Number.isFinite(pause.pressed) &&
      Array.isArray(pause.awake) &&
      pause.awake.every(span),
  );
  const uploads = (Array.isArray(kept.uploads) ? kept.uploads : []).filter(
    (upload) => upload && typeof upload.client_id === "string" && typeof upload.item_id === "string",
  );
  return { user: kept.user, pauses: pauses.slice(0, KEPT_MAX), uploads: uploads.slice(0, KEPT_MAX) };
}

function keep() {
  const pauses = [...owed.values()].map(({ item, status, press, awake }) => ({
    item_id: item.item_id,
    status,
    pressed: press.wall,
    position_s: positions.get(item.item_id) ?? 0, // where it was paused: a new page knows none
    awake: awake.map((span) => [span.from.wall, span.to.wall]),
    // Beside the pairs, which a page of the release before reads (and drops a pause whose pairs
    // are not pairs): the first span is the play's start.
    awake_from_start: awake[0]?.fromStart === true,
  }));
  const uploads = [...gaps.values()];
  const others = readKept();
  for (const pause of pauses) handled.add(pauseKey(pause));
  for (const upload of uploads) handled.add(upload.client_id);
  for (const pause of others?.pauses ?? []) if (!handled.has(pauseKey(pause))) pauses.push(pause);
  for (const upload of others?.uploads ?? []) if (!handled.has(upload.client_id)) uploads.push(upload);
  try {
    if (pauses.length || uploads.length) {
      localStorage.setItem(keptKey(), JSON.stringify({ user: owner(), pauses, uploads }));
    } else localStorage.removeItem(keptKey());
  } catch {
    // Storage full or refused (a private window): what is owed lives as long as the page.
  }
}

/** What an earlier page of this identity owed, taken back (its own uploads and pauses win). */
function takeBack() {
  const kept = readKept();
  if (!kept) return;
  for (const upload of kept.uploads ?? []) {
    handled.add(upload.client_id);
    if (!gaps.has(upload.client_id)) gaps.set(upload.client_id, upload);
  }
  for (const pause of kept.pauses ?? []) {
    handled.add(pauseKey(pause));
    const item = ITEMS.find((candidate) => candidate.item_id === pause.item_id);
    if (!item || owed.has(item.item_id) || !Number.isFinite(pause.pressed)) continue;
    const awake = (pause.awake ?? []).map(([from, to], at) => ({
      from: { wall: from },
      to: { wall: to },
      fromStart: at === 0 && pause.awake_from_start === true,
    }));
    owed.set(item.item_id, {
      item,
      status: pause.status,
      press: { page: null, wall: pause.pressed },
      heardBefore: null,
      awake,
    });
    const at = Number.isFinite(pause.position_s) ? pause.position_s : 0;
    positions.set(item.item_id, Math.min(Math.max(0, at), item.duration_s));
    settle(item, pause.status); // the page's own word: not read from the server until sent
  }
  render();
}

// An ack that wrote (started, resumed, extended) says the server's time then (the session's
// `ended_at`): with this page's clock at that ack it places a moment of this page on the
// server's clock.
const WROTE = ["started", "resumed", "extended"];

/** A `playing` ack for the play `stretch`, its report sent at `sentWall` (the wall clock): a new
 * session while it played means a gap to upload. */
function heard(stretch, ack, sentWall) {
  const session = ack.listening;
  if (!session || ack.action === "deleted") return;
  const before = stretch.heard;
  const anchor = WROTE.includes(ack.action)
    ? { serverMs: session.ended_at, pageMs: performance.now() }
    : before?.id === session.id
      ? before.anchor
      : null;
  stretch.heard = { id: session.id, endedAt: session.ended_at, anchor };
  stretch.missed = false; // heard again: nothing to say continues until a report fails
  rows.get(stretch.item.item_id).row.dataset.reportedUntil = String(session.ended_at);
  if (before?.id !== session.id) {
    let floor = -Infinity; // what the server has of this play ends there
    if (before) floor = session.started_at;
    if (before && before.endedAt < session.started_at) {
      // Stopped meanwhile (a machine asleep, a frozen tab): it played until it stopped, not on.
      const stopped = stretch.stopped === null ? null : onServerClock(before, stretch.stopped.page);
      floor = stopped === null ? session.started_at : Math.min(session.started_at, stopped);
      if (floor > before.endedAt) addGap(stretch.item, before, floor);
    }
    // And what played unheard (from each waking, or from the play's start: the server heard
    // nothing of it yet) until this session began, on the server's clock by this report: sent at
    // `sentWall`, it arrived when the session began (the wall clock ran through any sleep, the
    // page's may not have).
    for (const span of endAwake(stretch, null)) {
      const from = session.ended_at - (sentWall - span.from.wall);
      const to = span.to === null ? session.started_at : session.ended_at - (sentWall - span.to.wall);
      const [start, stop] = [Math.max(from, floor), Math.min(to, session.started_at)];
      if (stop - start >= awakeMinMs(span)) addUpload(stretch.item, awakeId(span), start, stop);
    }
  }
  // A write holds the play up to now: nothing before it is still unheard.
  if (before?.id !== session.id || WROTE.includes(ack.action)) {
    stretch.stopped = null;
    stretch.awake = [];
  }
}

// A heartbeat this late on the wall clock: the page did not run meanwhile (the machine slept, the
// browser froze the tab), and nothing played. Its tick before is where the play stopped; the
// span the server heard nothing of is uploaded only up to there (it counted a night asleep), and
// the position does not count the stop either.
const STOPPED_AFTER_MS = 5 * HEARTBEAT_MS;

function tick(stretch) {
  const now = { page: performance.now(), wall: Date.now() };
  const last = stretch.tick;
  if (now.wall - last.wall > STOPPED_AFTER_MS) {
    stretch.stopped ??= last;
    endAwake(stretch, last, false); // a span unheard before this sleep ended there
    stretch.awake.push({ from: now, to: null });
    stretch.startedMs += Math.max(0, now.page - last.page - HEARTBEAT_MS); // the page's clock ran on
  }
  stretch.tick = now;
}

// Played while the server heard nothing of it: after the machine woke (offline, or a pause pressed
// before a heartbeat got through), and from a play's start until its first report is answered
// (offline from the start). The server's session ends where the play stopped (the sleep), so each
// such span (`stretch.awake`, {from, to} on the page's clocks) is uploaded on its own, once, once
// the session before it is closed. One shorter than this is the seconds a woken machine takes to
// connect again (or a report's way there and back): a session of them would only split the history.
const AWAKE_MIN_MS = STOPPED_AFTER_MS;
// The span from a play's start that no report of it reached (offline from the start) is the play
// itself: it is uploaded from the server's own minimum (`SESSIONHUB_LISTENING_MIN_SESSION_MS`, 1 s
// by default; the server drops shorter ones as taps). Held to the waking's 10 s, an 8 s listen
// played offline and paused was lost, though the page said its pause would be sent (audit
// "journeys3").
const PLAY_START_MIN_MS = 1000;

/** The least a span played unheard must last to be uploaded. */
function awakeMinMs(span) {
  return span.fromStart ? PLAY_START_MIN_MS : AWAKE_MIN_MS;
}

/** The spans awake, the open one ended at `at` ({page, wall}; null: left open): taken out of the
 * stretch unless `take` is false. */
function endAwake(stretch, at, take = true) {
  const open = stretch.awake.at(-1);
  if (open && open.to === null && at !== null) open.to = at;
  if (!take) return [];
  const spans = stretch.awake;
  stretch.awake = [];
  return spans;
}

/** An upload's client id for a span awake: the same at every resend (this device, its waking). */
function awakeId(span) {
  return `awake-${deviceId()}-${span.from.wall}`;
}

/** The spans awake uploaded on the wall clock (`sent_at` puts them on the server's): each
 * upload's first send, settled once answered or found unsent. */
function uploadAwake(item, spans) {
  return spans
    .filter((span) => span.to.wall - span.from.wall >= awakeMinMs(span))
    .map((span) => addUpload(item, awakeId(span), span.from.wall, span.to.wall, true));
}

/** The span from `heard`'s end to `endedAt` (server clock), played while the server heard
 * nothing, is uploaded once (the client id is the session's that ended before it). */
function addGap(item, heardBefore, endedAt) {
  addUpload(item, `gap-${heardBefore.id}`, heardBefore.endedAt, endedAt);
}

/** Upload `item` played from `startedAt` to `endedAt` (the server's clock, or this page's wall
 * clock when `onWallClock`), once, sent again until answered; returns its first send. */
function addUpload(item, clientId, startedAt, endedAt, onWallClock = false) {
  if (endedAt <= startedAt) return Promise.resolve();
  gaps.set(clientId, {
    item_id: item.item_id,
    device_id: deviceId(),
    client_id: clientId,
    started_at: Math.round(startedAt),
    ended_at: Math.round(endedAt),
    item: { title: item.title, artist: item.artist, album: item.album, duration_s: item.duration_s },
    onWallClock,
  });
  keep();
  return uploadGap(clientId);
}

/** A moment of this page (its clock) on the server's, by the last ack that wrote. */
function onServerClock(heardBefore, pageMs) {
  const anchor = heardBefore?.anchor;
  return anchor ? Math.round(anchor.serverMs + (pageMs - anchor.pageMs)) : null;
}

/** A pause sent late was answered `none`: the silence sweep ended the session at its last
 * report and, shorter than the minimum then, deleted it (offline from the start). What was
 * played until the press is uploaded instead, placed on the server's clock by the last write. */
function uploadUntilPress(item, heardBefore, pressedAt) {
  const pressed = onServerClock(heardBefore, pressedAt);
  if (pressed !== null && pressed > heardBefore.endedAt) addGap(item, heardBefore, pressed);
}

// The uploads under way, by client id: one asked for again meanwhile (a return's own upload, then
// the round of all that wait) is that send, not a second one (answered `duplicate`).
const sending = new Map(); // client_id -> its send

/** Send the upload `clientId` waits with, once at a time; resolves once it is over. */
function uploadGap(clientId) {
  const under = sending.get(clientId);
  if (under) return under;
  const sent = sendUpload(clientId).finally(() => sending.delete(clientId));
  sending.set(clientId, sent);
  return sent;
}

async function sendUpload(clientId) {
  const body = gaps.get(clientId);
  if (!body || !socket?.connected || !historyId || !mine()) return;
  const { onWallClock, ...upload } = body;
  // The wall clock as it sends: the server moves the times by its own less this.
  if (onWallClock) upload.sent_at = Math.max(Date.now(), upload.ended_at);
  try {
    const ack = await call(socket, "listening_upload", { session_id: historyId, ...upload });
    gaps.delete(clientId);
    keep();
    rows.get(body.item_id).row.dataset.offlineUpload = ack.action;
  } catch (err) {
    if (!unheard(err)) {
      gaps.delete(clientId); // refused (a conflict): sending it again changes nothing
      keep();
    }
  }
}

/** Once the connection is back: the pauses and stops owed, then the item playing now, then the
 * spans played offline that wait for an answer. */
function reportOwed() {
  if (!mine()) return; // another identity now: what this page owes waits for a page of its own
  for (const { item, status, press, heardBefore, awake } of [...owed.values()]) {
    owed.delete(item.item_id);
    if (Date.now() - press.wall < OWED_FOR_MS) send(item, status, press, heardBefore, null, awake);
  }
  keep(); // sent: one not heard again is owed again (kept again)
  if (current) reportPlaying(current);
  for (const clientId of [...gaps.keys()]) uploadGap(clientId);
}

/** The play under way, reported once the connection is back. One that no report got through of
 * yet (played offline from its start) first uploads what it played, then reports: the report takes
 * that uploaded session up again (`resumed`, as after a pause), one play on the history. Reported
 * first, it began a session of its own and the minutes played offline were uploaded beside it: two
 * entries for one play. Its heartbeats wait meanwhile (one would begin that session of its own). */
async function reportPlaying(stretch) {
  const [open] = stretch.awake;
  if (stretch.heard === null && stretch.awake.length === 1 && open.fromStart && open.to === null) {
    stretch.uploading = true;
    try {
      const span = { ...open, to: { page: performance.now(), wall: Date.now() } };
      await Promise.all(uploadAwake(stretch.item, [span]));
      // Answered (stored, a duplicate, or refused): the server has it, and the span is done. Not
      // answered (the connection went again): it stays open, uploaded up to the next return under
      // the same id. Taken out at once, the minutes played until that return were lost (audit
      // "verify41").
      if (!gaps.has(awakeId(span)) && stretch.awake[0] === open) stretch.awake.shift();
    } finally {
      stretch.uploading = false;
    }
  }
  if (current === stretch) send(stretch.item, "playing");
}

async function play(item) {
  changed(item);
  // Heard to its end: played again from the start (as a place read from the server is).
  if ((positions.get(item.item_id) ?? 0) >= item.duration_s - 1) positions.set(item.item_id, 0);
  // Played again while connected: the session goes on, and a pause still owed would end this
  // play (what it owes to upload goes now). Offline, the pause goes first once back, then this
  // play's report: it ended the play before (and the spans it owes are not lost).
  const prior = owed.get(item.item_id);
  if (prior && socket?.connected) {
    owed.delete(item.item_id);
    keep();
    uploadAwake(item, prior.awake);
  }
  TABS?.postMessage({ type: "playing", item_id: item.item_id });
  if (current && current.item !== item) {
    const other = current;
    tick(other); // a sleep not seen yet (the press came before a heartbeat after waking)
    // The server closes the other item's session itself when this one starts.
    settle(other.item, "paused");
    stopTone();
    // Unless it stopped (asleep) and was not heard since, or the server is not hearing it now:
    // then it ended at the stop or now, not when this play's report arrives (the night or the time
    // offline is not the other item's), and what played unheard is its own. Sent before this
    // play's report, on the same connection (owed, offline: sent first once it is back).
    if (other.stopped !== null || other.heard === null || !socket?.connected) {
      const awake = endAwake(other, { page: performance.now(), wall: Date.now() });
      send(other.item, "paused", null, other.heard, other.stopped, awake);
    }
  }
  current = {
    item,
    startedMs: performance.now(),
    heard: null,
    tick: { page: performance.now(), wall: Date.now() },
    stopped: null, // {page, wall} of the last heartbeat before the page stopped
    uploading: false, // back online, what it played offline from its start is being uploaded
    // The spans played unheard ({from, to}: {page, wall}; to null: on): from the start until the
    // first report is answered, then from each waking.
    awake: [{ from: { page: performance.now(), wall: Date.now() }, to: null, fromStart: true }],
  };
  startTone(item.hz);
  render();
  clearInterval(heartbeat);
  // Each heartbeat says how reporting goes: one that gets through after an offline spell takes
  // the failure away (it stayed on screen while play was reported again).
  heartbeat = setInterval(() => {
    const stretch = current;
    if (stretch) tick(stretch);
    if (stretch && position(stretch.item) >= stretch.item.duration_s) {
      // At its end the item stops, as a player's does: a 4-minute song went on "playing" for
      // ever, and its history with it (audit "playerhonest").
      positions.set(stretch.item.item_id, stretch.item.duration_s - (performance.now() - stretch.startedMs) / 1000);
      halt(stretch.item, "stopped");
      return;
    }
    const sentWall = Date.now();
    stretch &&
      !stretch.uploading &&
      report(stretch.item, "playing", null, null, stretch).then(
        (ack) => {
          notice("");
          heard(stretch, ack, sentWall);
        },
        (err) => {
          reportFailed(stretch, err);
          notice(`Report failed: ${err.message}`);
        },
      );
  }, HEARTBEAT_MS);
  await send(item, "playing");
}

async function halt(item, status) {
  if (current?.item === item) tick(current); // a sleep not seen yet (pressed on waking)
  const heardBefore = current?.item === item ? current.heard : null;
  // Stopped before the press (asleep, frozen) and not heard since: the play ended there, and a
  // pause sent late says so (the night asleep was not listened to).
  const stoppedAt = current?.item === item ? current.stopped : null;
  const awake = current?.item === item ? endAwake(current, { page: performance.now(), wall: Date.now() }) : [];
  if (current?.item === item) {
    settle(item, status);
    current = null;
    clearInterval(heartbeat);
    stopTone();
  } else {
    settle(item, status);
  }
  render();
  await send(item, status, null, heardBefore, stoppedAt, awake);
}

/** `owedPress` ({page, wall}: when it was pressed) and `heardBefore` (what the server last
 * acknowledged of this play): a pause or stop owed since then, sent now. `stoppedAt`: the play
 * stopped there (asleep) and was not heard since, so the pause ends it there; `awake`: the
 * spans played since waking, uploaded once it is answered. */
async function send(item, status, owedPress = null, heardBefore = null, stoppedAt = null, awake = []) {
  const press = owedPress ?? stoppedAt ?? { page: performance.now(), wall: Date.now() };
  const late = owedPress ?? stoppedAt;
  const stretch = current;
  const ends = status !== "playing";
  const sentWall = Date.now();
  if (ends) unanswered.set(item.item_id, (unanswered.get(item.item_id) ?? 0) + 1);
  try {
    const playing = status === "playing" && stretch?.item === item ? stretch : null;
    const ack = await report(item, status, late && Date.now() - late.wall, press, playing);
    notice("");
    const row = rows.get(item.item_id).row;
    row.dataset.lastAction = ack.action;
    if (status === "playing" && stretch?.item === item) heard(stretch, ack, sentWall);
    if (late && ack.action === "none") uploadUntilPress(item, heardBefore, late.page);
    if (status !== "playing") uploadAwake(item, awake);
  } catch (err) {
    if (status !== "playing" && unheard(err) && current?.item !== item) {
      // A stop after a pause owed: the play ended at the pause, whose spans are still to upload.
      const prior = owed.get(item.item_id);
      const entry = { item, status, press, heardBefore, awake };
      owed.set(item.item_id, prior ? { ...prior, status, awake: [...prior.awake, ...awake] } : entry);
      keep();
      notice(`${err.message} The ${status === "paused" ? "pause" : "stop"} is sent once the connection is back.`);
      return;
    }
    if (status === "playing" && stretch?.item === item) reportFailed(stretch, err);
    notice(`Report failed: ${err.message}`);
  } finally {
    if (ends) {
      unanswered.set(item.item_id, unanswered.get(item.item_id) - 1);
      changed(item); // a read under way may have been answered before the server had it
    }
  }
}

function button(label, className, item, onClick) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = `button ${className}`;
  el.textContent = label;
  // Every row has its Play, Pause and Stop: a screen reader names the item too ("Play The Quiet
  // Hour"), the visible word first, so that a voice command "click Play" still finds it.
  el.setAttribute("aria-label", `${label} ${item.title}`);
  el.addEventListener("click", onClick);
  return el;
}

function build() {
  for (const item of ITEMS) {
    const row = document.createElement("li");
    row.className = "player-item";
    row.dataset.itemId = item.item_id;
    const text = document.createElement("div");
    const title = document.createElement("strong");
    title.textContent = item.title;
    const artist = document.createElement("span");
    artist.className = "muted";
    artist.textContent = ` ${item.artist}`;
    const at = document.createElement("span");
    at.className = "position muted";
    text.append(title, artist, at);
    const controls = document.createElement("div");
    controls.className = "player-controls";
    controls.append(
      button("Play", "play primary", item, () => play(item)),
      button("Pause", "pause", item, () => halt(item, "paused")),
      button("Stop", "stop", item, () => halt(item, "stopped")),
    );
    row.append(text, controls);
    ui.items.append(row);
    rows.set(item.item_id, { row, state: "idle" });
  }
  render();
}

async function main() {
  build();
  try {
    takeBack();
  } catch {
    // What the browser kept could not be read: the page works without it.
  }
  for (const el of ui.items.querySelectorAll("button")) el.disabled = true;
  // Asked at once, with the connection; its buttons wait for it (see "connect" below).
  const adopted = adoptDeviceId();
  socket = connect({ onState: (state) => showConnection(ui.connection, state) });
  // Offline, the play's reports go unheard (the first report back may say it continues).
  socket.on("disconnect", () => {
    if (current) current.missed = true;
  });
  socket.on("connect", async () => {
    try {
      historyId = (await call(socket, "listening_history", {})).session_id;
      await adopted; // the device id the first report carries
      document.body.dataset.historyId = historyId;
      showConnection(ui.connection, "live");
      render();
      reportOwed();
      readPositions();
    } catch (err) {
      notice(`Cannot open your history: ${err.message}`);
    }
  });
  if (TABS) TABS.onmessage = (event) => event.data?.type === "playing" && yieldToAnotherTab();
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && historyId) readPositions();
  });
  // A closed tab stops reporting; the server's sweeper ends its session at the last report. A tab
  // closed offline (or asleep since, unheard) owes its pause: kept for the next page.
  window.addEventListener("pagehide", () => {
    if (!current) return;
    tick(current);
    if (socket?.connected && current.stopped === null) {
      report(current.item, "paused").catch(() => {});
      return;
    }
    const now = { page: performance.now(), wall: Date.now() };
    const { item, heard: heardBefore, stopped } = current;
    const awake = endAwake(current, now);
    settle(item, "paused"); // its position, kept with the pause
    if (!owed.has(item.item_id))
      owed.set(item.item_id, { item, status: "paused", press: stopped ?? now, heardBefore, awake });
    keep();
  });
}

main();
