/**
 * The streamer's dashboard (`/streams/<id>`): state actions (only the valid ones shown), the
 * viewer link, the live clip feed, review by segment with moments, mark / edit / delete, and
 * exports as file downloads. Owner-only data (who clicked) comes from the HTTP review routes;
 * live events after an answer's offset are applied on top of it. A stream may hold hundreds of
 * thousands of clips: the review loads a bounded summary first (each segment's clip count, the
 * last clips for the feed), then each segment's clips a page at a time on request (a cursor,
 * never a count: pages never repeat or skip a clip while clips arrive). Text goes in via textContent.
 */
import {
  $,
  api,
  authorizedFetch,
  bdi,
  connect,
  isOffline,
  knownIdentity,
  passkeysOffered,
  saveFile,
  showConnection,
  STREAM_CONNECTION_TEXT,
  signInWithPasskey,
  subscribeSession,
  whileBusy,
} from "./client.js";
import { STATE_LABELS, hms, idFromPath } from "./clip_format.js";
import { reconcile, setText } from "./keyed.js";
import { NewsBatch } from "./news.js";
import { OrphanBanner } from "./orphan_banner.js";
import { sendUntilAnswered } from "./resend.js";
import { durationWords, limitText } from "./text_fit.js";

const FEED_LIMIT = 50;
const orphanBanner = new OrphanBanner();
const MOMENTS_DELAY_MS = 400;
// How long the review's first drawing waits for the moments (see loadReview).
const MOMENTS_FIRST_WAIT_MS = 1000;
const VALID_ACTIONS = { created: ["start", "end"], active: ["pause", "end"], paused: ["resume", "end"], ended: [] };
const ACTION_CONFIRM = { end: "End the stream session? Viewers can no longer clip, and this is final." };
// The state each action moves the stream to.
const ACTION_TARGET = { start: "active", pause: "paused", resume: "active", end: "ended" };
// A viewer's clip is told a second after it arrives, with those that came meanwhile; during a
// raid, one telling every 5 s at most ("240 new clips"): a screen reader said nothing of them.
const CLIP_NEWS_GATHER_MS = 1000;
const CLIP_NEWS_GAP_MS = 5000;

const ui = {
  loading: $("loading"),
  error: $("page-error"),
  errorTitle: $("page-error-title"),
  errorMessage: $("page-error-message"),
  errorLink: $("page-error-link"),
  errorSignIn: $("page-error-signin"),
  errorPasskey: $("page-error-passkey"),
  errorSignInStatus: $("page-error-signin-status"),
  card: $("dashboard"),
  review: $("review"),
  title: $("stream-title"),
  state: $("stream-state"),
  game: $("stream-game"),
  delay: $("viewer-delay"),
  count: $("clip-count"),
  countWord: $("clip-count-word"),
  clippedCount: $("clipped-count"),
  notice: $("notice"),
  link: $("viewer-link"),
  copy: $("copy-link"),
  feed: $("feed"),
  feedEmpty: $("feed-empty"),
  clipNews: $("clip-news"),
  segments: $("segments"),
  window: $("window-input"),
  sort: $("sort-select"),
  exportForm: $("export-form"),
  exportError: $("export-error"),
  exportStatus: $("export-status"),
  exportButton: $("export-button"),
  exportCancel: $("export-cancel"),
  connection: $("connection"),
};

let sessionId = null;
let session = null;
let socket = null;
let subscription = null;
const clips = new Map(); // clip id -> clip paged in (owner shape; a live one's viewer is learned: learnViewers)
const feedClips = new Map(); // clip id -> the newest clips for the feed (the summary's last ones, then live ones)
// Per segment index: { count, frontier: [offset_ms, clip_id] of the last clip paged in, or null,
// complete: every clip of it is paged in, loading }. A live clip is listed when its place is
// within what is paged in; past it, a later page brings it.
const paging = new Map();
// The pages' first batch: a segment's first page is asked for at once for this many segments.
const FIRST_SEGMENTS = 5;
const PAGE_SIZE = 100; // the server's page, as the button says it
// Requests under way, each with the events received meanwhile: its answer reflects a log offset,
// and the events after it are applied again on top of it.
const inFlight = new Set();
let reviewOffset = null; // the log offset the review reflects; null while it loads
let buffered = [];
let momentsTimer = null;
let moments = [];
let momentsDrawn = 0; // groupings drawn so far: a late first one never replaces a newer one

function show(...sections) {
  for (const element of [ui.loading, ui.error, ui.card, ui.review]) element.hidden = !sections.includes(element);
}

function showError(title, message, link = null) {
  ui.errorTitle.textContent = title;
  ui.errorMessage.textContent = message;
  if (link) ui.errorLink.href = link.href;
  if (link) ui.errorLink.textContent = link.text;
  ui.connection.hidden = true;
  show(ui.error);
}

/** Say `content` (a string, or strings and nodes: a person's name as a bdi) in the notice line. */
function notice(content, kind = "info") {
  const parts = [content].flat().filter((part) => part !== "");
  ui.notice.replaceChildren(...parts);
  ui.notice.dataset.kind = kind;
}

