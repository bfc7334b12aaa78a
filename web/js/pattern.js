/**
 * The pattern editor (seeds 001/004): `/s/<id>` loads a session, `/patterns` creates one.
 *
 * The page keeps the server's state (`confirmed`: the snapshot plus every logged operation, in
 * log order) and shows it with the player's own operations that the log has not yet confirmed
 * on top. Edits go out live as operations; while the connection is down they wait, and an
 * auto-save PUTs them with If-Match, merging over the current state when the server answers
 * 412, so an offline edit never erases a live one. Server data reaches the DOM through
 * textContent, value and dataset only.
 */
import {
  $,
  bdi,
  call,
  connect,
  getToken,
  knownIdentity,
  showConnection,
  subscribeSession,
  whileBusy,
} from "./client.js";
import { reconcile, setText } from "./keyed.js";
import { answersForGood, createKey, UNCONFIRMED_CREATE } from "./create_keys.js";
import { OrphanBanner } from "./orphan_banner.js";
import { Player } from "./pattern_audio.js";
import { HELD_MAX, HeldOps, MadeOrder } from "./pattern_held.js";
import { PatternNews, opNews, stateNews } from "./pattern_news.js";
import { freshId } from "./ids.js";
import { STEP_COUNTS, applyOp, clone, newTrack } from "./pattern_state.js";
import { BYTES_PER_CHARACTER, characters, fitted } from "./text_fit.js";

const SAVE_DEBOUNCE_MS = 2000;
const HEARTBEAT_MS = 10_000;
const CURSOR_MS = 120;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TOAST_KEY = "sessionhub.pattern.toast";
// Edits the server has not confirmed when the page goes (reload, closed tab, a phone discarding
// the tab) are kept here per session, and made again by the next load of that session.
const UNSAVED_PREFIX = "sessionhub.pattern.unsaved.";
const COLOURS = ["#e03131", "#2b9348", "#1e6fd9", "#f08c00", "#9c36b5", "#0c8599", "#c2255c", "#5c940d"];
const SAMPLE_NAMES = {
  kick: "Kick",
  snare: "Snare",
  hihat: "Hi-hat",
  clap: "Clap",
  "synth:bass": "Bass",
  "synth:lead": "Lead",
  "synth:pad": "Pad",
  "synth:pluck": "Pluck",
  "tone:fm-bass": "FM bass",
  "tone:fm-epiano": "FM e-piano",
  "tone:fm-bell": "FM bell",
};

let sessionId = null;
let meta = null; // the session's GET body, minus state
let confirmed = null; // {state, name}: the server's, as of `position`
let position = null; // {epoch, offset} of `confirmed`
let pending = []; // [{seq, op, acked}]: sent live, not yet seen in the log
let offline = []; // ops made while not live, waiting for the connection or the auto-save
let deleted = false; // the session was deleted while this page had it (showDeleted)
const made = new MadeOrder(); // every op's place in the order the person made them
const held = new HeldOps(made); // refused rate_limited, and those made after: sent at the server's pace
let heldUntil = 0; // Date.now() before which no held op goes
let releasing = false; // the held ops are being sent, one at a time
let heldSaid = false; // the person was told their edits go at the server's pace
let seq = 0;
let live = false;
let socket = null;
let readOnly = false;
let saveTimer = null;
let saving = false;
// Auto-saves sent whose answers never came ({key, ifMatch, state, ops}: `ops` the edits of
// `offline` each saved): they may have been applied. Each is sent again, as it was, before
// anything else (this tab's, and those of tabs gone whose edits this one took over).
let lostSaves = [];
let players = new Map();
let cursorTimer = null;
let cursorNext;
const me = { name: "", colour: "", user: "" }; // user: the token's subject, "" without one
const player = new Player(() => view()?.state, showPlayhead);
const news = new PatternNews($("pattern-news"));
// Every socket id this page has had (one a connection): an op or a presence of one of them is this
// page's own, a replay after a reconnection included, and no news.
const ownClients = new Set();
let replacedUser = null; // the user whose player just left `replaced`: its join next is no news
const orphanBanner = new OrphanBanner();

// --- the document --------------------------------------------------------------------------

function view() {
  if (!confirmed) return null;
  const doc = clone(confirmed);
  for (const op of unconfirmed()) applyOp(doc, op);
  return doc;
}

/** This page's ops the log has not confirmed, in the order the person made them. */
function unconfirmed() {
  return made.sorted([...pending.map((item) => item.op), ...held.ops, ...offline]);
}

function etag() {
  return position ? `"${position.epoch}:${position.offset}"` : null;
}

function edit(op) {
  if (readOnly || !confirmed) return;
  orphanBanner.edited(); // editing makes it active again
  made.of(op);
  if (held.length || releasing) {
    hold(op); // after the edits that wait for the server's rate
  } else if (live && offline.length === 0) {
    send(op);
  } else {
    offline.push(op);
    scheduleSave();
  }
  render();
}

// An op is named by this page's client_id (kept for the page's life) and its seq. One sent again
// after its answer was lost (a dropped or stalled connection) keeps its seq, so the server answers
// it `duplicate` when its first try was applied, instead of applying it again: a track added again
// was refused `conflict`, one deleted again `not_found`, an error shown for an edit that was made.
const CLIENT_ID = freshId();
const sentAs = new WeakMap(); // op -> the seq it was first sent with

// An edit of a watcher (the session full: its present players edit), in the page's words.
const FULL_REFUSED = "Not changed: this session is full, so you can watch and listen until a place frees.";

/** Send `op` live; resolves once its answer is dealt with. */
function send(op) {
  const item = { seq: sentAs.get(op) ?? ++seq, op, acked: false };
  sentAs.set(op, item.seq);
  pending.push(item);
  return call(socket, "pattern_op", { session_id: sessionId, client_id: CLIENT_ID, seq: item.seq, op }).then(
    (ack) => {
      item.acked = true;
      if (held.precede(op)) hold(op); // made again after the held op it depends on
      if (!ack.duplicate) return;
      // Applied at its first try: the log (the snapshot caught up on) holds it, and it is not
      // logged again, so no event of it comes to take it off the pending.
      pending = pending.filter((p) => p !== item);
      render();
    },
    (err) => {
      pending = pending.filter((p) => p !== item);
      if (err.code === "rate_limited") hold(op, err.details?.retry_after_s ?? 1);
      // Its track is one a held op adds: made again after it, no refusal to speak of.
      else if (err.code === "not_found" && held.precede(op)) hold(op);
      else if (err.code === "disconnected" || err.code === "timeout") {
        offline.push(op);
        if (err.code === "timeout") stalled();
      } else if (err.code === "session_full") toast(FULL_REFUSED);
      else if (!nameRefused(op, err)) toast(err.message || "That change was refused.");
      render();
    },
  );
}

/**
 * An edit unanswered for the ack timeout on a connection that says it is up: it stalled (a frozen
 * network keeps the socket open and lets nothing through). The page said "Live" for 45 s, until
 * the socket's ping timeout, while the person's taps reached nobody and nothing saved them (audit
 * "patternfield"). It is taken as offline now: the edits are saved over HTTP, and the connection
 * is made again (its subscription resumes, and what is kept is sent once it is live).
 */
function stalled() {
  if (!live) return;
  live = false;
  scheduleSave();
  // As a dropped transport: the badge says offline, the manager connects again.
  if (socket?.io?.engine) socket.io.engine.close();
  else showConnection($("connection"), "offline");
}

// --- edits past the server's rate ----------------------------------------------------------

/**
 * Hold `op` until the server's rate lets it in (`waitS` from now at least), then send it again
 * as a new op: a rate_limited op was not applied, and its first seq, below those of the ops
 * applied after it, would be answered `duplicate`. The person is told once, calmly.
 */
function hold(op, waitS = 0) {
  sentAs.delete(op);
  held.add(op, [...pending.map((item) => item.op), ...offline]);
  heldUntil = Math.max(heldUntil, Date.now() + waitS * 1000);
  if (!heldSaid) toast("Lots of changes at once: they are being sent at the pace the server takes them.");
  heldSaid = true;
  // Past the bound, one save of the whole state carries them all instead.
  if (held.length > HELD_MAX) park();
  else releaseHeld();
}

/**
 * Send the held ops, each once the one before was answered: sent together, all but one would be
 * refused again (and refusals in numbers end the connection as a flood).
 */
async function releaseHeld() {
  if (releasing) return;
  releasing = true;
  try {
    while (held.length) {
      const waitMs = heldUntil - Date.now();
      if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
      else if (live) await send(held.shift());
      else park();
    }
  } finally {
    releasing = false;
    heldSaid = false;
    render();
  }
}

/** The held ops go with the offline ones: by the auto-save, or live when the connection is back. */
function park() {
  offline = made.sorted([...offline, ...held.drain()]);
  scheduleSave();
}