function el(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

// --- header and actions -------------------------------------------------------------------

function renderHeader() {
  document.title = `${session.title} · Stream dashboard`;
  ui.title.textContent = session.title;
  ui.state.textContent = STATE_LABELS[session.state] ?? session.state;
  ui.state.dataset.state = session.state;
  ui.game.textContent = session.game || "";
  ui.game.hidden = !session.game;
  ui.delay.textContent = String(session.viewer_delay_s);
  const count = session.clip_count ?? clips.size;
  ui.count.textContent = String(count);
  ui.countWord.textContent = count === 1 ? "clip" : "clips"; // "1 clips" read wrong
  ui.clippedCount.textContent = String(session.clipped_count ?? 0);
  const valid = VALID_ACTIONS[session.state] ?? [];
  for (const button of document.querySelectorAll("[data-action]")) {
    button.hidden = !valid.includes(button.dataset.action);
  }
  // An ended stream has no action left: no empty box where the buttons were.
  document.querySelector(".state-actions").hidden = valid.length === 0;
  if (focusFrom !== null) {
    // While the action's call runs its buttons are disabled: the focus is settled when it is
    // answered (a state drawn before its ack found nothing offered and put the focus on the state).
    if (acting === 0) settleActionFocus();
    if (session.state !== focusFrom) focusFrom = null; // our change has arrived and is shown
  }
}

// A pressed action button is disabled while its call runs, then hidden when the state changes
// (Start gives way to Pause): either drops the keyboard's focus to the page, and the next action
// was a page of Tabs away. The state the press started from, while the focus is to be kept.
let focusFrom = null;
let acting = 0; // state actions whose calls run

/**
 * The focus the page dropped goes back to `pressed` while it is offered, else to the next action
 * offered, else to the state (an ended stream offers none).
 */
function settleActionFocus(pressed = null) {
  // A button just hidden (Start giving way to Pause) still holds the focus until Chromium's
  // focus fix-up runs at its next rendering update, then the focus drops to the page: it counts
  // as lost already (a busy machine's CI run saw the focus stay on the page).
  const active = document.activeElement;
  const lost = active === null || active === document.body || active.closest("[hidden]") !== null;
  if (!lost) return; // the person has moved on: their focus stays where they put it
  const offered = [...document.querySelectorAll("[data-action]")].filter(
    (button) => !button.hidden && !button.disabled,
  );
  const next = offered.includes(pressed) ? pressed : offered[0];
  if (next) {
    next.focus();
    return;
  }
  ui.state.tabIndex = -1;
  ui.state.focus();
}

async function onAction(event) {
  const action = event.currentTarget.dataset.action;
  if (ACTION_CONFIRM[action] && !window.confirm(ACTION_CONFIRM[action])) return;
  const buttons = document.querySelectorAll("[data-action]");
  const pressed = event.currentTarget;
  const hadFocus = pressed === document.activeElement;
  if (hadFocus) focusFrom = session.state;
  for (const button of buttons) button.disabled = true;
  acting += 1;
  const label = pressed.textContent.trim();
  const offline = sayIfOffline(label);
  if (!offline) notice("");
  try {
    await sendAction(action, label);
    notice(offline ? `Back online: ${label} is done.` : "");
  } catch (err) {
    notice(`${action} failed: ${err.message}`, "error");
    focusFrom = null; // nothing changes: the focus goes back to the button, enabled again below
  } finally {
    if (offline) owed -= 1;
    acting -= 1;
    for (const button of buttons) button.disabled = false;
    if (hadFocus) settleActionFocus(pressed);
  }
}

/**
 * Send a state action until it is answered. One sent but not answered (a stalled network, a
 * connection lost before the answer) is sent again once the connection is back: if the first
 * reached the server, the resend is refused invalid_state naming the state the action moves to
 * (PROTOCOL, Sending a write again), which is the action done, not a failure.
 */
async function sendAction(action, label) {
  const done = (err) => err.code === "invalid_state" && err.details?.state === ACTION_TARGET[action];
  return (await sendAgainOnLoss("stream_set_state", { session_id: sessionId, action }, label, done)).ack;
}

/**
 * Send `event` until it is answered (resend.js): one whose answer was lost (the connection
 * dropped, or went silent, after the server had it) is sent again once the connection is back,
 * the same change, and the page says so. A clip's mark, note or delete and a block said "Could
 * not change the clip: The connection was lost…" while the server had done it, and were never
 * sent again (audit "retries3"): the person, believing it, pressed Mark again and unmarked it.
 */
function sendAgainOnLoss(event, payload, what, doneBefore = undefined) {
  const onResend = (err) =>
    notice(`${err.message} ${what} is being sent again once the connection is back: it is applied once.`, "error");
  return sendUntilAnswered(socket, event, payload, { onResend, doneBefore });
}

/**
 * Offline, a call waits for the connection (up to its timeout): say so at once, not after it.
 * True when it was said (the outcome then says it is done).
 */
function sayIfOffline(what) {
  if (!isOffline(socket)) return false;
  notice(`Offline: ${what} is sent when the connection is back…`);
  owed += 1; // the caller counts it down once the call is over
  return true;
}

// Changes pressed offline and not answered yet (a state action, a clip's mark, note or delete, a
// block): they live only in this page until the connection is back, so leaving asks first. They
// were dropped without a word by a closed tab or a followed link.
let owed = 0;
window.addEventListener("beforeunload", (event) => {
  if (owed === 0) return;
  event.preventDefault();
  event.returnValue = ""; // older Chromium shows the prompt only with this set
});

async function copyLink() {
  try {
    await navigator.clipboard.writeText(ui.link.value);
  } catch {
    ui.link.select(); // clipboard API refused (insecure context): leave it selected to copy by hand
    notice("Press Ctrl+C to copy the selected link.");
    return;
  }
  notice("Viewer link copied.");
}

// --- live feed ------------------------------------------------------------------------------

// The newest clips as they are now, from the same clips as the review: seeded by the stored ones
// on every (re)load, a deleted or cleared clip leaves it, an edited note shows. Each keeps its
// node (keyed.js), so a clip arriving adds one line and moves nothing a reader is looking at.
function feedItem() {
  const li = el("li", "feed-item");
  li.append(el("span", "offset"), el("span", "note"), el("span", "muted seq"));
  return li;
}

function updateFeedItem(li, clip) {
  li.dataset.clipId = clip.clip_id;
  setText(li.querySelector(".offset"), `S${clip.segment_index} · ${hms(clip.offset_ms)}`);
  setText(li.querySelector(".note"), clip.note);
  // The clip's arrival number in the session (its seq): it stays the clip's after deletions.
  setText(li.querySelector(".seq"), `#${clip.seq}`);
}

/** What a screen reader is told of the clips that arrived ("New clip at 0:00:02: big play"). */
function tellClips(added) {
  if (added.length > 1) return `${added.length.toLocaleString("en")} new clips`;
  const [clip] = added;
  return `New clip at ${hms(clip.offset_ms)}${clip.note ? `: ${clip.note}` : ""}`;
}

const clipNews = new NewsBatch(ui.clipNews, tellClips, { gatherMs: CLIP_NEWS_GATHER_MS, gapMs: CLIP_NEWS_GAP_MS });

function renderFeed() {
  const latest = [...feedClips.values()].sort((a, b) => b.seq - a.seq).slice(0, FEED_LIMIT);
  if (feedClips.size > FEED_LIMIT * 4) {
    feedClips.clear(); // a raid: only the newest are kept (the feed shows FEED_LIMIT)
    for (const clip of latest) feedClips.set(clip.clip_id, clip);
  }
  reconcile(ui.feed, latest, (clip) => clip.clip_id, feedItem, updateFeedItem);
  ui.feedEmpty.hidden = latest.length > 0;
}

// --- review ---------------------------------------------------------------------------------

// Display names and user ids by viewer tag, from the owner's review routes: a live clip_added
// names nobody (every subscriber of the log gets it), so a viewer already seen keeps their name
// on new clips, and their clips the moderation buttons, which need the user id.
const namesByTag = new Map();
const viewersByTag = new Map();

/** What the owner's routes say of `clip`'s viewer, kept for their live clips. */
function learnViewer(clip) {
  if (clip.viewer_name) namesByTag.set(clip.viewer_tag, clip.viewer_name);
  if (typeof clip.submitted_by === "string" && clip.submitted_by) viewersByTag.set(clip.viewer_tag, clip.submitted_by);
}

/** The user id of `clip`'s viewer (what Block viewer and Clear their clips act on), or "" unknown yet. */
function viewerOf(clip) {
  return (typeof clip.submitted_by === "string" && clip.submitted_by) || viewersByTag.get(clip.viewer_tag) || "";
}

/**
 * Who clipped: the viewer's current display name (the review route's viewer_name), else their
 * short viewer tag (a user id means nothing to a person). Shown as text, never as markup.
 */
function whoClipped(clip) {
  const named = typeof clip.viewer_name === "string" && clip.viewer_name;
  return (named ? clip.viewer_name : namesByTag.get(clip.viewer_tag)) || `viewer ${clip.viewer_tag}`;
}

// Note edits in progress, by clip id, with what has been typed so far. The review is redrawn
// whenever a clip or the moments change (another viewer's clip, a mark); every clip keeps its
// node across redraws (keyed.js), so an open edit keeps its text, its caret and the focus.
// They are kept in localStorage too (keepEdits), so a reload or a closed tab loses no note
// half typed: the next load of the dashboard opens those editors again with their text.
const editing = new Map();
const NOTE_MAX = 100;
const NOTE_MAX_BYTES = 2000; // behind the 100 characters (handlers/streams/payloads.py)

function editsKey() {
  return `sessionhub.stream-note-edits.${sessionId}`;
}

function keepEdits() {
  try {
    // A clip deleted meanwhile takes its unsaved note with it (forgetEdit, at its event); one
    // of a page not loaded yet is kept.
    const kept = [...editing];
    if (kept.length) localStorage.setItem(editsKey(), JSON.stringify(kept));
    else localStorage.removeItem(editsKey());
  } catch {
    // storage full or off: the edits live as long as the page
  }
}

function restoreEdits() {
  try {
    const kept = JSON.parse(localStorage.getItem(editsKey()) ?? "[]");
    if (!Array.isArray(kept)) return;
    for (const entry of kept) {
      const [id, text] = Array.isArray(entry) ? entry : [];
      if (typeof id === "string" && typeof text === "string") editing.set(id, text.slice(0, NOTE_MAX));
    }
  } catch {
    // unreadable: nothing to restore
  }
}

// A clip's node: built once, then brought up to date by updateClip. Its buttons look the clip
// up when pressed, so a live change (a mark from another tab) is what they act on.
function clipItem() {
  const li = el("li", "review-clip");
  const current = () => clips.get(li.dataset.clipId);
  const toggle = el("button", "button small clip-toggle");
  toggle.type = "button";
  toggle.addEventListener("click", () => {
    const clip = current();
    if (clip) update(clip.clip_id, { clipped: !clip.clipped });
  });
  const edit = el("button", "button small clip-edit", "Edit note");
  edit.type = "button";
  edit.addEventListener("click", () => {
    const clip = current();
    if (clip) editNote(li, clip);
  });
  const remove = el("button", "button small danger clip-delete", "Delete");
  remove.type = "button";
  remove.addEventListener("click", () => {
    const clip = current();
    if (clip) deleteClip(remove, clip);
  });
  li.append(el("span", "offset"), el("span", "note"), el("span", "muted who"), toggle, edit, remove);
  return li;
}

function updateClip(li, clip) {
  // A live clip redraws the whole review (once a frame at a raid): a line whose clip, name and
  // editor are as last drawn is left alone. Rewriting every line's texts and buttons' labels
  // made each frame of a burst over 3,000 listed clips a 60-90 ms task.
  const moderated = viewerOf(clip) !== "";
  if (!moderated) askViewer(clip);
  const drawn = editing.has(clip.clip_id)
    ? null
    : JSON.stringify([clip.clip_id, clip.offset_ms, clip.clipped, clip.note, whoClipped(clip), moderated]);
  if (drawn !== null && li.drawnAs === drawn) return;
  li.drawnAs = drawn;
  li.dataset.clipId = clip.clip_id;
  li.dataset.clipped = String(clip.clipped);
  setText(li.querySelector(".offset"), hms(clip.offset_ms));
  const note = li.querySelector(".note, .note-edit");
  if (editing.has(clip.clip_id)) {
    if (!note.matches(".note-edit")) note.replaceWith(noteForm(clip));
  } else if (note.matches(".note-edit")) note.replaceWith(el("span", "note", clip.note));
  else setText(note, clip.note);
  setText(li.querySelector(".who"), whoClipped(clip));
  setText(li.querySelector(".clip-toggle"), clip.clipped ? "Unmark" : "Mark clipped");
  nameClipButtons(li, clip);
  // Moderation needs the viewer's user id, which a live event does not carry: offered as soon as
  // it is known (a viewer seen before at once, another once learnViewers has read it).
  if (moderated && !li.querySelector(".clip-block")) {
    const viewer = () => clips.get(li.dataset.clipId);
    const block = el("button", "button small danger clip-block", "Block viewer");
    block.type = "button";
    block.addEventListener("click", () => {
      const now = viewer();
      if (now && viewerOf(now)) moderate("stream_block_viewer", viewerOf(now), now);
    });
    const clear = el("button", "button small danger clip-clear", "Clear their clips");
    clear.type = "button";
    clear.addEventListener("click", () => {
      const now = viewer();
      if (now && viewerOf(now)) moderate("clip_clear_viewer", viewerOf(now), now, clear);
    });
    li.append(block, clear);
    nameClipButtons(li, clip);
  }
}

// --- the viewers of live clips -----------------------------------------------------------------

// A live clip of a viewer not seen before names no user id (events never do): it is read from the
// owner's review page that starts at the clip (a cursor just before every clip of its ms), a page
// of up to VIEWER_PAGE clips of the segment from there, so a raid of new viewers costs a request
// per VIEWER_PAGE clips, one at a time, VIEWERS_DELAY_MS after the clips that ask for it.
const VIEWER_PAGE = 200; // SESSIONHUB_LIST_LIMIT's default: the server answers fewer past its own
const VIEWERS_DELAY_MS = 250;
const BEFORE_EVERY_ID = "00000000-0000-0000-0000-000000000000";
const viewersAsked = new Set(); // clips whose page has been read: one still unknown is not asked again
let viewersTimer = null;
let viewersLoading = false;

function askViewer(clip) {
  if (viewersAsked.has(clip.clip_id) || viewersTimer !== null || viewersLoading) return;
  viewersTimer = setTimeout(learnViewers, VIEWERS_DELAY_MS);
}

/** Per segment, the first listed clip (review order) whose viewer is unknown and not asked for yet. */
function unknownViewers() {
  const first = new Map();
  for (const clip of clips.values()) {
    if (viewerOf(clip) || viewersAsked.has(clip.clip_id)) continue;
    const seen = first.get(clip.segment_index);
    if (!seen || reviewOrder(clip, seen) < 0) first.set(clip.segment_index, clip);
  }
  return first;
}

async function learnViewers() {
  viewersTimer = null;
  viewersLoading = true;
  let more = true;
  try {
    for (const [index, from] of unknownViewers()) {
      const query = new URLSearchParams({
        segment: String(index),
        after: `${from.offset_ms}.${BEFORE_EVERY_ID}`,
        limit: String(VIEWER_PAGE),
      });
      const body = await api(`/api/streams/${sessionId}/review/clips?${query}`);
      viewersAsked.add(from.clip_id);
      for (const paged of body.clips) {
        learnViewer(paged);
        const listed = clips.get(paged.clip_id);
        if (listed)
          clips.set(paged.clip_id, { ...listed, submitted_by: paged.submitted_by, viewer_name: paged.viewer_name });
      }
    }
  } catch {
    more = false; // unreachable now: the next live clip, or a reload, asks again
  } finally {
    viewersLoading = false;
  }
  scheduleRender();
  if (more && unknownViewers().size) viewersTimer = setTimeout(learnViewers, VIEWERS_DELAY_MS);
}

// --- deleting a clip ---------------------------------------------------------------------------

// The clip whose Delete (or Clear their clips) had the focus as it was deleted, and its neighbours
// as last drawn: once its line is gone, the focus goes to the nearest following clip still listed
// (the same button, else its Delete), else the nearest preceding one, else the segment's clip list
// (its heading), instead of dropping to the page. A clear removes the viewer's other clips with
// it, so the neighbours are every line around it, nearest first.
let deleteFocus = null; // {clipId, button, next: [key], previous: [key], index}

function focusOnDelete(button, clip) {
  if (button !== document.activeElement) return;
  const kind = button.matches(".clip-clear") ? ".clip-clear" : ".clip-delete";
  deleteFocus = { clipId: clip.clip_id, button: kind, next: [], previous: [], index: clip.segment_index };
}

async function deleteClip(button, clip) {
  const who = whoClipped(clip);
  if (!window.confirm(`Delete the clip at ${hms(clip.offset_ms)} by ${who}? This cannot be undone.`)) return;
  const li = button.closest(".review-clip");
  focusOnDelete(button, clip);
  // The focus goes on to a neighbour's Delete, which a screen reader says: not that the clip went.
  if (!(await update(clip.clip_id, null, "Clip deleted.")) && li.isConnected) keepFocusOn(clip);
}

/** The deletion was refused: the clip stays, and so does the focus. */
function keepFocusOn(clip) {
  if (deleteFocus?.clipId === clip.clip_id) deleteFocus = null;
}

function clipLine(clipId) {
  return clipId ? ui.segments.querySelector(`.review-clip[data-key="${CSS.escape(clipId)}"]`) : null;
}

/** Before a drawing: the deleted clip's neighbours, while its line is still there. */
function noteDeleteNeighbours() {
  const li = deleteFocus && clipLine(deleteFocus.clipId);
  if (!li) return;
  deleteFocus.next = [];
  for (let line = li.nextElementSibling; line; line = line.nextElementSibling) deleteFocus.next.push(line.dataset.key);
  deleteFocus.previous = [];
  for (let line = li.previousElementSibling; line; line = line.previousElementSibling) {
    deleteFocus.previous.push(line.dataset.key);
  }
}

/** After a drawing: the deleted clip's line gone, its Delete's focus goes to a neighbour's. */
function settleDeleteFocus() {
  if (!deleteFocus || clipLine(deleteFocus.clipId)) return;
  const { button, next, previous, index } = deleteFocus;
  deleteFocus = null;
  const active = document.activeElement;
  if (active !== null && active !== document.body && active.isConnected) return; // they moved on
  const line = [...next, ...previous].map(clipLine).find((found) => found);
  const section = ui.segments.querySelector(`.segment[data-index="${index}"]`);
  const target = line?.querySelector(button) ?? line?.querySelector(".clip-delete");
  (target ?? section?.querySelector(".clips-title"))?.focus();
}

async function moderate(event, viewer, clip, button = null) {
  const who = whoClipped(clip);
  if (event === "clip_clear_viewer" && !window.confirm(`Remove every clip of ${who}?`)) return;
  if (button) focusOnDelete(button, clip);
  const offline = sayIfOffline("it");
  try {
    const payload = { session_id: sessionId, user_id: viewer };
    const { ack, resent } = await sendAgainOnLoss(event, payload, "It");
    // The name is the viewer's own text: isolated, a right-to-left one keeps the words around it.
    if (event === "stream_block_viewer") notice([bdi(who), " may no longer clip this stream."]);
    else if (resent)
      notice(["Removed the clips of ", bdi(who), "."]); // the first send's count was lost
    else notice([`Removed ${ack.removed} clip${ack.removed === 1 ? "" : "s"} of `, bdi(who), "."]);
  } catch (err) {
    keepFocusOn(clip);
    notice(["Could not moderate ", bdi(who), `: ${err.message}`], "error");
  } finally {
    if (offline) owed -= 1;
  }
}

/**
 * Every clip has the same buttons: for a screen reader each names its clip ("Delete, clip at
 * 0:01:05 by Ada"), the visible words first so that a voice command "click Delete" finds them.
 */
function nameClipButtons(li, clip) {
  const which = `clip at ${hms(clip.offset_ms)} by ${whoClipped(clip)}`;
  for (const button of li.querySelectorAll(".clip-toggle, .clip-edit, .clip-delete")) {
    button.setAttribute("aria-label", `${button.textContent}, ${which}`);
  }
  for (const button of li.querySelectorAll(".clip-block, .clip-clear")) {
    button.setAttribute("aria-label", `${button.textContent}, ${whoClipped(clip)}`);
  }
}

/** Close a clip's note editor (saved or cancelled) and give the focus back to its Edit button. */
function closeEdit(clipId) {
  editing.delete(clipId);
  keepEdits();
  renderReview();
  const item = ui.segments.querySelector(`.review-clip[data-key="${CSS.escape(clipId)}"]`);
  item?.querySelector(".clip-edit")?.focus();
}

function editNote(li, clip) {
  if (!editing.has(clip.clip_id)) {
    editing.set(clip.clip_id, clip.note);
    keepEdits();
    li.querySelector(".note").replaceWith(noteForm(clip));
    li.drawnAs = null; // its line is no longer as last drawn: the next drawing looks at it again
  }
  li.querySelector(".note-edit input").focus();
}

function noteForm(clip) {
  const form = el("form", "note-edit");
  const input = el("input");
  input.type = "text";
  input.enterKeyHint = "done"; // Enter saves the note (the form's submit)
  input.value = editing.get(clip.clip_id) ?? clip.note;
  // 100 characters as seen, as the server counts a note: maxLength counted UTF-16 units, and cut a
  // note of 100 emoji at 50 (audit "localeworld").
  limitText(input, { chars: NOTE_MAX, bytes: NOTE_MAX_BYTES, what: "A note", say: (text) => notice(text) });
  input.setAttribute("aria-label", "Note");
  input.addEventListener("input", () => {
    editing.set(clip.clip_id, input.value);
    keepEdits();
  });
  const save = el("button", "button small primary", "Save");
  save.type = "submit";
  // Leaving without saving: the stored note is shown again, and what was typed is dropped.
  const cancel = el("button", "button small", "Cancel");
  cancel.type = "button";
  cancel.addEventListener("click", () => closeEdit(clip.clip_id));
  // Inline, not a flex row: on a phone the buttons wrap under the input instead of overflowing.
  form.append(input, " ", save, " ", cancel);
  form.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.isComposing) return; // an IME's Escape ends its composition only
    event.preventDefault();
    closeEdit(clip.clip_id);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const note = input.value;
    if (!(await update(clip.clip_id, { note }))) return; // refused: the edit stays open
    const stored = clips.get(clip.clip_id);
    if (stored) clips.set(clip.clip_id, { ...stored, note }); // its clip_updated follows
    closeEdit(clip.clip_id);
  });
  return form;
}