function onLogEvent(event) {
  position = { epoch: event.epoch, offset: event.offset };
  const data = event.data ?? {};
  switch (event.type) {
    case "pattern_op":
      if (!mine(data.client)) tellOthers(opNews(playerName(data.client), data.op, confirmed.state));
      applyOp(confirmed, data.op, data);
      if (socket && data.client === socket.id) pending = pending.filter((p) => p.seq !== data.seq);
      break;
    case "pattern_state": {
      // Diffed as the page shows it: this page's own edits, in its view before and after, are no news.
      const before = view();
      if (data.state) confirmed.state = data.state;
      if ("name" in data) confirmed.name = data.name;
      if (!me.user || data.by !== me.user) tellOthers(stateNews(userName(data.by), before, view()));
      break;
    }
    case "pattern_meta":
      meta.remixCount = data.remixCount;
      break;
    case "pattern_presence":
      onPresence(data);
      break;
    case "pattern_deleted":
    case "session_deleted": // an operator deleted it (DELETE /admin/sessions/<id>, an orphan sweep)
      showDeleted();
      return;
    default:
      return;
  }
  render();
}

function onSnapshot(session, snapshot) {
  confirmed = { state: session.state, name: session.name };
  position = { epoch: snapshot.epoch, offset: snapshot.offset };
  meta = { ...meta, remixCount: session.remixCount, immutable: session.immutable };
  pending = pending.filter((p) => !p.acked); // the snapshot holds the acknowledged ones
  players = new Map((snapshot.players ?? []).map((p) => [p.id, p]));
  render();
}

// --- auto-save: only for edits made while not live ---------------------------------------

function scheduleSave() {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(save, SAVE_DEBOUNCE_MS);
}

async function save() {
  if (saving || (offline.length === 0 && !lostSaves.length) || readOnly) return;
  saving = true;
  try {
    while (lostSaves.length) {
      if (!(await settleLostSave(lostSaves[0]))) {
        toast(KEPT_OFFLINE);
        return;
      }
    }
    for (let attempt = 0; attempt < 3 && offline.length; attempt += 1) {
      const sent = offline.slice();
      const doc = clone(confirmed);
      // Over another player's newer state an edit may no longer apply (its track deleted, or a
      // track added past the 16): it is dropped, and the player is told rather than left to
      // find it gone.
      const dropped = sent.filter((op) => !applyOp(doc, op) && !alreadyMade(doc.state, op)).length;
      const ifMatch = etag();
      const key = freshId();
      const answer = await putState(doc.state, ifMatch, key);
      if (answer.status === 200) {
        confirmed.state = doc.state;
        position = parseEtag(answer.headers.get("ETag")) ?? position;
        offline = offline.slice(sent.length);
        if (dropped) toast(`${plural(dropped, "change")} made offline could not be kept: ${UNKEPT}`);
      } else if (answer.status === 404) {
        showDeleted(); // deleted meanwhile: these edits can be kept with the rest of it
        return;
      } else if (answer.status === 412) {
        // Someone edited meanwhile: take their state and put our edits on top of it.
        confirmed = { state: answer.body.session.state, name: answer.body.session.name };
        position = parseEtag(answer.body.etag) ?? position;
        continue;
      } else if (answer.status === 0) {
        lostSaves.push({ key, ifMatch, state: doc.state, ops: sent });
        toast(KEPT_OFFLINE);
      } else {
        toast(answer.body?.message ?? answer.body?.error ?? "Could not save.");
      }
      break;
    }
  } finally {
    saving = false;
    render();
    if (offline.length && live && !lostSaves.length) flushOffline();
  }
}

function putState(state, ifMatch, key) {
  return request(`/api/sessions/${sessionId}`, "PUT", { state }, { "If-Match": ifMatch, "Idempotency-Key": key });
}

/**
 * Send the save whose answer was lost again, as it was (its key, its If-Match, its state): a
 * `200` says it is applied (the first time, replayed, or now), and its edits are saved; another
 * answer (`412`: another player's change came first, and it was not applied) leaves them to be
 * saved over the current state as ever. Sent as new edits instead, those it had applied were
 * applied twice, the second time over another player's newer change (audit lostcreates). False
 * while there is still no answer.
 */
async function settleLostSave(lost) {
  const answer = await putState(lost.state, lost.ifMatch, lost.key);
  if (answer.status === 0) return false;
  lostSaves = lostSaves.filter((other) => other !== lost);
  if (answer.status === 200) {
    offline = offline.filter((op) => !lost.ops.includes(op));
    // Replayed, it was applied when sent: what came since (other players' changes) stands in
    // `confirmed` already, or comes with the next snapshot. Applied now, it is the state.
    if (answer.headers.get("Idempotent-Replayed") !== "true") {
      confirmed.state = lost.state;
      position = parseEtag(answer.headers.get("ETag")) ?? position;
    }
  }
  return true;
}

/** Whether `op`, which did not apply to `state`, is there already: a track it deletes is gone, one
 * it adds is in (this page's own op, applied before its answer was lost, is made again). */
function alreadyMade(state, op) {
  if (op.type === "delete_track") return !state.tracks.some((t) => t.id === op.trackId);
  if (op.type === "add_track") return state.tracks.some((t) => t.id === op.track.id);
  return false;
}

// Unreachable, the page keeps its edits (`offline`; in localStorage if it goes meanwhile) and
// sends them once the connection is back (flushOffline as it subscribes again). Said so: "The
// server cannot be reached." alone read as if they were lost.
const KEPT_OFFLINE = "Offline: your changes are kept on this page and will be sent when the connection is back.";

const UNKEPT = "another player deleted its track meanwhile, or the pattern already holds 16 tracks.";

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function flushOffline() {
  if (saving) return;
  if (lostSaves.length) {
    save(); // the saves whose answers were lost first: their edits may be applied already
    return;
  }
  const ops = offline;
  offline = [];
  for (const op of ops) {
    if (held.length || releasing) hold(op);
    else send(op);
  }
}

function parseEtag(tag) {
  const match = /^"?(.*):(\d+)"?$/.exec(tag ?? "");
  return match ? { epoch: match[1], offset: Number(match[2]) } : null;
}

// --- edits that outlive the page ----------------------------------------------------------

let typing = null; // the field typed in since its last `change`: its text is not an edit yet

/** A field being typed in (its `change` comes only on Enter or blur): commit its text now. */
function commitTyping() {
  const field = typing;
  typing = null;
  if (field?.isConnected) field.dispatchEvent(new Event("change", { bubbles: true }));
}

// This page's entry among the unsaved edits of its session: each tab of one session keeps its own,
// so that a tab coming back into view takes back only its own, never a hidden tab's.
const TAB_ID = globalThis.crypto?.randomUUID?.() ?? `${Date.now()}-${Math.random()}`;

/** The unsaved edits kept for this session: tab id -> {ops, at}. */
function readUnsaved() {
  try {
    const kept = JSON.parse(localStorage.getItem(UNSAVED_PREFIX + sessionId) ?? "null");
    return kept && typeof kept === "object" && !Array.isArray(kept) ? kept : {};
  } catch {
    return {};
  }
}

function writeUnsaved(kept) {
  try {
    if (Object.keys(kept).length) localStorage.setItem(UNSAVED_PREFIX + sessionId, JSON.stringify(kept));
    else localStorage.removeItem(UNSAVED_PREFIX + sessionId);
  } catch {
    // storage refused (full, private window): the edits go only if the page really goes
  }
}

/** The page is going (or hidden, and may be discarded): keep what the server has not confirmed. */
function stashUnsaved() {
  if (!sessionId || readOnly || !confirmed || deleted) return;
  commitTyping();
  const ops = unconfirmed();
  const kept = readUnsaved();
  // A save whose answer was lost goes with them, to be sent again as it was by the page that
  // takes them over (settleLostSave): made again as new edits, those it applied were applied
  // twice, over another player's newer change (audit verify42).
  const lost = lostSaves.map(({ key, ifMatch, state, ops: saved }) => ({ key, ifMatch, state, ops: saved }));
  if (ops.length) kept[TAB_ID] = { ops, at: Date.now(), ...(lost.length ? { lost } : {}) };
  else delete kept[TAB_ID];
  writeUnsaved(kept);
}

/** Back in view: this page holds its edits itself again (another tab's stay kept). */
function unstash() {
  if (!sessionId) return;
  const kept = readUnsaved();
  if (!(TAB_ID in kept)) return;
  delete kept[TAB_ID];
  writeUnsaved(kept);
}

/**
 * The edits pages of this session left unconfirmed (gone, or hidden and maybe discarded): this
 * page takes them over. Those that still change something (an op the server did apply before the
 * page went changes nothing now) wait to be sent.
 */
function adoptUnsaved() {
  const kept = readUnsaved();
  writeUnsaved({});
  if (readOnly) return;
  const doc = clone(confirmed);
  for (const entry of Object.values(kept)) {
    let ops = Array.isArray(entry?.ops) ? entry.ops : [];
    for (const lost of Array.isArray(entry?.lost) ? entry.lost : []) {
      if (typeof lost?.key !== "string" || !Array.isArray(lost.ops)) continue;
      // Its save sent again first, as it was: its edits wait for that answer (applied: dropped).
      // Every tab's: one taken over as new edits was applied twice (audit verify42b).
      const saved = lost.ops.filter((op) => op && typeof op === "object");
      lostSaves.push({ key: lost.key, ifMatch: lost.ifMatch, state: lost.state, ops: saved });
      for (const op of saved) made.of(op);
      offline.push(...saved);
      ops = withoutThose(ops, saved);
    }
    for (const op of ops) {
      const before = JSON.stringify(doc);
      if (op && typeof op === "object" && applyOp(doc, op) && JSON.stringify(doc) !== before) {
        made.of(op);
        offline.push(op);
      }
    }
  }
  if (offline.length) scheduleSave();
}

/** `ops` without one of each of `those` (told apart by their JSON). */
function withoutThose(ops, those) {
  const left = new Map();
  for (const op of those) left.set(JSON.stringify(op), (left.get(JSON.stringify(op)) ?? 0) + 1);
  return ops.filter((op) => {
    const key = JSON.stringify(op);
    const count = left.get(key) ?? 0;
    if (count > 0) left.set(key, count - 1);
    return count === 0;
  });
}

function watchLeaving() {
  const editor = $("editor");
  editor.addEventListener("input", (event) => {
    if (event.target instanceof HTMLInputElement && event.target.type !== "range") typing = event.target;
  });
  editor.addEventListener("change", (event) => {
    if (event.target === typing) typing = null;
  });
  addEventListener("pagehide", stashUnsaved);
  document.addEventListener("visibilitychange", () => {
    // Hidden, a phone may discard the tab without a pagehide; back in view, the page keeps them itself.
    if (document.visibilityState === "hidden") stashUnsaved();
    else unstash();
  });
}

// --- presence -----------------------------------------------------------------------------

function onPresence(data) {
  if (data.action === "join") {
    const { id, name, user } = data.player;
    // A player present already (another connection of theirs), or whose old connection's leave
    // is still gathered (back within the gathering), is no news: a co-editor whose connection
    // dropped and came back was told as "joined, changed 1 step and left" (audit "retries3").
    const back = !players.has(id) && !ownClients.has(id) && user !== replacedUser && !(me.user && user === me.user);
    if (back && !news.takeBack(user, "left") && !presentAs(user, id)) news.add([{ who: name, kind: "joined", user }]);
    replacedUser = null;
    players.set(id, data.player);
  } else if (data.action === "leave") {
    const gone = players.get(data.player_id);
    // A player coming back on a new connection replaces its old entry: neither is news.
    if (data.reason === "replaced") replacedUser = gone?.user ?? null;
    else if (gone && !mine(data.player_id) && !presentAs(gone.user, data.player_id)) {
      if (!news.takeBack(gone.user, "joined")) news.add([{ who: gone.name, kind: "left", user: gone.user }]);
    }
    players.delete(data.player_id);
  } else if (data.action === "cursor" && players.has(data.player_id)) players.get(data.player_id).cursor = data.cursor;
}

/**
 * Whether connection `clientId` is this person's: this page's, or another tab or device of theirs
 * (the same user). Their own other tab was told to them as another player ("Player 760 joined",
 * "Player 760 set the tempo…" of their own edits: audit "patternphone").
 */
function mine(clientId) {
  return ownClients.has(clientId) || Boolean(me.user && players.get(clientId)?.user === me.user);
}

/** Whether `user` is present on a connection other than `clientId` (not this page's own). */
function presentAs(user, clientId) {
  for (const [id, player] of players) if (id !== clientId && player.user === user && !ownClients.has(id)) return true;
  return false;
}

function playerName(clientId) {
  return players.get(clientId)?.name || "Another player";
}

/** The name of a player present as `userId` (an HTTP save names its user, not its connection). */
function userName(userId) {
  const theirs = [...players.values()].find((p) => p.user === userId && !ownClients.has(p.id));
  return theirs?.name || "Another player";
}

/**
 * Other players' changes, told (pattern_news.js). One removing the track that holds this person's
 * focus is said at once: the focus goes on to the next track (handRowFocusOn), and without a word
 * the person found themselves elsewhere. A track name being typed there is said by its toast.
 */
function tellOthers(items) {
  const active = document.activeElement;
  const focused = active?.closest?.(".track-row")?.dataset.track;
  const gathered = items.filter((item) => {
    if (item.kind !== "removed" || item.trackId !== focused) return true;
    if (!editing(active)) news.now(`${item.who} removed track ${item.name}, where your focus was.`);
    return false;
  });
  news.add(gathered);
}

// Our player id (socket id) when we last joined, kept for this tab across reloads: a reload
// whose old connection went silent (not closed) is that player coming back (`replaces`), not
// an eleventh one refused while its own ghost holds the place.
const JOINED_KEY = () => `sessionhub.pattern.player.${sessionId}`;
let joinedAs = null;
let fullSaid = false; // "this session is full" said, and no place had freed since
let placesSaid = false; // "you play here from N tabs or devices already" said, and none left since

async function join() {
  joinedAs ??= sessionStorage.getItem(JOINED_KEY());
  const payload = { session_id: sessionId, name: me.name, colour: me.colour };
  if (joinedAs && joinedAs !== socket.id) payload.replaces = joinedAs; // a reconnect: drop the old us
  try {
    const ack = await call(socket, "pattern_join", payload);
    joinedAs = ack.player_id;
    sessionStorage.setItem(JOINED_KEY(), joinedAs);
    if (fullSaid || placesSaid) toast("A place freed: you are playing now.");
    fullSaid = false;
    placesSaid = false;
    $("full-banner").hidden = true;
  } catch (err) {
    // A watcher asks again at each heartbeat (it is not present): said once, not every 10 s; the
    // banner stays while it watches (a toast alone was gone in 4 s, and a tap then said only the
    // server's own sentence: audit "patternphone").
    if (err.code === "session_full" && !fullSaid) {
      toast("This session is full: you can watch and listen, and you will join when a place frees.");
      fullSaid = true;
      $("full-banner").hidden = false;
    } else if (err.code === "limit_reached" && !placesSaid) {
      // This person plays here from their other tabs or devices already (the server's words say
      // how many): this page watches, and joins at a heartbeat once one of them has left.
      toast(`${capitalised(err.message)}.`);
      placesSaid = true;
    } else if (err.code === "invalid_payload" && me.name) {
      // Never an editor nobody sees listed: a name presence refused (one the server of another
      // release counts otherwise) was refused at every beat, unsaid. Joined without it, said once.
      toast("Your name could not be shown to the other players here: they see you as “Guest”.");
      me.name = "";
      join();
    }
  }
}

function moveCursor(cursor) {
  cursorNext = cursor;
  if (cursorTimer) return; // trailing send: the last position always goes out
  cursorTimer = setTimeout(() => {
    cursorTimer = null;
    if (live && cursorNext !== undefined) {
      call(socket, "pattern_cursor", { session_id: sessionId, cursor: cursorNext }).catch(() => {});
    }
    cursorNext = undefined;
  }, CURSOR_MS);
}

/**
 * The name and colour this person shows as: one per person on this browser (every tab of theirs
 * alike: each tab made its own, and the person's second tab showed as a stranger), kept per user.
 */
function identity(userId) {
  const key = userId ? `sessionhub.pattern.me.${userId}` : "sessionhub.pattern.me";
  const store = userId ? localStorage : sessionStorage;
  try {
    const stored = JSON.parse(store.getItem(key) ?? "null");
    if (stored?.name && stored?.colour) return stored;
  } catch {
    // unreadable: made again
  }
  // The person's display name (set in the identity panel) when they chose one.
  const chosen = knownIdentity()?.name;
  const made = {
    name: chosen && chosen !== "Guest" ? chosen : `Player ${Math.floor(Math.random() * 900 + 100)}`,
    colour: COLOURS[Math.floor(Math.random() * COLOURS.length)],
  };
  try {
    store.setItem(key, JSON.stringify(made));
  } catch {
    // storage refused (full, private window): this tab's own
  }
  return made;
}

/**
 * The person's display name (the token's `name` claim), or "" when they chose none: a guest's
 * token says "Guest", which would name every guest in the jam alike ("Player 417" tells them apart).
 */
async function displayName() {
  const claims = await tokenClaims();
  const name = typeof claims.name === "string" ? presenceName(claims.name) : "";
  return name === "Guest" ? "" : name;
}