async function update(clipId, change, done = "") {
  const offline = sayIfOffline("the change");
  try {
    const clip = { session_id: sessionId, clip_id: clipId };
    if (change === null) await sendAgainOnLoss("clip_delete", clip, "The deletion", (err) => err.code === "not_found");
    else await sendAgainOnLoss("clip_update", { ...clip, ...change }, "The change");
    if (offline) notice(`Back online: ${done ? done.charAt(0).toLowerCase() + done.slice(1) : "the change is done."}`);
    else if (done) notice(done);
    return true;
  } catch (err) {
    notice(`Could not change the clip: ${err.message}`, "error");
    return false;
  } finally {
    if (offline) owed -= 1;
  }
}

// A moment's notes shown until the streamer asks for all of them: a raid's one moment may hold
// thousands (one row of them all took 18-95 ms to draw and was an unreadable wall on a phone).
const NOTES_SHOWN = 5;
// The moments whose notes are all shown, by their first clip (the server groups moments anew
// each time, and a live clip may add to one: it stays open).
const notesOpen = new Set();

function momentItem() {
  const li = el("li", "moment");
  li.addEventListener("click", (event) => {
    if (!event.target.closest?.(".notes-toggle")) return;
    const key = li.dataset.moment;
    if (notesOpen.has(key)) notesOpen.delete(key);
    else notesOpen.add(key);
    // Its notes beyond the first ones are asked for now (they come with the moments, drawn in place).
    if (notesOpen.has(key) && li.moment.notes.length < noteCount(li.moment)) regroupNow();
    drawMoment(li, li.moment);
    li.querySelector(".notes-toggle")?.focus(); // the pressed toggle was redrawn: the focus stays on it
  });
  return li;
}