// The most characters of a player's name (handlers/patterns/events.py): the account name's.
const PLAYER_NAME_MAX = 60;

/**
 * `name` as presence takes it: whole characters, at most the account name's 60 (it was cut at 40
 * UTF-16 units, half a flag kept), without what the names' text rule refuses (an account name may
 * hold "<3"; a name kept on this browser by an earlier release may be anything).
 */
function presenceName(name) {
  const plain = String(name ?? "")
    .replace(new RegExp(NAME_CONTROL.source, "g"), "")
    .replace(/</g, "‹") // look-alikes the rule takes: "Bob <3" stays recognisable as "Bob ‹3"
    .replace(/>/g, "›")
    .replace(new RegExp(NAME_SCRIPT_URL.source, "gi"), "")
    .trim();
  return fitted(plain, PLAYER_NAME_MAX).trim();
}

/** The claims of this page's token ({} without one): who this person is, as the server knows. */
async function tokenClaims() {
  try {
    const payload = (await getToken()).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))));
    return claims && typeof claims === "object" ? claims : {};
  } catch {
    return {};
  }
}

/** Up to two letters from a name: "Ada Lovelace" → "AL", "Player 417" → "P4", "bob" → "B". */
function initials(name) {
  const words = String(name || "?")
    .trim()
    .split(/\s+/)
    .filter(Boolean);
  const letters = words.length > 1 ? [words[0], words.at(-1)] : words;
  // Each word's first letter, digit or emoji (not a bracket or a quote: "‹b›x" is "B"), a whole
  // flag or family, never half of one.
  const first = (word) => characters(word).find((c) => /[\p{L}\p{N}\p{Extended_Pictographic}\p{RI}]/u.test(c));
  return (
    letters
      .map((word) => first(word) ?? characters(word)[0])
      .join("")
      .toUpperCase() || "?"
  );
}

/**
 * Each person's colour, none shared: players keep the colour they chose unless an earlier one
 * (by player id) has it, then they take the first free one; one person's connections share theirs.
 * Every page computes the same.
 */
function distinctColours(list) {
  const taken = new Set();
  const chosen = new Map();
  const people = new Map(); // user -> colour: one person's tabs and devices show as one, alike
  for (const p of [...list].sort((a, b) => String(a.id).localeCompare(String(b.id)))) {
    if (p.user && people.has(p.user)) {
      chosen.set(p.id, people.get(p.user));
      continue;
    }
    let colour = /^#[0-9a-fA-F]{6}$/.test(p.colour) ? p.colour.toLowerCase() : "";
    if (!colour || taken.has(colour)) colour = COLOURS.find((c) => !taken.has(c)) ?? (colour || "#667085");
    taken.add(colour);
    chosen.set(p.id, colour);
    if (p.user) people.set(p.user, colour);
  }
  return chosen;
}

// --- HTTP ---------------------------------------------------------------------------------

async function request(path, method = "GET", body = undefined, extra = {}) {
  const headers = { Accept: "application/json", ...extra };
  try {
    headers.Authorization = `Bearer ${await getToken()}`; // names the author; the API needs none
  } catch {
    // no token: anonymous
  }
  if (body !== undefined) headers["Content-Type"] = "application/json";
  for (const [name, value] of Object.entries(headers)) if (value === null) delete headers[name];
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    return { status: 0, body: { error: "The server cannot be reached." }, headers: new Headers() };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { status: response.status, body: data, headers: response.headers };
}

// A create whose answer is lost (the network dropped, the server restarted) is sent again with
// the same Idempotency-Key, so the retry gets the first copy instead of making a second one.
const CREATE_RETRY_MS = [500, 1500];

async function createSession(path = "/api/sessions", state = confirmed?.state, body = {}) {
  const answer = await keyedPost(path, state, body);
  if (answer.status === 201) return answer.body;
  if (answer.status === 429) toast(`Too many new sessions; try again in ${answer.body.retryAfter} s.`);
  else toast(createTrouble(answer) ?? "Something went wrong.");
  return null;
}

/**
 * POST a create (a session, a remix, a published copy) with an Idempotency-Key, sent again with
 * it while its answer is lost. The key stays with the request until it is answered
 * (web/js/create_keys.js): pressed again after the page gave up, it gets the first copy too. A
 * copy's key is the copy of the pattern as it is (its state's digest; the log position moves
 * with presence and remix counts too): pressed again after an edit, the first copy, without
 * that edit, came back and was said "Published!" (audit verify42).
 */
async function keyedPost(path, state = confirmed?.state, body = {}) {
  // A copy (a remix, a published one, a deleted pattern kept) is keyed by what it copies.
  const copies = path !== "/api/sessions" || "state" in body;
  const create = createKey("POST", path, copies ? { of: digest(JSON.stringify(state ?? null)) } : {});
  const headers = { "Idempotency-Key": create.key };
  let answer = await request(path, "POST", body, headers);
  for (const waitMs of CREATE_RETRY_MS) {
    if (!unanswered(answer) && !soonAgain(answer)) break;
    await new Promise((resolve) => setTimeout(resolve, waitMs));
    answer = await request(path, "POST", body, headers);
  }
  if (answersForGood(answer.status)) create.answered();
  return answer;
}

/** A short digest of `text` (53 bits, cyrb53): tells versions of a pattern apart in a key's name. */
function digest(text) {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ code, 2654435761);
    h2 = Math.imul(h2 ^ code, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}

/** Whether no answer came for a create: none at all, `409` while the first still runs, a proxy's
 * `502`-`504` (no body of the server's). The server's own `503` says why (a full storage was said
 * to be "no answer": audit verify42). */
function unanswered(answer) {
  if (answer.status === 503 && answer.body?.error) return false;
  return [0, 409, 502, 503, 504].includes(answer.status);
}

/** A `503` of the server's own that asks to be sent again within a second or two (Redis away for
 * a moment, a change not yet confirmed durable), not one that asks for a minute (a full storage). */
function soonAgain(answer) {
  return answer.status === 503 && Number(answer.headers.get("Retry-After") ?? 1) <= 2;
}

/** What a create not made says: the server's reason, or, no answer having come, that it may have been. */
function createTrouble(answer) {
  if (unanswered(answer)) return UNCONFIRMED_CREATE;
  return answer.body?.message ?? answer.body?.error ?? null;
}

/**
 * The person's newest session, when it is a pattern nothing was ever done in (made by an earlier
 * look at "Patterns" and left as it came): opened again rather than another empty one made. Each
 * look made one, and "My recent sessions" filled with "Untitled pattern"s. Null when there is none
 * (or no identity to ask with): a new one is made.
 */
async function untouchedPattern() {
  const mine = await request("/api/me/sessions?limit=1");
  const newest = mine.status === 200 ? mine.body?.sessions?.[0] : null;
  if (newest?.kind !== "pattern") return null;
  const found = await request(`/api/sessions/${encodeURIComponent(newest.session_id)}`);
  const session = found.status === 200 ? found.body : null;
  const untouched = session && !session.name && !session.remixedFrom && session.state?.tracks?.length === 0;
  return untouched ? { url: `/s/${newest.session_id}` } : null;
}

// --- sharing buttons ----------------------------------------------------------------------

const SETTLE_MS = 5000;

/**
 * Whether every edit of this page is in the stored session (applied: acknowledged or saved), waited
 * for up to SETTLE_MS. A copy (Remix, Send Copy, Publish) is made from the stored session over
 * HTTP, which may overtake an op still on its way over the socket: the copy lacked the last edits.
 */
async function settled() {
  if (readOnly) return true;
  commitTyping();
  if (offline.length && !live) {
    clearTimeout(saveTimer);
    save();
  }
  const unsettled = () => pending.some((p) => !p.acked) || offline.length > 0 || saving || held.length > 0 || releasing;
  if (!unsettled()) return true;
  toast("Saving your latest changes first…");
  const until = Date.now() + SETTLE_MS;
  while (unsettled()) {
    if (Date.now() > until) {
      toast("Your latest changes are not saved yet, so a copy would not have them: try again once they are.");
      return false;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    toast(`Copy this link: ${text}`);
    return false;
  }
}

async function onInvite() {
  if (!(await copy(location.href))) return;
  // A published copy is read-only: its link lets people listen and remix, not edit.
  toast(
    readOnly
      ? "Link copied! Anyone with this link can listen and remix it."
      : "Session link copied! Anyone with this link can edit.",
  );
}

async function onPublish() {
  const answer = await whileBusy([$("publish")], async () =>
    (await settled()) ? keyedPost(`/api/sessions/${sessionId}/publish`) : null,
  );
  if (!answer) return;
  if (answer.status !== 201) {
    toast(createTrouble(answer) ?? "Publishing failed.");
    return;
  }
  const link = new URL(answer.body.url, location.origin).href;
  const copied = await copy(link);
  toast(copied ? "Published! The read-only link is copied; this pattern stays editable." : `Published: ${link}`);
}

async function onSendCopy() {
  const created = await whileBusy([$("send-copy")], async () =>
    (await settled()) ? createSession(`/api/sessions/${sessionId}/remix`) : null,
  );
  if (created && (await copy(new URL(created.url, location.origin).href))) {
    toast("Copy link sent! Recipients get their own version to remix.");
  }
}

async function onRemix() {
  for (const id of ["remix", "readonly-remix"]) $(id).disabled = true;
  const created = (await settled()) ? await createSession(`/api/sessions/${sessionId}/remix`) : null;
  if (!created) {
    for (const id of ["remix", "readonly-remix"]) $(id).disabled = false;
    return;
  }
  sessionStorage.setItem(TOAST_KEY, "Remixed! You're now editing a copy.");
  location.assign(created.url); // a new history entry: Back returns to the original
}

async function onNew() {
  // Disabled while it runs: a second press on a slow network made a second empty pattern.
  const created = await whileBusy([$("new"), $("create-new")], () => createSession());
  if (created) location.assign(created.url);
}

// --- rendering ----------------------------------------------------------------------------

// The toast is a live region, never hidden: one shown and filled in the same moment is skipped by
// some screen readers. Empty, it takes no room (app.css).
function toast(text) {
  const box = $("toast");
  box.textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    box.textContent = "";
  }, 4000);
}

function show(section) {
  for (const id of ["loading", "not-found", "editor"]) $(id).hidden = id !== section;
}

function showNotFound() {
  show("not-found");
  $("connection").hidden = true; // there is nothing to be connected to: no "Connecting…" forever
  orphanBanner.hide();
  $("readonly-banner").hidden = true;
  player.stop();
}

/**
 * The pattern was deleted while this page had it (anyone holding the link may delete it): said
 * so, and what was on screen, this page's unsaved edits included, can be kept as a new pattern
 * of this person's. It said "This session doesn't exist. Check the link — it may have been
 * mistyped", and the pattern and any offline edits were gone (audit "patternphone").
 */
function showDeleted() {
  const kept = view();
  const name = confirmed?.name ?? null;
  showNotFound();
  deleted = true; // nothing is kept for a session that is gone (its edits go with the copy, if kept)
  if (sessionId) writeUnsaved({});
  if (!kept) return;
  $("not-found-title").textContent = "This pattern was deleted";
  $("not-found-text").textContent =
    "Someone with its link deleted it. What you had on screen, your last changes included, can be kept as a new pattern of yours.";
  const keep = $("keep-copy");
  keep.hidden = false;
  $("create-new").classList.remove("primary");
  keep.onclick = async () => {
    const created = await whileBusy([keep], () =>
      createSession("/api/sessions", kept.state, { name, state: kept.state }),
    );
    if (!created) return; // the toast said why; the pattern is still held here
    location.assign(created.url);
  };
  keep.focus();
}

function render() {
  const doc = view();
  if (!doc) return;
  document.title = `${doc.name || "Untitled Session"} · sessionhub`;
  setText($("pattern-heading"), doc.name || "Untitled Session"); // a rename's, others' too
  const nameInput = $("pattern-name");
  if (!editing(nameInput)) nameInput.value = doc.name ?? "";
  renderLineage();
  renderTransport(doc.state);
  renderGrid(doc.state);
  renderStepLock(doc.state);
  renderPlayers();
}

// The parent's name in a session's lineage once the parent is deleted (docs/PROTOCOL.md).
const UNKNOWN_PARENT = "Unknown Session";

function renderLineage() {
  const parent = $("lineage-parent");
  parent.hidden = !meta.remixedFrom;
  if (meta.remixedFrom) {
    const link = $("parent-link");
    // Seed 001: a parent that is gone (the server names it UNKNOWN_PARENT) reads "Remixed from
    // an unknown session", and is no link: it led to "This session doesn't exist".
    const gone = (meta.remixedFromName ?? UNKNOWN_PARENT) === UNKNOWN_PARENT;
    link.textContent = gone ? "an unknown session" : `"${meta.remixedFromName}"`;
    if (gone) link.removeAttribute("href");
    else link.href = `/s/${meta.remixedFrom}`;
  }
  const count = $("remix-count");
  count.hidden = !(meta.remixCount > 0);
  count.textContent = `${meta.remixCount} ${meta.remixCount === 1 ? "remix" : "remixes"}`;
  $("lineage-separator").hidden = parent.hidden || count.hidden;
}

// --- names: the server's rule, said beside the field ---------------------------------------

// The server refuses a pattern's or a track's name holding < or >, a control character or a
// script URL (handlers/patterns/state.py, bounded_text: the Keyboardia contract). The page checks
// the same first: a refused name went out anyway, its refusal a passing toast of the validator's
// words ("op.set_name.name: Value error, ..."), while the field went on showing it as if saved.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the control characters are what it finds
const NAME_CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const NAME_SCRIPT_URL = /javascript\s*:/i;
const NAME_RULE = "names can't contain < or >, control characters or “javascript:”";

/** Why the server would refuse `text` (trimmed) as a name, in plain words; "" when it takes it. */
// The most characters of a name, as the server counts them: characters as people see them, 20
// bytes of UTF-8 each (handlers/patterns/state.py). A field's maxLength counts UTF-16 units and
// cut silently, half a flag kept (audit "patternworld"): it is the byte cap, a guard against a
// paste of megabytes, and a longer name is said, not cut.
const NAME_MAX = { pattern: 100, track: 32 };
const utf8 = new TextEncoder();

function nameMax(field) {
  return field.id === "pattern-name" ? NAME_MAX.pattern : NAME_MAX.track;
}

function nameProblem(text, max) {
  if (characters(text).length > max) return `names are at most ${max} characters`;
  if (utf8.encode(text).length > max * BYTES_PER_CHARACTER)
    return `names are at most ${max} characters, fewer of long ones like these (emoji, marks)`;
  if (/[<>]/.test(text)) return "names can't contain < or >";
  if (NAME_SCRIPT_URL.test(text)) return "names can't contain “javascript:”";
  if (NAME_CONTROL.test(text)) return "names can't contain control characters";
  return "";
}

/** The message beside a name field: the pattern's, or the one in the field's track row. */
function nameMessage(field) {
  return field.id === "pattern-name"
    ? $("pattern-name-error")
    : field.closest(".track-row").querySelector(".track-name-error");
}

/** Say `text` beside a name field until its text changes ("" takes the message away). */
function sayName(field, text) {
  const message = nameMessage(field);
  if (message.textContent !== text) message.textContent = text; // a live region: said once
  if (text) field.setAttribute("aria-describedby", message.id);
  else {
    field.removeAttribute("aria-describedby");
    field.removeAttribute("aria-invalid");
  }
}

/** As a name is typed: a refused one is said at once, and the message goes once the text is fine. */
function onNameInput(field) {
  const problem = nameProblem(field.value.trim(), nameMax(field));
  if (problem) {
    sayName(field, `${capitalised(problem)}.`);
    field.setAttribute("aria-invalid", "true");
  } else if (!nameMessage(field).hidden) sayName(field, "");
}

/**
 * A name entered (Enter, or the focus leaving): true when it is refused, and then not sent. Its
 * field keeps the focus and the text to correct; once the focus has left, it shows the saved name
 * again, and the message beside it still says why.
 */
function refuseName(field, saved) {
  const problem = nameProblem(field.value.trim(), nameMax(field));
  if (!problem) return false;
  sayName(field, `Not saved: ${problem}.`);
  if (document.activeElement === field) field.setAttribute("aria-invalid", "true");
  else field.value = saved;
  return true;
}

function onNameLeft(field, saved) {
  if (field.getAttribute("aria-invalid") !== "true") return;
  field.removeAttribute("aria-invalid");
  field.value = saved; // the refused text goes; the message beside it still says why
}

/**
 * A name the server refused (whatever the reason: its text rule, the pattern at its size limit, a
 * full session): the field shows the saved name again and says why beside it, not in a toast of
 * the validator's words. Only `invalid_payload` did so: a name refused `payload_too_large` stayed
 * in the field as if saved. A rename whose track another player deleted is said in a toast: its
 * row is gone, or about to go.
 */
function nameRefused(op, err) {
  if (!["set_name", "rename_track"].includes(op.type)) return false;
  const doc = view();
  const track = doc?.state.tracks.find((t) => t.id === op.trackId);
  const field = op.type === "set_name" ? $("pattern-name") : track && trackNameField(track.id);
  if (op.type === "rename_track" && (err.code === "not_found" || !field)) {
    toast(renameLost(op.name));
    return true;
  }
  field.value = op.type === "set_name" ? (doc?.name ?? "") : track.name;
  sayName(field, `Not saved: ${nameRefusal(err)}.`);
  return true;
}