function noteCount(moment) {
  return moment.note_count ?? moment.notes.length;
}

function regroupNow() {
  clearTimeout(momentsTimer);
  momentsAsked += 1;
  ui.segments.dataset.moments = "pending";
  loadMoments();
}

function momentKey(moment) {
  return moment.clip_ids?.[0] ?? `${moment.segment_index}:${moment.first_offset_ms}`;
}

function updateMoment(li, moment) {
  li.moment = moment; // what its toggle redraws
  li.dataset.moment = momentKey(moment); // not dataset.key: reconcile keeps the line by that (its place)
  drawMoment(li, moment);
}

function drawMoment(li, moment) {
  const open = notesOpen.has(li.dataset.moment);
  // Drawn again only when it changed: a moment's line is rebuilt, never its list.
  const drawn = `${open ? "open" : "shut"}:${JSON.stringify(moment)}`;
  if (li.dataset.drawn === drawn) return;
  const focused = li.contains(document.activeElement) && document.activeElement.matches(".notes-toggle");
  li.dataset.drawn = drawn;
  li.dataset.count = String(moment.count);
  // Separators in the text itself, not only in CSS: copied or read aloud, the line must not
  // run the timestamp into the count ("0:00:032 clicks").
  li.replaceChildren(
    el("span", "offset", hms(moment.first_offset_ms)),
    " · ",
    el("span", "count", `${moment.count} click${moment.count === 1 ? "" : "s"}`),
    " · ",
    el("span", "muted", `median ${hms(moment.median_offset_ms)}`),
  );
  const { notes } = moment;
  const total = noteCount(moment);
  if (notes.length) li.append(" · ", notesOf(open ? notes : notes.slice(0, NOTES_SHOWN)));
  if (total > NOTES_SHOWN) {
    const toggle = el(
      "button",
      "link-button notes-toggle",
      open ? "Show fewer notes" : `Show all ${total.toLocaleString("en-US")} notes`,
    );
    toggle.type = "button";
    toggle.setAttribute("aria-expanded", String(open));
    li.append(toggle);
    if (focused) toggle.focus(); // a live redraw keeps a keyboard user on the toggle
  }
}