/** Why the server refused a name, in plain words (no full stop). */
function nameRefusal(err) {
  if (err.code === "invalid_payload") {
    const longest = /at most (\d+) characters/.exec(err.message ?? "");
    return longest ? `names are at most ${longest[1]} characters` : NAME_RULE;
  }
  return (err.message || "the server refused it").replace(/\.$/, "");
}

function trackNameField(trackId) {
  return document.querySelector(`.track-row[data-track="${CSS.escape(String(trackId))}"] .track-name`);
}

/** A rename that could not be: its track was deleted by another player meanwhile. */
function renameLost(name) {
  const what = name ? `“${name}”` : "its new name";
  return `Another player deleted the track you were renaming, so ${what} was not saved.`;
}

/**
 * A track name being typed whose track is no longer in `state` (another player deleted it): its
 * row goes, and the person is told, instead of the text vanishing under their fingers.
 */
function sayRenameLost(state) {
  const field = document.activeElement;
  if (!field?.classList?.contains("track-name") || !editing(field)) return;
  const row = field.closest(".track-row");
  if (row && !state.tracks.some((t) => t.id === row.dataset.track)) toast(renameLost(field.value.trim()));
}

function capitalised(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

const TEMPO_MIN = 60;
const TEMPO_MAX = 180;

/**
 * A tempo typed outside 60–180 BPM (or none) is not sent, and the field says why beside it
 * (`aria-invalid`, described by the message, which is also read out as it appears). The person's
 * focus and text stay where they are to correct it; leaving the field shows the tempo that stands.
 * It snapped back without a word.
 */
function onTempoChange(event) {
  const field = event.target;
  const typed = field.value.trim();
  const tempo = Math.round(Number(typed));
  if (typed !== "" && tempo >= TEMPO_MIN && tempo <= TEMPO_MAX) {
    sayTempo("");
    edit({ type: "set_tempo", tempo });
    return;
  }
  const what = typed === "" ? "No tempo was set" : `${typed} BPM was not set`;
  sayTempo(`${what}: the tempo is ${TEMPO_MIN} to ${TEMPO_MAX} BPM.`);
  if (document.activeElement === field) field.setAttribute("aria-invalid", "true");
  else render(); // changed as the focus left: the field shows the tempo that stands
}

function onTempoLeft(event) {
  if (event.target.getAttribute("aria-invalid") !== "true") return;
  event.target.removeAttribute("aria-invalid");
  render(); // the refused text goes; the message beside it still says why
}

// Fields the person changed since their last `change` (Enter, a slider let go, the focus leaving
// with new text): what they hold is the person's and not an edit yet, so a value from the session
// must not overwrite it. Any other field shows the session's value, the focused one too: a tempo
// another player set just after this one's Enter stayed in this field (focus was the test) while
// the other's played, and stayed after the focus left, nothing drawing the field again.
const unsent = new WeakSet();

/** Whether `field` holds the person's own value: typed or dragged, or refused text to correct. */
function editing(field) {
  if (document.activeElement !== field) return false;
  return unsent.has(field) || field.getAttribute("aria-invalid") === "true";
}

function watchEditing() {
  const editor = $("editor");
  editor.addEventListener("input", (event) => unsent.add(event.target));
  // Captured: before the field's own handler makes the edit, whose render then shows it as sent.
  editor.addEventListener("change", (event) => unsent.delete(event.target), true);
  // Left with no `change` (its text typed back as it was): meanwhile the session may have moved.
  editor.addEventListener("focusout", (event) => {
    if (unsent.delete(event.target)) render();
  });
}

function sayTempo(text) {
  const field = $("tempo");
  const message = $("tempo-error");
  message.textContent = text; // never hidden: a region shown as it is filled goes unsaid
  if (text) field.setAttribute("aria-describedby", "tempo-error");
  else {
    field.removeAttribute("aria-describedby");
    field.removeAttribute("aria-invalid");
  }
}

function renderTransport(state) {
  const tempo = $("tempo");
  if (!editing(tempo)) tempo.value = String(state.tempo);
  const swing = $("swing");
  if (!editing(swing)) swing.value = String(state.swing);
  showSwing(); // the slider's own value while it is dragged
}

function showSwing() {
  $("swing-value").textContent = `${$("swing").value}%`;
}

function element(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("aria") || key === "role")
      el.setAttribute(key.replace(/^aria/, "aria-").toLowerCase(), value);
    else el[key] = value;
  }
  el.append(...children);
  return el;
}

// A track's row: built once (keyed.js), kept while the track exists, so that what a player is
// doing in it -- a name half typed, a focused step or button -- outlives the other players'
// edits (a track added or removed elsewhere used to redraw every row). Its steps are built anew
// only when its step count changes; its labels follow its name. Its controls come in two groups,
// before and after the steps: on a desktop one line, on a phone (app.css) a line above the steps
// and one below, each kept in view while the steps scroll sideways.
function buildRow() {
  return element(
    "div",
    { className: "track-row" },
    element(
      "div",
      { className: "track-head" },
      element("input", {
        type: "text",
        className: "track-name",
        maxLength: NAME_MAX.track * BYTES_PER_CHARACTER,
        dir: "auto", // an Arabic name reads from the right
        enterKeyHint: "done", // Enter (a phone's key) commits the rename
        ariaLabel: "Track name",
      }),
      element("button", { type: "button", className: "button small mute", textContent: "M", ariaLabel: "Mute" }),
      element("button", { type: "button", className: "button small solo", textContent: "S", ariaLabel: "Solo" }),
      element("input", { type: "range", className: "volume", min: "0", max: "1", step: "0.05", ariaLabel: "Volume" }),
      element("select", { className: "step-count" }),
    ),
    element("span", { className: "field-error track-name-error", role: "status" }),
    element("div", { className: "steps", role: "group" }),
    element(
      "div",
      { className: "track-tail" },
      element("button", { type: "button", className: "button small clear-track", textContent: "Clear" }),
      element("button", {
        type: "button",
        className: "button small delete-track",
        textContent: "✕",
        ariaLabel: "Delete track",
      }),
    ),
  );
}

function fitRow(row, track, index) {
  row.dataset.track = track.id;
  row.querySelector(".track-name-error").id = `track-name-error-${track.id}`;
  const steps = row.querySelector(".steps");
  const countSelect = row.querySelector(".step-count");
  if (row.dataset.stepCount !== String(track.stepCount)) {
    row.dataset.stepCount = String(track.stepCount);
    const focused = steps.contains(document.activeElement) ? Number(document.activeElement.dataset.step) : null;
    const cells = [];
    for (let i = 0; i < track.stepCount; i += 1) {
      cells.push(
        element("button", {
          type: "button",
          className: i % 4 === 0 ? "step beat" : "step",
          dataset: { track: track.id, step: String(i) },
          tabIndex: i === 0 ? 0 : -1, // one Tab stop a row: the arrow keys move among its steps
        }),
      );
    }
    steps.replaceChildren(...cells);
    const options = [...new Set([...STEP_COUNTS, track.stepCount])].map((count) =>
      element("option", { value: String(count), textContent: String(count) }),
    );
    countSelect.replaceChildren(...options);
    if (focused !== null) cells[Math.min(focused, cells.length - 1)]?.focus();
    delete row.dataset.labelled;
  }
  // A name of spaces only (another client's, or the API's, may be) is no name: the track is called
  // by its place, or every control of it was named " step 1", "Mute " (audit "patternphone").
  const label = String(track.name ?? "").trim() || `Track ${index + 1}`;
  if (row.dataset.labelled !== label) {
    row.dataset.labelled = label;
    steps.setAttribute("aria-label", `${label} step buttons`);
    row.querySelector(".track-name").setAttribute("aria-label", `Name of track ${label}`);
    countSelect.setAttribute("aria-label", `${label} steps`);
    // Every row has these: a screen reader names the track too, after the control's own word.
    row.querySelector(".mute").setAttribute("aria-label", `Mute ${label}`);
    row.querySelector(".solo").setAttribute("aria-label", `Solo ${label}`);
    row.querySelector(".volume").setAttribute("aria-label", `${label} volume`);
    row.querySelector(".clear-track").setAttribute("aria-label", `Clear ${label}`);
    row.querySelector(".delete-track").setAttribute("aria-label", `Delete track ${label}`);
    steps.querySelectorAll(".step").forEach((cell, i) => {
      cell.setAttribute("aria-label", `${label} step ${i + 1}`);
    });
  }
}

// A row removed under the keyboard's focus (its own ✕, or another player deleting the track)
// took the focus with it to the page. It goes to the same control of the row that took the
// removed one's place (the next, else the previous), or to Add track when no row is left.
const ROW_CONTROLS = [".delete-track", ".clear-track", ".mute", ".solo", ".volume", ".step-count", ".track-name"];

function focusInRow(grid) {
  const active = document.activeElement;
  const row = active?.closest?.(".track-row");
  if (!row || row.parentElement !== grid) return null;
  const step = active.matches(".step") ? Number(active.dataset.step) : null;
  const control = ROW_CONTROLS.find((selector) => active.matches(selector)) ?? ".delete-track";
  return { row, step, control, next: row.nextElementSibling, previous: row.previousElementSibling };
}

function handRowFocusOn(held) {
  if (!held || held.row.isConnected) return;
  const row = [held.next, held.previous].find((near) => near?.isConnected && near.matches(".track-row"));
  if (!row) {
    $("add-track").focus();
    return;
  }
  const steps = row.querySelectorAll(".step");
  const target = held.step === null ? row.querySelector(held.control) : steps[Math.min(held.step, steps.length - 1)];
  target?.focus();
}

function renderGrid(state) {
  const grid = $("grid");
  const focus = focusInRow(grid);
  sayRenameLost(state);
  reconcile(grid, state.tracks, (track) => track.id, buildRow, fitRow);
  if (state.tracks.length === 0) grid.append(element("p", { className: "muted", textContent: "No tracks yet." }));
  for (const track of state.tracks) {
    const row = grid.querySelector(`.track-row[data-track="${CSS.escape(track.id)}"]`);
    const name = row.querySelector(".track-name");
    if (!editing(name)) name.value = track.name;
    name.title = track.name; // the whole name where a phone's narrow column cuts it short
    row.querySelector(".mute").setAttribute("aria-pressed", String(track.muted));
    row.querySelector(".solo").setAttribute("aria-pressed", String(track.soloed));
    const volume = row.querySelector(".volume");
    if (!editing(volume)) volume.value = String(track.volume);
    row.querySelector(".step-count").value = String(track.stepCount);
    row.querySelectorAll(".step").forEach((cell, i) => {
      cell.setAttribute("aria-pressed", String(track.steps[i] === true));
      cell.classList.toggle("locked", Boolean(track.parameterLocks[i]));
      cell.classList.remove("remote-cursor");
    });
  }
  for (const el of grid.querySelectorAll("input, select, button")) el.disabled = readOnly;
  // Steps stay focusable (a published pattern's steps are read, their parameters shown) but say
  // they take no change: aria-disabled, drawn as the other controls are (app.css).
  for (const el of grid.querySelectorAll(".step")) {
    el.disabled = false;
    if (readOnly) el.setAttribute("aria-disabled", "true");
    else el.removeAttribute("aria-disabled");
  }
  handRowFocusOn(focus);
  const cursorColours = distinctColours(players.values());
  for (const p of players.values()) {
    if (!p.cursor || (socket && p.id === socket.id)) continue;
    const cell = grid.querySelector(stepSelector(p.cursor.trackId, p.cursor.step));
    if (cell) {
      cell.classList.add("remote-cursor");
      cell.style.outlineColor = cursorColours.get(p.id) ?? p.colour;
    }
  }
}

// --- the selected step's parameters (a parameter lock: pitch, volume, tie) ----------------

let selected = null; // {trackId, step}: the step last clicked or focused, whose lock the panel edits

function selectStep(cell) {
  selected = { trackId: cell.dataset.track, step: Number(cell.dataset.step) };
  renderStepLock(view().state);
}

function selectedTrack(state) {
  const track = selected && state.tracks.find((t) => t.id === selected.trackId);
  return track && selected.step < track.stepCount ? track : null;
}

function renderStepLock(state) {
  const panel = $("step-lock");
  const track = selectedTrack(state);
  panel.hidden = !track;
  if (!track) return;
  const lock = track.parameterLocks[selected.step] ?? {};
  $("step-lock-title").replaceChildren(bdi(track.name), ` · step ${selected.step + 1}`);
  const pitch = $("lock-pitch");
  if (!editing(pitch)) pitch.value = String(lock.pitch ?? 0);
  const volume = $("lock-volume");
  if (!editing(volume)) volume.value = String(lock.volume ?? 1);
  $("lock-volume-value").textContent = `${Math.round((lock.volume ?? 1) * 100)}%`;
  $("lock-tie").setAttribute("aria-pressed", String(lock.tie === true));
  for (const el of panel.querySelectorAll("input, button")) el.disabled = readOnly;
}

/** The selected step's lock with `change` made; one of defaults only is no lock (null). */
function setLock(change) {
  const track = selectedTrack(view().state);
  if (!track || readOnly) return;
  const lock = { ...(track.parameterLocks[selected.step] ?? {}), ...change };
  if (lock.pitch === 0) delete lock.pitch;
  if (lock.volume === 1) delete lock.volume;
  if (lock.tie !== true) delete lock.tie;
  const next = Object.keys(lock).length ? lock : null;
  edit({ type: "set_lock", trackId: track.id, step: selected.step, lock: next });
}

function onLockPitch(event) {
  const field = event.target;
  const typed = Math.round(Number(field.value));
  if (field.value.trim() === "" || !Number.isFinite(typed)) {
    renderStepLock(view().state);
    return;
  }
  const pitch = Math.min(24, Math.max(-24, typed)); // the model's range, whole semitones
  field.value = String(pitch);
  setLock({ pitch });
}

function bindStepLock() {
  $("lock-pitch").addEventListener("change", onLockPitch);
  $("lock-volume").addEventListener("change", (e) => setLock({ volume: Number(e.target.value) }));
  $("lock-tie").addEventListener("click", (e) => setLock({ tie: e.target.getAttribute("aria-pressed") !== "true" }));
  $("lock-reset").addEventListener("click", () => {
    const track = selectedTrack(view().state);
    if (track && !readOnly) edit({ type: "set_lock", trackId: track.id, step: selected.step, lock: null });
  });
}

function stepSelector(trackId, step) {
  return `.step[data-track="${CSS.escape(String(trackId))}"][data-step="${Number(step)}"]`;
}