/**
 * A moment's notes, each in its own bidi isolate: a right-to-left note ("שלום") must not pull the
 * separator and the next note's leading digits into its run ("3 / שלום cats" for "שלום / 3 cats").
 */
function notesOf(notes) {
  const span = el("span", "note");
  for (const [i, note] of notes.entries()) span.append(...(i ? [" / "] : []), el("bdi", "", note));
  return span;
}

function segmentItem() {
  const section = el("section", "segment");
  const more = el("button", "button load-more");
  more.type = "button";
  more.addEventListener("click", () => loadPage(Number(section.dataset.index), { focusNew: true }));
  const shown = el("p", "muted clips-shown");
  shown.setAttribute("role", "status"); // "Showing 200 of 1,250 clips" is said once a page is in
  const title = el("h4", "clips-title");
  title.tabIndex = -1; // where the focus goes when a page brought nothing left to read
  section.append(
    el("h3"),
    el("p", "muted segment-length"),
    el("h4", "", "Moments"),
    el("ol", "moment-list"),
    title,
    el("ol", "clip-list"),
    shown,
    more,
  );
  return section;
}

const count = (n) => n.toLocaleString("en-US");

/** A segment's paging: its clip count and how far its clips are paged in, and the button for more. */
function updatePaging(section, segment, listed, state) {
  const total = state.count;
  setText(section.querySelector(".clips-title"), `Clips (${count(total)})`);
  const shown = section.querySelector(".clips-shown");
  setText(shown, state.complete ? "" : `Showing ${count(listed)} of ${count(total)} clips`);
  shown.hidden = state.complete;
  const more = section.querySelector(".load-more");
  more.hidden = state.complete;
  const next = Math.min(PAGE_SIZE, Math.max(total - listed, 1));
  const words = state.loading ? "Loading clips…" : listed === 0 ? "Show clips" : `Show ${count(next)} more clips`;
  setText(more, words);
  // The visible words first (a voice command "click Show clips" finds it), then whose clips.
  more.setAttribute("aria-label", `${words}, segment ${segment.index}`);
  more.setAttribute("aria-busy", String(state.loading));
  more.disabled = state.loading;
}

function updateSegment(section, { segment, clipsOf, state }) {
  section.dataset.index = String(segment.index);
  setText(section.querySelector("h3"), `Segment ${segment.index}`);
  setText(
    section.querySelector(".segment-length"),
    `length ${segment.length_ms == null ? "open" : hms(segment.length_ms)}`,
  );
  // Moments have no id of their own (the server groups them anew each time): kept by place.
  const ofSegment = moments.filter((m) => m.segment_index === segment.index);
  reconcile(section.querySelector(".moment-list"), ofSegment, (_, index) => index, momentItem, updateMoment);
  reconcile(section.querySelector(".clip-list"), clipsOf, (c) => c.clip_id, clipItem, updateClip);
  updatePaging(section, segment, clipsOf.length, state);
}

/** The review's order, as the server pages it: offset, then clip id. */
function reviewOrder(a, b) {
  return a.offset_ms - b.offset_ms || (a.clip_id < b.clip_id ? -1 : a.clip_id > b.clip_id ? 1 : 0);
}

function renderReview() {
  const bySegment = new Map();
  for (const clip of clips.values()) {
    if (!bySegment.has(clip.segment_index)) bySegment.set(clip.segment_index, []);
    bySegment.get(clip.segment_index).push(clip);
  }
  const segments = (session.segments ?? []).map((segment) => {
    const clipsOf = (bySegment.get(segment.index) ?? []).sort(reviewOrder);
    const state = paging.get(segment.index) ?? { count: clipsOf.length, complete: true, loading: false };
    return { segment, clipsOf, state };
  });
  noteDeleteNeighbours();
  reconcile(ui.segments, segments, ({ segment }) => segment.index, segmentItem, updateSegment);
  if (segments.length === 0) ui.segments.append(el("p", "muted", "Start the stream to open its first segment."));
  settleDeleteFocus();
  renderFeed();
}

// data-moments on #segments: "pending" while a regrouping is asked for or under way,
// "settled" once the last one asked for is drawn (what a test or a script can wait on).
let momentsAsked = 0;
function scheduleMoments() {
  clearTimeout(momentsTimer);
  momentsAsked += 1;
  ui.segments.dataset.moments = "pending";
  // Grouping reads every clip of the stream on the server: a big stream's live clips regroup
  // less often (a 200,000-clip stream every 10 s, not at each pause of 0.4 s in a raid).
  const delayMs = Math.min(10_000, Math.max(MOMENTS_DELAY_MS, (session?.clip_count ?? 0) / 20));
  momentsTimer = setTimeout(loadMoments, delayMs);
}

// The moments as the server groups them now; null (and a notice) when it could not.
async function fetchMoments() {
  const windowS = Math.min(600, Math.max(1, Number.parseInt(ui.window.value, 10) || 10));
  try {
    // A moment's first notes and its first clip id (its key) unless one is open: a raid's one
    // moment is thousands of each, and a big stream's every moment was in each answer.
    const capped = notesOpen.size === 0 ? `&notes=${NOTES_SHOWN}&ids=1` : "";
    const body = await api(`/api/streams/${sessionId}/moments?window_s=${windowS}&sort=${ui.sort.value}${capped}`);
    return body.moments;
  } catch (err) {
    notice(`Could not group moments: ${err.message}`, "error");
    return null;
  }
}

async function loadMoments() {
  const asked = momentsAsked;
  const fresh = await fetchMoments();
  if (fresh !== null) {
    moments = fresh;
    momentsDrawn += 1;
    renderReview();
  }
  if (asked === momentsAsked) ui.segments.dataset.moments = "settled";
}

async function loadReview() {
  reviewOffset = null;
  buffered = [];
  ui.segments.dataset.review = "loading";
  // The summary (each segment's count, the last clips) and the moments come together, drawn
  // together: drawn later, they would push the clips down under a finger about to tap one. But
  // grouping reads every clip of the stream (seconds on a 200,000-clip one, against ms for the
  // summary): after MOMENTS_FIRST_WAIT_MS the review is drawn without them, and they when they come.
  const asked = fetchMoments();
  const late = Symbol("late");
  const waited = new Promise((resolve) => setTimeout(() => resolve(late), MOMENTS_FIRST_WAIT_MS));
  const [body, fresh] = await Promise.all([api(`/api/streams/${sessionId}/review`), Promise.race([asked, waited])]);
  if (fresh === late) {
    const drawnBefore = momentsDrawn;
    asked.then((grouped) => {
      if (grouped === null || momentsDrawn !== drawnBefore) return; // a newer grouping is drawn
      moments = grouped;
      momentsDrawn += 1;
      scheduleRender();
    });
  } else if (fresh !== null) moments = fresh;
  clips.clear();
  feedClips.clear();
  namesByTag.clear();
  viewersByTag.clear();
  viewersAsked.clear();
  paging.clear();
  for (const segment of body.segments) {
    paging.set(segment.index, { count: segment.clip_count, frontier: null, complete: segment.clip_count === 0 });
  }
  for (const clip of body.last) {
    feedClips.set(clip.clip_id, clip);
    learnViewer(clip);
  }
  session = { ...session, ...body.session };
  reviewOffset = body.offset;
  const later = buffered.filter((event) => event.offset > reviewOffset);
  buffered = [];
  renderHeader();
  renderReview();
  for (const event of later) apply(event);
  // The first page of the first segments: a bounded first load on any stream; more on request.
  const first = [...paging.keys()].slice(0, FIRST_SEGMENTS);
  await Promise.all(first.map((index) => loadPage(index)));
  ui.segments.dataset.review = "settled";
  // Asked for beside the clips, the moments may miss a clip that came between the two answers:
  // grouped again once the page is drawn (the same moments redraw in place).
  scheduleMoments();
}

/** `fetcher()`'s answer, and the live events received while it was on its way. */
async function withEvents(fetcher) {
  const events = [];
  inFlight.add(events);
  try {
    return { body: await fetcher(), events };
  } finally {
    inFlight.delete(events);
  }
}

/** The next page of segment `index`'s clips, after the last one paged in. */
async function loadPage(index, { focusNew = false } = {}) {
  const state = paging.get(index);
  if (!state || state.loading || state.complete) return;
  state.loading = true;
  scheduleRender();
  // Pages of the server's default size (100, less when SESSIONHUB_LIST_LIMIT is lower).
  const query = new URLSearchParams({ segment: String(index) });
  if (state.frontier) query.set("after", `${state.frontier[0]}.${state.frontier[1]}`);
  let answer;
  try {
    answer = await withEvents(() => api(`/api/streams/${sessionId}/review/clips?${query}`));
  } catch (err) {
    state.loading = false;
    notice(`Could not load the clips: ${err.message}`, "error");
    scheduleRender();
    return;
  }
  if (paging.get(index) !== state) return; // the review was loaded again meanwhile
  const { body, events } = answer;
  state.loading = false;
  for (const clip of body.clips) {
    clips.set(clip.clip_id, clip);
    learnViewer(clip);
  }
  if (body.next === null) state.complete = true;
  else {
    const dot = body.next.indexOf(".");
    state.frontier = [Number(body.next.slice(0, dot)), body.next.slice(dot + 1)];
  }
  // The page is as of its offset: the events after it (received while it came) apply again,
  // their counts on the page's own count of the segment.
  state.count = body.segment_clip_count;
  for (const event of events) if (event.offset > body.offset) applyToClips(event, index);
  renderReview();
  if (focusNew) focusPaged(index, body.clips);
}

/** After a page asked for by its button: the focus goes to its first clip (read on from there). */
function focusPaged(index, paged) {
  const section = ui.segments.querySelector(`.segment[data-index="${index}"]`);
  const first = paged.find((clip) => clips.has(clip.clip_id));
  const li = first && section?.querySelector(`.review-clip[data-key="${CSS.escape(first.clip_id)}"]`);
  const more = section?.querySelector(".load-more");
  const target = li ?? (more && !more.hidden ? more : section?.querySelector(".clips-title"));
  if (!target) return;
  if (target === li) li.tabIndex = -1;
  target.focus();
}

// Counts of segments no event names (a viewer's clips cleared at once): read again.
let countsTimer = null;
function scheduleCounts() {
  clearTimeout(countsTimer);
  countsTimer = setTimeout(refreshCounts, MOMENTS_DELAY_MS);
}

async function refreshCounts() {
  let answer;
  try {
    answer = await withEvents(() => api(`/api/streams/${sessionId}/review?last=0`));
  } catch (err) {
    notice(`Could not count the clips: ${err.message}`, "error");
    return;
  }
  const { body, events } = answer;
  for (const segment of body.segments) {
    const state = paging.get(segment.index);
    if (state) state.count = segment.clip_count;
  }
  for (const event of events) if (event.offset > body.offset) applyToClips(event, null);
  scheduleRender();
}

/** Is `clip`'s place in its segment among the clips paged in (listed live), or past them? */
function pagedIn(clip) {
  const state = paging.get(clip.segment_index);
  if (!state) return false;
  if (state.complete) return true;
  const [offsetMs, clipId] = state.frontier ?? [-1, ""];
  return clip.offset_ms < offsetMs || (clip.offset_ms === offsetMs && clip.clip_id <= clipId);
}

function adjustCount(segmentIndex, by, only) {
  const state = paging.get(segmentIndex);
  if (state && (only === null || only === segmentIndex)) state.count = Math.max(0, state.count + by);
}

function forgetEdit(clipId) {
  if (editing.delete(clipId)) keepEdits();
}