/** Black or white text, whichever reads better on `hex` (WCAG relative luminance). */
function readableOn(hex) {
  const match = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!match) return "#fff";
  const [r, g, b] = match.slice(1).map((part) => {
    const c = Number.parseInt(part, 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  // Contrast with white is 1.05 / (L + 0.05), with black (L + 0.05) / 0.05: the better of the two
  // is at least 4.58 for any colour, above WCAG's 4.5 (a dark grey would fall short in mid-tones).
  return 1.05 / (luminance + 0.05) >= (luminance + 0.05) / 0.05 ? "#fff" : "#000";
}

function renderPlayers() {
  const list = $("players");
  const colours = distinctColours(players.values());
  list.replaceChildren(
    ...[...players.values()].map((p) => {
      const item = element("li", { className: "avatar", title: p.name, textContent: initials(p.name) });
      const colour = colours.get(p.id) ?? "#667085";
      item.style.backgroundColor = colour;
      item.style.color = readableOn(colour);
      if (socket && p.id === socket.id) item.classList.add("me");
      item.setAttribute("aria-label", p.name);
      return item;
    }),
  );
}

function showPlayhead(step) {
  for (const cell of document.querySelectorAll(".step.playing")) cell.classList.remove("playing");
  if (step === null) return;
  const state = view()?.state;
  if (!state) return;
  for (const track of state.tracks) {
    document.querySelector(stepSelector(track.id, step % track.stepCount))?.classList.add("playing");
  }
}

// --- input --------------------------------------------------------------------------------

function trackOf(el) {
  const row = el.closest(".track-row");
  return row ? view().state.tracks.find((t) => t.id === row.dataset.track) : null;
}

// Said once a page: a published pattern's step tapped or pressed (Space, Enter) changes nothing.
const READ_ONLY_SAID = "This is a published snapshot: Remix to edit.";
let readOnlySaid = false;

function onGridClick(event) {
  const el = event.target;
  const track = trackOf(el);
  if (track && readOnly && el.classList.contains("step") && !readOnlySaid) {
    readOnlySaid = true;
    toast(READ_ONLY_SAID);
  }
  if (!track || readOnly) return;
  if (el.classList.contains("step")) {
    const step = Number(el.dataset.step);
    selected = { trackId: track.id, step };
    edit({ type: "set_step", trackId: track.id, step, on: !track.steps[step] });
  } else if (el.classList.contains("mute")) {
    edit({ type: "set_track_mute", trackId: track.id, muted: !track.muted });
  } else if (el.classList.contains("solo")) {
    edit({ type: "set_track_solo", trackId: track.id, soloed: !track.soloed });
  } else if (el.classList.contains("clear-track")) {
    edit({ type: "clear_track", trackId: track.id });
  } else if (el.classList.contains("delete-track")) {
    edit({ type: "delete_track", trackId: track.id });
  }
}

function onGridChange(event) {
  const el = event.target;
  const track = trackOf(el);
  if (!track || readOnly) return;
  if (el.classList.contains("track-name")) {
    if (refuseName(el, track.name)) return;
    const name = el.value.trim(); // refuseName said a longer one, unsent (a cut lost emoji)
    if (name && name !== track.name) edit({ type: "rename_track", trackId: track.id, name });
    else el.value = track.name;
  } else if (el.classList.contains("volume")) {
    edit({ type: "set_track_volume", trackId: track.id, volume: Number(el.value) });
  } else if (el.classList.contains("step-count")) {
    edit({ type: "set_track_step_count", trackId: track.id, stepCount: Number(el.value) });
  }
}

// A row's steps are one Tab stop (its last focused step), so that Tab goes on to the row's other
// controls, the next track and the step's parameters: with a Tab stop a step, 16 tracks of 16
// steps put 256 of them between the grid's first control and what lies after it.
function rove(cell) {
  for (const other of cell.parentElement.querySelectorAll('.step[tabindex="0"]')) other.tabIndex = -1;
  cell.tabIndex = 0;
}

function onGridKey(event) {
  const cell = event.target;
  if (!cell.classList?.contains("step")) return;
  const ends = { Home: 0, End: cell.parentElement.children.length - 1 };
  if (event.key in ends) {
    event.preventDefault();
    cell.parentElement.children[ends[event.key]]?.focus();
    return;
  }
  const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
  const move = moves[event.key];
  if (!move) return;
  event.preventDefault();
  const rows = [...document.querySelectorAll(".track-row")];
  const rowIndex = rows.indexOf(cell.closest(".track-row")) + move[0];
  if (rowIndex < 0 || rowIndex >= rows.length) return;
  const cells = rows[rowIndex].querySelectorAll(".step");
  const index = Math.min(Math.max(Number(cell.dataset.step) + move[1], 0), cells.length - 1);
  cells[index]?.focus();
}

function onGridPoint(event) {
  const cell = event.target;
  if (event.type === "focusin" && cell.classList?.contains("step")) {
    rove(cell);
    selectStep(cell);
  }
  if (cell.classList?.contains("step")) moveCursor({ trackId: cell.dataset.track, step: Number(cell.dataset.step) });
}

function bindInputs() {
  watchEditing();
  const grid = $("grid");
  grid.addEventListener("click", onGridClick);
  grid.addEventListener("change", onGridChange);
  grid.addEventListener("keydown", onGridKey);
  grid.addEventListener("focusin", onGridPoint);
  grid.addEventListener("pointerover", onGridPoint);
  grid.addEventListener("input", (e) => {
    if (e.target.classList?.contains("track-name")) onNameInput(e.target);
  });
  grid.addEventListener("focusout", (e) => {
    const track = e.target.classList?.contains("track-name") ? trackOf(e.target) : null;
    if (track) onNameLeft(e.target, track.name);
  });
  bindStepLock();
  $("tempo").addEventListener("change", onTempoChange);
  $("tempo").addEventListener("focusout", onTempoLeft);
  $("swing").addEventListener("input", showSwing);
  $("swing").addEventListener("change", (e) => edit({ type: "set_swing", swing: Math.round(Number(e.target.value)) }));
  $("pattern-name").addEventListener("change", (e) => {
    if (refuseName(e.target, view()?.name ?? "")) return;
    const name = e.target.value.trim(); // refuseName said a longer one, unsent
    edit({ type: "set_name", name: name || null });
  });
  $("pattern-name").addEventListener("input", (e) => onNameInput(e.target));
  $("pattern-name").addEventListener("focusout", (e) => onNameLeft(e.target, view()?.name ?? ""));
  $("add-track-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const sampleId = $("add-sample").value;
    if (view().state.tracks.length >= 16) return toast("A pattern holds at most 16 tracks.");
    edit({ type: "add_track", track: newTrack(sampleId, SAMPLE_NAMES[sampleId] ?? sampleId) });
  });
  $("play").addEventListener("click", () => {
    if (player.playing) player.stop();
    else player.start();
    // The word says what a press does; no aria-pressed beside it: a screen reader said "Stop,
    // toggle button, pressed", a pressed Stop.
    $("play").textContent = player.playing ? "Stop" : "Play";
  });
  $("invite").addEventListener("click", onInvite);
  $("publish").addEventListener("click", onPublish);
  $("send-copy").addEventListener("click", onSendCopy);
  $("remix").addEventListener("click", onRemix);
  $("readonly-remix").addEventListener("click", onRemix);
  $("new").addEventListener("click", onNew);
  $("create-new").addEventListener("click", onNew);
}

// --- page load ----------------------------------------------------------------------------

function pathId() {
  const match = /^\/s\/([^/]+)(?:\/remix)?\/?$/.exec(location.pathname);
  return match ? decodeURIComponent(match[1]).toLowerCase() : null;
}

// A "remix this" link (seed 004's /s/<id>/remix, seed 001's /s/<id>?remix=true) makes the
// visitor's own copy on load.
function remixLink() {
  return /\/remix\/?$/.test(location.pathname) || new URLSearchParams(location.search).get("remix") === "true";
}

async function remixOnLoad(id) {
  // The link becomes the original's first, so neither Back from the copy nor a reload makes
  // another copy.
  history.replaceState(null, "", `/s/${id}`);
  // The copy's key names the state it copies, as Remix's does on the loaded page: keyed on no
  // state, a Remix pressed there after this one's answers were lost made a second copy.
  const original = await request(`/api/sessions/${encodeURIComponent(id)}`);
  const created = await createSession(
    `/api/sessions/${id}/remix`,
    original.status === 200 ? original.body.state : null,
  );
  if (!created) return false; // the toast said why; the original is shown
  sessionStorage.setItem(TOAST_KEY, "Remixed! You're now editing a copy.");
  location.assign(created.url); // a new history entry: Back returns to the original
  return true;
}

async function load(id) {
  const answer = await request(`/api/sessions/${encodeURIComponent(id)}`);
  if (answer.status !== 200) {
    if (answer.status === 0) toast(answer.body.error);
    showNotFound();
    return;
  }
  sessionId = id;
  history.replaceState(null, "", `/s/${id}`); // Load replaces
  const { state, name, ...rest } = answer.body;
  meta = rest;
  confirmed = { state, name };
  position = parseEtag(answer.headers.get("ETag"));
  readOnly = meta.immutable === true;
  $("readonly-banner").hidden = !readOnly;
  // How to turn steps on or off: neither shown nor read out on a pattern that takes no change.
  $("grid-keys").hidden = readOnly;
  if (readOnly) $("grid").removeAttribute("aria-describedby");
  else $("grid").setAttribute("aria-describedby", "grid-keys");
  orphanBanner.show(id, { orphaned: meta.orphaned });
  for (const id2 of ["pattern-name", "tempo", "swing", "add-sample", "add-track"]) $(id2).disabled = readOnly;
  $("publish").hidden = readOnly; // a published copy is published already
  adoptUnsaved();
  const myName = await displayName();
  const myUser = (await tokenClaims()).sub;
  show("editor");
  render();
  watchLeaving();
  goLive(myName, typeof myUser === "string" ? myUser : "");
}

function goLive(name = "", user = "") {
  Object.assign(me, identity(user), { user });
  if (name) me.name = name;
  me.name = presenceName(me.name) || `Player ${Math.floor(Math.random() * 900 + 100)}`;
  socket = connect({
    onState: (state) => {
      if (state !== "connected") {
        live = false;
        showConnection($("connection"), state);
      }
    },
  });
  subscribeSession(socket, sessionId, {
    onSnapshot,
    onEvent: onLogEvent,
    onSubscribed: () => {
      ownClients.add(socket.id);
      live = true;
      showConnection($("connection"), "live");
      join();
      if (offline.length) flushOffline();
    },
    onError: (err) => {
      // Gone while this page had it (deleted as it was offline): what it shows can be kept.
      if (err.code === "session_not_found") showDeleted();
    },
  });
  setInterval(() => {
    if (live) call(socket, "pattern_heartbeat", { session_id: sessionId }).then(() => {}, join);
  }, HEARTBEAT_MS);
  addEventListener("pagehide", () => {
    if (socket.connected) socket.emit("pattern_leave", { session_id: sessionId });
  });
}

async function main() {
  bindInputs();
  const queued = sessionStorage.getItem(TOAST_KEY);
  if (queued) {
    sessionStorage.removeItem(TOAST_KEY);
    toast(queued);
  }
  if (location.pathname === "/patterns") {
    const created = (await untouchedPattern()) ?? (await createSession());
    if (!created) {
      showNotFound();
      return;
    }
    history.replaceState(null, "", created.url);
  }
  const id = pathId();
  if (!id || !UUID.test(id)) {
    showNotFound();
    return;
  }
  if (remixLink() && (await remixOnLoad(id))) return;
  await load(id);
}

main();