/**
 * A clip event on the review's clips and counts: counted in the segment it names (all of them,
 * or `only` that one), listed when its place is paged in. Applying one twice lists the same.
 */
function applyToClips(event, only) {
  const data = event.data ?? {};
  switch (event.type) {
    case "clip_added":
      if (pagedIn(data)) clips.set(data.clip_id, { ...clips.get(data.clip_id), ...data });
      adjustCount(data.segment_index, 1, only);
      break;
    case "clip_updated": {
      const clip = clips.get(data.clip_id);
      if (clip) clips.set(data.clip_id, { ...clip, clipped: data.clipped, note: data.note });
      break;
    }
    case "clip_removed":
      clips.delete(data.clip_id);
      forgetEdit(data.clip_id);
      adjustCount(data.segment_index, -1, only);
      break;
    case "clips_cleared": {
      let unknown = false;
      for (const id of data.clip_ids) {
        const clip = clips.get(id);
        if (clip) adjustCount(clip.segment_index, -1, only);
        else unknown = true; // in a page not loaded: which segment is not said
        clips.delete(id);
        forgetEdit(id);
      }
      if (unknown) scheduleCounts();
      break;
    }
    default:
  }
}

// --- live events ----------------------------------------------------------------------------

function apply(event) {
  const data = event.data ?? {};
  switch (event.type) {
    case "stream_state":
      session = { ...session, state: data.state };
      break;
    case "segment_opened":
      // Applied again when the review's session already had it (read after the review's position).
      session = {
        ...session,
        segments: [...(session.segments ?? []).filter((s) => s.index !== data.segment.index), data.segment],
      };
      if (!paging.has(data.segment.index)) paging.set(data.segment.index, { count: 0, frontier: null, complete: true });
      break;
    case "segment_closed":
      session = {
        ...session,
        segments: (session.segments ?? []).map((s) => (s.index === data.segment.index ? data.segment : s)),
      };
      break;
    case "clip_added":
      applyToClips(event, null);
      feedClips.set(data.clip_id, { ...feedClips.get(data.clip_id), ...data });
      session = { ...session, clip_count: data.count };
      scheduleMoments();
      break;
    case "clip_updated": {
      applyToClips(event, null);
      const fed = feedClips.get(data.clip_id);
      if (fed) feedClips.set(data.clip_id, { ...fed, clipped: data.clipped, note: data.note });
      session = { ...session, clipped_count: data.clipped_count };
      scheduleMoments();
      break;
    }
    case "clip_removed":
      applyToClips(event, null);
      feedClips.delete(data.clip_id);
      session = { ...session, clip_count: data.count, clipped_count: data.clipped_count };
      scheduleMoments();
      break;
    case "clips_cleared":
      applyToClips(event, null);
      for (const id of data.clip_ids) feedClips.delete(id);
      session = { ...session, clip_count: data.count, clipped_count: data.clipped_count };
      scheduleMoments();
      break;
    default:
      return;
  }
  renderHeader();
  scheduleRender();
}

// At a raid, hundreds of clips arrive in a second: redraw the review once per frame at most.
let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderReview();
  });
}

/**
 * The stream is gone (its deletion's event, or a reconnect answered 'no such session'). The guest
 * sweep deletes a forgotten guest's streams as an operator's deletion does, its event naming the
 * sweep as the actor (`retention:<user id>`, handlers/guest_retention.py): said as such, not as
 * a deletion "on the server" a person read as someone else's doing (audit "returning" F2).
 */
function deleted(event = null) {
  subscription?.close();
  clearTimeout(momentsTimer);
  if (String(event?.data?.actor ?? "").startsWith("retention:")) {
    showError(
      "Stream deleted",
      `No device of this guest came back ${keptWithin()}, so the guest was forgotten, and this stream was deleted with it, with its clips.`,
      { href: "/", text: "Back to the start page" },
    );
    return;
  }
  showError("Stream deleted", "This stream session has been deleted, with its clips.", {
    href: "/streams",
    text: "Back to my streams",
  });
}

/** "within 30 days": how long a guest is kept, as the identity panel last said it. */
function keptWithin() {
  const seconds = knownIdentity()?.kept_for_s;
  if (typeof seconds !== "number") return "within the time guests are kept";
  return `within ${durationWords(seconds)}`;
}

/**
 * Someone else's dashboard: maybe the streamer's own, opened on a browser where they are not
 * signed in (a bookmark on a new laptop, a phone whose site data was cleared), which made a guest
 * of its own. Their way back is said, with the passkey sign-in when the server offers it.
 */
function notYours() {
  showError(
    "This is not your stream",
    "Only the streamer can open its dashboard. If it is yours, sign in here with a device link made on a device where you are signed in, or with a passkey.",
    { href: `/watch/${encodeURIComponent(sessionId)}`, text: "Open the viewer page instead" },
  );
  ui.errorSignIn.hidden = false;
  ui.errorPasskey.addEventListener("click", signInHere);
  passkeysOffered().then((on) => {
    ui.errorPasskey.hidden = !on;
  });
}

async function signInHere() {
  await whileBusy([ui.errorPasskey], async () => {
    ui.errorSignInStatus.textContent = "";
    try {
      await signInWithPasskey();
      location.reload(); // as its streamer, the dashboard opens
    } catch (err) {
      ui.errorSignInStatus.textContent = passkeyRefusal(err);
    }
  });
}

/** A passkey sign-in that failed, in the identity panel's words (web/js/identity.js). */
function passkeyRefusal(err) {
  const reason = err?.details?.reason;
  if (err?.name === "NotAllowedError" || err?.name === "AbortError") return "No passkey was chosen.";
  if (reason === "off") return "Passkeys are not set up on this server.";
  if (reason === "unknown")
    return "This passkey is not known here any more (it was removed); try another or a device link.";
  if (reason === "refused" || reason === "challenge") return "This passkey was refused; try another or a device link.";
  if (err?.code) return err.message; // the server's own words (unreachable, busy)
  return "This browser could not use a passkey here; try a device link.";
}

function onEvent(event) {
  if (event.type === "session_deleted") {
    // An operator deleted the stream (DELETE /admin/sessions/<id>): the dashboard went on showing
    // it live, every button answered 'no such session'.
    deleted(event);
    return;
  }
  orphanBanner.edited(); // a logged change (a state action, a viewer's clip): active again
  // Told once each, as it comes (a reconnect's replay included): not the clips the page opens with.
  if (event.type === "clip_added") clipNews.add(event.data ?? {});
  for (const events of inFlight) events.push(event);
  if (reviewOffset === null) buffered.push(event);
  else if (event.offset > reviewOffset) apply(event);
}

function onSnapshot(snapshot) {
  session = { ...session, ...snapshot };
  renderHeader();
  loadReview().catch((err) => notice(`Could not load the clips: ${err.message}`, "error"));
}

// --- export ---------------------------------------------------------------------------------

// The title's own letters (`filename*`, RFC 6266) when the server sent them, else the ASCII name.
function filenameOf(response) {
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const encoded = /filename\*=UTF-8''([^;\s]+)/i.exec(disposition);
  if (encoded) {
    try {
      return decodeURIComponent(encoded[1]);
    } catch {
      // not percent-encoded UTF-8: the ASCII name below
    }
  }
  const match = /filename="([^"]+)"/.exec(disposition);
  return match ? match[1] : "export.txt";
}

// The export options each format uses (handlers/streams/export.py): a frame rate for the editors'
// timecodes, a timeline for everything placed on the VOD (chapters too). The others ignore them:
// not shown for those, nor sent.
const EXPORT_OPTIONS = {
  fps: new Set(["premiere", "resolve", "edl"]),
  timeline: new Set(["youtube", "premiere", "resolve", "edl"]),
};

function showExportOptions() {
  const chosen = $("format-select").value;
  for (const [option, formats] of Object.entries(EXPORT_OPTIONS)) $(`${option}-field`).hidden = !formats.has(chosen);
}

async function onExport(event) {
  event.preventDefault();
  ui.exportError.hidden = true;
  const chosen = $("format-select").value;
  const query = new URLSearchParams({
    format: chosen === "csv-excel" ? "csv" : chosen,
    bom: chosen === "csv-excel" ? "1" : "0",
    of: $("of-select").value,
    only: $("only-select").value,
    window_s: String(Math.min(600, Math.max(1, Number.parseInt(ui.window.value, 10) || 10))),
    sort: ui.sort.value,
  });
  for (const [option, formats] of Object.entries(EXPORT_OPTIONS)) {
    if (formats.has(chosen)) query.set(option, $(`${option}-select`).value);
  }
  // A long export on a slow network shows it is under way, and is not asked for twice meanwhile;
  // it can be cancelled (a server or proxy that stalls left it under way for good).
  const cancel = new AbortController();
  exporting = cancel;
  ui.exportCancel.hidden = false;
  try {
    await whileBusy([ui.exportButton], () => exportParts(query, cancel.signal));
  } finally {
    exporting = null;
    if (document.activeElement === ui.exportCancel) ui.exportButton.focus(); // Cancel goes away
    ui.exportCancel.hidden = true;
  }
}

// The export under way (its AbortController), which Cancel ends.
let exporting = null;
// The server reads and renders every row before the file's first byte (a stream of many clips
// takes a while): meanwhile the status says for how long, every few seconds (a live region reads
// out each change: not one a second).
const PREPARING_SAY_EVERY_MS = 5000;

async function exportParts(query, signal) {
  let preparing = "Preparing the export";
  let began = performance.now();
  let saved = 0; // files of a split export already downloaded
  let parts = 1;
  exportStatus(`${preparing}…`);
  const ticker = setInterval(() => {
    if (!preparing) return;
    const seconds = Math.round((performance.now() - began) / 1000);
    exportStatus(`${preparing}… (${seconds} s so far)`);
  }, PREPARING_SAY_EVERY_MS);
  try {
    // An EDL holds at most 999 events: past that the server splits it, and each part is a file.
    for (let part = 1; part <= parts; part += 1) {
      query.set("part", String(part));
      const which = parts > 1 ? ` part ${part} of ${parts}` : "";
      if (parts > 1) {
        preparing = `Preparing${which}`;
        began = performance.now();
        exportStatus(`${preparing}…`);
      }
      const path = `/api/streams/${sessionId}/export?${query}`;
      const response = await downloadShowingProgress(path, which, signal, () => {
        preparing = null; // the file arrives: its progress is said instead
      });
      parts = Number.parseInt(response.headers.get("X-Export-Parts") ?? "1", 10) || 1;
      saved = part;
    }
    exportStatus(parts > 1 ? `Export downloaded (${parts} files).` : "Export downloaded.");
  } catch (err) {
    if (signal.aborted) {
      // The parts saved stay saved: said, so that a person knows what they have.
      const kept = saved ? ` (${saved === 1 ? "part 1" : `parts 1 to ${saved}`} of ${parts} downloaded)` : "";
      exportStatus(`Export cancelled${kept}.`);
      return;
    }
    exportStatus("");
    ui.exportError.textContent = `Export failed: ${err.message}`;
    ui.exportError.hidden = false;
  } finally {
    clearInterval(ticker);
  }
}

// A stream of many clips (the cap goes up to a million) makes a file of tens of MB: while it
// arrives the status says how much of it has, in steps of a tenth (a live region announces
// every change: not one per network read).
const PROGRESS_STEPS = 10;

function megabytes(bytes) {
  return (bytes / 1_000_000).toFixed(1);
}

async function downloadShowingProgress(path, which, signal, answered) {
  const response = await authorizedFetch(path, { signal });
  answered();
  const total = Number.parseInt(response.headers.get("Content-Length") ?? "", 10) || 0;
  const pieces = [];
  let received = 0;
  let shownStep = -1;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    pieces.push(value);
    received += value.length;
    const step = total > 0 ? Math.floor((received / total) * PROGRESS_STEPS) : 0;
    if (total > 0 && step !== shownStep && step < PROGRESS_STEPS) {
      shownStep = step;
      const percent = Math.round((received / total) * 100);
      exportStatus(`Downloading${which}: ${percent}% (${megabytes(received)} of ${megabytes(total)} MB)…`);
    }
  }
  const type = response.headers.get("Content-Type") ?? "application/octet-stream";
  saveFile(new Blob(pieces, { type }), filenameOf(response));
  return response; // its headers stay readable (how many parts an export has)
}

function exportStatus(text) {
  ui.exportStatus.textContent = text; // never hidden: a region shown as it is filled goes unsaid
}

// --- start ----------------------------------------------------------------------------------

async function main() {
  for (const button of document.querySelectorAll("[data-action]")) button.addEventListener("click", onAction);
  ui.copy.addEventListener("click", copyLink);
  ui.window.addEventListener("change", scheduleMoments);
  ui.sort.addEventListener("change", scheduleMoments);
  ui.exportForm.addEventListener("submit", onExport);
  ui.exportCancel.addEventListener("click", () => exporting?.abort());
  $("format-select").addEventListener("change", showExportOptions);
  showExportOptions(); // a reload may keep the format chosen before
  sessionId = idFromPath("streams");
  try {
    session = await api(`/api/streams/${encodeURIComponent(sessionId ?? "")}`);
  } catch (err) {
    // Deleted with its guest or by an operator: said so to a link opened later (audit "daysdevices").
    const reason = err.details?.reason;
    if (reason === "deleted_with_guest" || reason === "deleted_by_operator") {
      deleted(reason === "deleted_with_guest" ? { data: { actor: "retention:" } } : null);
      return;
    }
    showError(err.code === "session_not_found" ? "Stream not found" : "Cannot open this stream", err.message);
    return;
  }
  sessionId = session.session_id;
  restoreEdits();
  if (!session.is_owner) {
    notYours();
    return;
  }
  ui.link.value = new URL(`/watch/${sessionId}`, location.origin).href;
  renderHeader();
  show(ui.card, ui.review);
  orphanBanner.show(sessionId, session);
  socket = connect({ onState: (state) => showConnection(ui.connection, state, STREAM_CONNECTION_TEXT) });
  subscription = subscribeSession(socket, sessionId, {
    onSnapshot,
    onEvent,
    onSubscribed: () => showConnection(ui.connection, "live", STREAM_CONNECTION_TEXT),
    onError: (err) => {
      // Subscribed again (a reconnect) after the stream was deleted: the deletion's event was
      // missed, not the feed broken.
      if (err.code === "session_not_found") deleted();
      else notice(`Live updates stopped: ${err.message}`, "error");
    },
  });
}

main();
