/**
 * The listening history page: totals, streaks, a per-day bar chart (inline SVG) in the
 * browser's time zone, per-item totals and the session list, live while something plays
 * anywhere (the page follows the user's history session and refreshes on each event).
 * Server data reaches the DOM through textContent and attributes only.
 */
import {
  $,
  api,
  call,
  connect,
  download,
  forgetIdentity,
  isOffline,
  knownIdentity,
  showConnection,
  startNewGuest,
  subscribeSession,
  whileBusy,
} from "./client.js";
import { reconcile, setText } from "./keyed.js";
import { DEVICE_KEY, listeningDeviceOf } from "./listening_device.js";
import { OrphanBanner } from "./orphan_banner.js";
import { sendPress, unanswered } from "./resend.js";
import { durationWords } from "./text_fit.js";

const SVG = "http://www.w3.org/2000/svg";
const PAGE_SIZE = 20;
// A live refresh reads again as many rows as are shown, a page at a time, up to this many pages.
const MAX_PAGES_AGAIN = 10;
const CHART_DAYS = 30;
const REFRESH_DELAY_MS = 150;
const orphanBanner = new OrphanBanner();

const ui = {
  connection: $("connection"),
  total: $("total"),
  count: $("count"),
  streakCurrent: $("streak-current"),
  streakLongest: $("streak-longest"),
  nowPlaying: $("now-playing"),
  tz: $("tz"),
  chart: $("chart"),
  chartDay: $("chart-day"),
  error: $("history-error"),
  items: $("items"),
  itemsEmpty: $("items-empty"),
  sessions: $("sessions"),
  sessionsTitle: $("sessions-title"),
  sessionsEmpty: $("sessions-empty"),
  more: $("more"),
  filter: $("filter"),
  filterName: $("filter-name"),
  filterClear: $("filter-clear"),
  filterSaid: $("filter-said"),
  clear: $("clear"),
  clearConfirm: $("clear-confirm"),
  clearYes: $("clear-yes"),
  clearNo: $("clear-no"),
  clearStatus: $("clear-status"),
  exportCsv: $("export-csv"),
  exportExcel: $("export-excel"),
  exportJson: $("export-json"),
  exportStatus: $("export-status"),
  gone: $("history-gone"),
  goneTitle: $("history-gone-title"),
  goneMessage: $("history-gone-message"),
  goneNext: $("history-gone-next"),
  goneStatus: $("history-gone-status"),
  startOver: $("history-start-over"),
};

const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
// The zone the statistics are counted in: the browser's, or UTC once the server said it does not
// know that name (a zone newer than the server's time zone database): days in UTC, said so, are
// better than no statistics at all.
let statsZone = timeZone;
let socket = null;
let subscription = null;
let historyId = null;
let filterItem = null; // {item_id, title}
let cursor = null;
let refreshTimer = null;
let shownSessions = []; // the rows of the session list, in order
let sessionsRead = Promise.resolve(); // the last read of the session list asked for
const shownItems = new Map(); // item id -> the per-item total shown

/** "1 h 05 min", "4 min 09 s", "12 s". */
export function formatDuration(ms) {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m > 0) return `${m} min ${String(s).padStart(2, "0")} s`;
  return `${s} s`;
}

function formatWhen(ms) {
  return new Date(ms).toLocaleString(undefined, { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });
}

// The error line holds one message; a refresh that loads clears only a load's failure. A refresh
// still on its way when Delete failed (a slow network) wiped "Delete failed: …" as it finished.
let errorOfLoad = false;
function showError(text, { ofLoad = false } = {}) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
  errorOfLoad = ofLoad && Boolean(text);
}

function clearLoadError() {
  if (errorOfLoad) showError("");
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// The lists keep their rows across live refreshes (keyed.js): a keyboard user's focus stays on
// the row's button, and a row of the session playing right now is updated in place.
function itemRow() {
  const li = document.createElement("li");
  const pick = document.createElement("button");
  pick.type = "button";
  pick.className = "link-button item-pick";
  // A toggle (aria-pressed) named for what it does: its name was the item's title alone, and a
  // press filtered the list below without a word. Pressed again, it shows every session.
  pick.setAttribute("aria-pressed", "false");
  pick.setAttribute("aria-controls", "sessions");
  pick.addEventListener("click", () => {
    const item = shownItems.get(li.dataset.key);
    setFilter(item && filterItem?.item_id !== item.item_id ? item : null);
  });
  const artist = document.createElement("span");
  artist.className = "muted";
  const total = document.createElement("span");
  total.className = "item-total";
  li.append(pick, artist, total);
  return li;
}

function updateItemRow(li, item) {
  shownItems.set(item.item_id, item);
  const [pick, artist, total] = li.children;
  setText(pick, item.title);
  // The visible title inside the name: a voice command "click <title>" still finds it.
  const name = `Show only ${item.title}'s sessions`;
  if (pick.getAttribute("aria-label") !== name) pick.setAttribute("aria-label", name);
  pick.setAttribute("aria-pressed", String(filterItem?.item_id === item.item_id));
  setText(artist, item.artist ? ` ${item.artist}` : "");
  setText(total, formatDuration(item.total_ms));
}

function renderStats(stats) {
  ui.total.textContent = formatDuration(stats.total_ms);
  ui.count.textContent = String(stats.count);
  ui.streakCurrent.textContent = plural(stats.streak.current, "day");
  ui.streakLongest.textContent = plural(stats.streak.longest, "day");
  ui.tz.textContent =
    stats.tz === timeZone ? `(${stats.tz})` : `(${stats.tz}: this server does not know your time zone, ${timeZone})`;
  renderChart(stats.days);
  reconcile(ui.items, stats.items, (item) => item.item_id, itemRow, updateItemRow);
  ui.itemsEmpty.hidden = stats.items.length > 0;
}

let chartDays = null; // the days last drawn: drawn again when the chart's width changes
let chartWidth = 0;
// The day whose total the line under the chart says. A bar's total was only its SVG <title>,
// shown on a mouse's hover: nobody on a phone or a keyboard could read a day's time. A tap on
// the chart or its arrow keys (a slider over the days) pick one; it stays picked, by its date,
// across live refreshes.
let chartPicked = null;

function pickDay(index) {
  if (!chartDays || chartDays.length === 0) return;
  const i = Math.max(0, Math.min(chartDays.length - 1, index));
  const day = chartDays[i];
  chartPicked = day.date;
  const said = `${day.date}: ${formatDuration(day.total_ms)}`;
  ui.chart.setAttribute("aria-valuenow", String(i));
  ui.chart.setAttribute("aria-valuetext", said);
  ui.chartDay.textContent = said;
  for (const rect of ui.chart.querySelectorAll("rect.bar")) {
    rect.classList.toggle("picked", rect.dataset.date === day.date);
  }
}

function pickedIndex() {
  if (!chartDays) return -1;
  return chartDays.findIndex((day) => day.date === chartPicked);
}

// Drawn at the width it is shown (one unit a CSS pixel), so its dates are 10 px text on a phone
// too: drawn 600 wide and shrunk to a 390 px screen, they were about 5 px tall, unreadable.
function renderChart(days) {
  chartDays = days;
  const width = Math.round(ui.chart.clientWidth) || 600;
  chartWidth = width;
  const height = 140;
  const top = 10;
  const bottom = 20;
  const slot = width / days.length;
  const max = Math.max(60_000, ...days.map((d) => d.total_ms));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Listening time per day");
  svg.classList.add("day-chart-svg");
  days.forEach((day, i) => {
    const barHeight = Math.round(((height - top - bottom) * day.total_ms) / max);
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", String(i * slot + 2));
    rect.setAttribute("y", String(height - bottom - barHeight));
    rect.setAttribute("width", String(Math.max(1, slot - 4)));
    rect.setAttribute("height", String(barHeight));
    rect.setAttribute("class", day.total_ms > 0 ? "bar" : "bar empty");
    rect.dataset.date = day.date;
    rect.dataset.ms = String(day.total_ms);
    const tip = document.createElementNS(SVG, "title");
    tip.textContent = `${day.date}: ${formatDuration(day.total_ms)}`;
    rect.append(tip);
    svg.append(rect);
    if (i % 7 === days.length % 7 || i === days.length - 1) {
      const label = document.createElementNS(SVG, "text");
      const last = i === days.length - 1;
      // The last label ends at the right edge instead of centring under its bar, where half of
      // it would fall outside the chart. Set as attributes too, so the chart does not depend on
      // the stylesheet for it (app.css says the same).
      label.setAttribute("x", String(last ? width - 2 : i * slot + slot / 2));
      label.setAttribute("y", String(height - 5));
      label.setAttribute("text-anchor", last ? "end" : "middle");
      label.setAttribute("font-size", "10");
      label.setAttribute("class", last ? "axis last" : "axis");
      label.textContent = day.date.slice(5);
      svg.append(label);
    }
  });
  ui.chart.replaceChildren(svg);
  ui.chart.setAttribute("aria-valuemin", "0");
  ui.chart.setAttribute("aria-valuemax", String(Math.max(0, days.length - 1)));
  const kept = pickedIndex();
  pickDay(kept >= 0 ? kept : days.length - 1); // today, until a day is picked (or it left the 30)
}

const CHART_KEYS = { ArrowLeft: -1, ArrowDown: -1, ArrowRight: 1, ArrowUp: 1, PageDown: -7, PageUp: 7 };

ui.chart.addEventListener("keydown", (e) => {
  if (!chartDays || chartDays.length === 0) return;
  let index = null;
  if (e.key in CHART_KEYS) index = Math.max(0, pickedIndex()) + CHART_KEYS[e.key];
  else if (e.key === "Home") index = 0;
  else if (e.key === "End") index = chartDays.length - 1;
  if (index === null) return;
  e.preventDefault();
  pickDay(index);
});

ui.chart.addEventListener("click", (e) => {
  if (!chartDays || chartDays.length === 0) return;
  const box = ui.chart.getBoundingClientRect();
  if (box.width <= 0) return;
  pickDay(Math.floor(((e.clientX - box.left) / box.width) * chartDays.length));
});

// The player's device id made from this browser's signed-in device, when this browser keeps none
// (its storage cleared, the cookie kept): its plays are this browser's still (listening_device.js).
let signedInDevice = null;

/** Learn the signed-in device's player id when this browser keeps none, and name its rows so. */
async function learnThisDevice() {
  if (localStorage.getItem(DEVICE_KEY)) return;
  try {
    const me = await api("/api/auth/me");
    if (typeof me.device_id !== "string" || !me.device_id) return;
    signedInDevice = listeningDeviceOf(me.device_id);
  } catch {
    return; // the rows keep "Another browser": nothing worse than before
  }
  for (const meta of ui.sessions.querySelectorAll(".meta-line")) delete meta.dataset.drawn;
  reconcile(ui.sessions, shownSessions, (row) => row.id, sessionRow, updateSessionRow);
}

/**
 * A device's name for people: the id is the player's, random for a browser (`web-…`), so it
 * is not shown as a name; an id an app chose itself (say "kitchen-speaker") is.
 */
function deviceName(id) {
  if (id === localStorage.getItem(DEVICE_KEY) || id === signedInDevice) return "This browser";
  if (/^web-[0-9a-f]{8}$/.test(id)) return "Another browser";
  if (id === "default") return "Unnamed device";
  return id;
}

function sessionRow() {
  const li = document.createElement("li");
  li.className = "listening-row";
  const main = document.createElement("div");
  const title = document.createElement("strong");
  title.className = "title";
  const artist = document.createElement("span");
  artist.className = "muted artist";
  const meta = document.createElement("div");
  meta.className = "muted meta-line";
  const status = document.createElement("p");
  status.className = "muted row-status";
  status.setAttribute("role", "status");
  status.hidden = true;
  main.append(title, artist, meta, status);
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "button small delete";
  remove.textContent = "Delete";
  remove.addEventListener("click", () => deleteOne(li.dataset.id));
  li.append(main, remove);
  return li;
}

function updateSessionRow(li, s) {
  li.dataset.id = s.id;
  li.dataset.itemId = s.item_id;
  li.dataset.durationMs = String(s.duration_ms);
  li.dataset.open = String(s.open);
  setText(li.querySelector(".title"), s.title);
  setText(li.querySelector(".artist"), s.artist ? ` ${s.artist}` : "");
  // Its time and device too: the rows of one book had one name, and a screen reader could not
  // tell which of them a Delete was for (audit "listenhonest" F6).
  li.querySelector(".delete").setAttribute(
    "aria-label",
    `Delete session of ${s.title}, ${formatWhen(s.started_at)}, ${deviceName(s.device_id)}`,
  );
  const meta = li.querySelector(".meta-line");
  const drawn = JSON.stringify([s.started_at, s.duration_ms, s.open, s.device_id]);
  if (meta.dataset.drawn === drawn) return;
  meta.dataset.drawn = drawn;
  const duration = document.createElement("span");
  duration.className = "duration";
  duration.textContent = formatDuration(s.duration_ms);
  const device = document.createElement("span");
  device.className = "device";
  device.dataset.deviceId = s.device_id;
  device.title = `Device id: ${s.device_id}`;
  device.textContent = deviceName(s.device_id);
  meta.replaceChildren(`${formatWhen(s.started_at)} · `, duration, s.open ? " · playing" : "", " · ", device);
}

/**
 * The session list, newest first. `append`: the next page below the shown ones. Else read anew,
 * from the first page: as many rows as are shown when `keepShown` (a live refresh must not take a
 * person who paged down back to the first page; a page at a time, at most MAX_PAGES_AGAIN), one
 * page otherwise (another filter).
 */
function loadSessions(options) {
  // One read at a time, each counting the rows shown when it starts: a live refresh that was
  // under way when "More" was pressed finished after it and put the list back to its first page.
  const run = sessionsRead.then(() => readSessions(options));
  sessionsRead = run.catch(() => {});
  return run;
}

async function readSessions({ append = false, keepShown = true } = {}) {
  const wanted = append || !keepShown ? 0 : Math.max(PAGE_SIZE, shownSessions.length);
  const sessions = append ? [...shownSessions] : [];
  let next = append ? cursor : null;
  for (let pages = 0; pages < MAX_PAGES_AGAIN; pages += 1) {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (filterItem) params.set("item_id", filterItem.item_id);
    if (next) params.set("cursor", next);
    const page = await api(`/api/listening/sessions?${params}`);
    sessions.push(...page.sessions);
    next = page.next_cursor;
    if (append || !next || sessions.length >= wanted) break;
  }
  // A row listed twice (a session that moved up between two pages) is shown once.
  const seen = new Set();
  shownSessions = sessions.filter((row) => !seen.has(row.id) && seen.add(row.id));
  reconcile(ui.sessions, shownSessions, (row) => row.id, sessionRow, updateSessionRow);
  cursor = next;
  ui.more.hidden = !cursor;
  ui.sessionsEmpty.hidden = shownSessions.length > 0;
}

async function refresh() {
  if (gone) return; // nothing left to read: it would only be refused
  try {
    await readAll();
  } catch (err) {
    showError(`Could not load the history: ${err.message}`, { ofLoad: true });
  }
}

/** Read and show the statistics, what plays now and the list; `listening` is a read under way. */
async function readAll(listening = api("/api/listening")) {
  const [stats, history] = await Promise.all([readStats(), listening, loadSessions()]);
  renderStats(stats);
  renderOpen(history.open);
  clearLoadError();
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded ?? 0) + 1);
}

async function readStats() {
  const path = (tz) => `/api/listening/stats?tz=${encodeURIComponent(tz)}&days=${CHART_DAYS}`;
  try {
    return await api(path(statsZone));
  } catch (err) {
    if (statsZone === "UTC" || err.code !== "invalid_payload") throw err;
    statsZone = "UTC";
    return api(path(statsZone));
  }
}

function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, REFRESH_DELAY_MS);
}

// A page left open past midnight kept yesterday as "today" (its chart, its streak) until the next
// change of the history: at each local midnight it reads again. A timer set for a day ahead may
// fire late (a machine asleep): the day is checked whenever the tab is shown again, too.
let shownDay = new Date().toDateString();

function readAtMidnight() {
  const now = new Date();
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1);
  setTimeout(
    () => {
      newDay();
      readAtMidnight();
    },
    Math.max(1000, midnight - now + 1000), // a second past it: never the day before, at a DST change included
  );
}

function newDay() {
  const today = new Date().toDateString();
  if (today === shownDay) return;
  shownDay = today;
  refreshSoon();
}

function renderOpen(open) {
  ui.nowPlaying.hidden = open.length === 0;
  ui.nowPlaying.textContent = open.length ? `Playing now on ${plural(open.length, "device")}.` : "";
}

function setFilter(item) {
  filterItem = item;
  // "show all" hides itself: pressed from the keyboard, its focus fell to the page's start. It
  // goes to the heading of the list that now shows every session, where the next Tab reads on.
  if (!item && ui.filter.contains(document.activeElement)) ui.sessionsTitle.focus();
  ui.filter.hidden = !item;
  ui.filterName.textContent = item ? item.title : "";
  for (const li of ui.items.children) {
    li.firstElementChild.setAttribute("aria-pressed", String(Boolean(item) && String(item.item_id) === li.dataset.key));
  }
  loadSessions({ keepShown: false })
    .then(() => {
      // Said once the list shows it (a screen reader heard nothing as the list changed), and
      // only for the last filter pressed: a quicker second press wins.
      if (filterItem === item) ui.filterSaid.textContent = filterSaid(item);
    })
    .catch((err) => showError(err.message, { ofLoad: true }));
}

/** What the session list shows now, for the status region: "Showing 1 session of Track 2." */
function filterSaid(item) {
  const count = shownSessions.length;
  const older = cursor ? "; Load more shows older ones" : "";
  if (item) return `Showing ${cursor ? "the newest " : ""}${plural(count, "session")} of ${item.title}${older}.`;
  return cursor ? `Showing all sessions, the newest ${count}${older}.` : `Showing all ${plural(count, "session")}.`;
}

// Deletes pressed offline and not answered yet (a row's Delete, Delete all): they live only in
// this page until the connection is back, so leaving asks first. A closed tab or a followed link
// dropped them without a word (as the stream dashboard's changes, web/js/stream.js).
let owed = 0;
window.addEventListener("beforeunload", (event) => {
  if (owed === 0 || gone) return; // a history deleted meanwhile: nothing is owed to it any more
  event.preventDefault();
  event.returnValue = ""; // older Chromium shows the prompt only with this set
});

// The sessions whose delete is under way: a second tap meanwhile sends nothing more.
const deleting = new Set();

async function deleteOne(id) {
  if (deleting.has(id)) return;
  const row = ui.sessions.querySelector(`li[data-id="${CSS.escape(id)}"]`);
  // Asked first, as Delete all is: one tap beside another row's took a session for good, with
  // no way back (audit "listenhonest"). The question names the session, as its button's label.
  const named = row?.querySelector("button.delete")?.getAttribute("aria-label") ?? "Delete this session";
  if (!window.confirm(`${named}? It cannot be undone.`)) return;
  if (deleting.has(id)) return; // a tap pressed again while it asked
  deleting.add(id);
  const beside = row?.nextElementSibling ?? row?.previousElementSibling;
  const status = row?.querySelector(".row-status");
  const offline = isOffline(socket);
  if (offline) owed += 1; // counted down once the call is over, whatever its outcome
  // Offline, the call waits for the connection (up to its timeout): said at once, in the row.
  if (status && offline) {
    status.textContent = "Offline: deleted when the connection is back…";
    status.hidden = false;
  }
  try {
    try {
      await call(socket, "listening_delete", { session_id: historyId, id });
    } catch (err) {
      // Gone already (pressed again once the first delete was answered, or on another device
      // meanwhile): what was asked for is so. It said "Delete failed" of a deleted session.
      if (err.code !== "not_found") throw err;
    }
    if (!errorOfLoad) showError(""); // an earlier delete's word no longer stands
    // The row goes with the refresh: a keyboard user's focus moves to the row taking its place.
    if (row?.contains(document.activeElement)) (beside?.querySelector("button.delete") ?? ui.clear).focus();
  } catch (err) {
    // Sent, never answered (a stalled network, a connection lost before the answer): maybe
    // deleted, maybe not. Not a failure to report as one (a lost connection said "Delete failed"
    // of a session the server had deleted: audit "retries3"); pressing again is safe (a session
    // deleted already is only "not found").
    const why = err.details?.unconfirmed
      ? "the server did not answer in time (the connection may be stalled)"
      : "the connection was lost before the server answered";
    if (unanswered(err))
      showError(
        `Delete not confirmed: ${why}. If the session is still listed once the connection is back, press its Delete again: that is safe, nothing is deleted twice.`,
      );
    else showError(`Delete failed: ${err.message}`);
  } finally {
    deleting.delete(id);
    if (offline) owed -= 1;
    if (status) status.hidden = true; // deleted, its row goes with the refresh
  }
}

/** Ask "Delete all history…": focus goes to Cancel, the safe answer, so a keyboard or screen
 * reader user lands in the question (it appeared unsaid, focus left on the button). */
function openClearConfirm() {
  ui.clearConfirm.hidden = false;
  ui.clear.setAttribute("aria-expanded", "true");
  ui.clearNo.focus();
}

/** Put the "Delete all history…" question away; focus goes back to the button that asked it. */
function closeClearConfirm() {
  ui.clearConfirm.hidden = true;
  ui.clear.setAttribute("aria-expanded", "false");
  ui.clear.focus();
}

async function clearAll() {
  closeClearConfirm();
  await whileBusy([ui.clear], async () => {
    const offline = isOffline(socket);
    if (offline) owed += 1;
    // Offline, the call waits for the connection (up to its timeout): said at once, not after it.
    clearStatus(offline ? "Offline: your history is deleted when the connection is back…" : "Deleting your history…");
    try {
      // Sent, never answered (a stalled network, a lost connection): maybe deleted, maybe not.
      // Pressed again, Delete all would also delete what was played since; this press is sent
      // again instead, as itself (its request id), until answered: the server deletes once.
      await sendPress(
        socket,
        "listening_clear",
        { session_id: historyId, confirm: true },
        {
          onResend: (err) =>
            clearStatus(
              `${err.message} Delete all is being sent again once the connection is back, as the same press: nothing played since is deleted.`,
            ),
        },
      );
      clearStatus("Your history was deleted.");
      if (!errorOfLoad) showError(""); // an earlier delete's word no longer stands
    } catch (err) {
      clearStatus("");
      showError(`Delete failed: ${err.message}`);
    } finally {
      if (offline) owed -= 1;
    }
  });
}

function clearStatus(text) {
  ui.clearStatus.textContent = text;
  ui.clearStatus.hidden = !text;
}

async function exportAs(format) {
  // A long export on a slow network shows it is under way, and is not asked for twice meanwhile.
  await whileBusy([ui.exportCsv, ui.exportExcel, ui.exportJson], () => exportFile(format));
}

async function exportFile(format) {
  // "excel": the CSV with a UTF-8 BOM, without which Excel reads it in the machine's old code page
  // and garbles every title not in Latin letters (audit "localeworld").
  const excel = format === "excel";
  const named = excel ? "CSV for Excel" : format.toUpperCase();
  exportStatus(`Preparing the ${named} export…`);
  try {
    const query = excel ? "format=csv&bom=1" : `format=${format}`;
    await download(`/api/listening/export?${query}`, `listening-history.${excel ? "csv" : format}`);
    exportStatus(`${named} export downloaded.`);
  } catch (err) {
    exportStatus("");
    showError(`Export failed: ${err.message}`);
  }
}

function exportStatus(text) {
  ui.exportStatus.textContent = text; // never hidden: a region shown as it is filled goes unsaid
}

// --- the history deleted ------------------------------------------------------------------
// A history deleted while the page was open (an operator's deletion, the guest sweep, its owner
// elsewhere) stayed on screen, "Live", with totals, Delete and an Export answered 401 unsaid
// (audit "returning" F1). The guest sweep deletes a forgotten guest's sessions as an operator's
// deletion does: its `session_deleted` names the sweep as the actor (`retention:<user id>`,
// handlers/guest_retention.py).
const SWEEP_ACTOR = "retention:";
let gone = null; // why the history is gone ("forgotten", "operator", "owner", "away"), or null

/** Why the history went, from one of its events, or null: the event deletes nothing. */
function whyGone(event) {
  if (event.type === "session_update" && event.data?.deleted === true) return "owner";
  if (event.type !== "session_deleted") return null;
  return String(event.data?.actor ?? "").startsWith(SWEEP_ACTOR) ? "forgotten" : "operator";
}

const WHAT_WENT = "its sessions, its totals and what the player reported";
const NEXT_PLAY = "What you play next starts a new history.";

function goneText(why) {
  if (why === "forgotten") {
    // How long, in the identity panel's words while it could say it (client.js rememberKeptFor).
    const keptFor = knownIdentity()?.kept_for_s;
    const within = typeof keptFor === "number" ? `within ${durationWords(keptFor)}` : "within the time guests are kept";
    return `No device of this guest came back ${within}, so the guest was forgotten, and its listening history was deleted with it: ${WHAT_WENT}. It cannot be brought back.`;
  }
  if (why === "operator") return `Your listening history was deleted on the server, with ${WHAT_WENT}. ${NEXT_PLAY}`;
  if (why === "away")
    return `Your listening history was deleted while this page was not connected, with ${WHAT_WENT}. ${NEXT_PLAY}`;
  return `Your listening history was deleted, with ${WHAT_WENT}. ${NEXT_PLAY}`;
}

/** Say the history is gone, and take away what showed it (totals, sessions, Delete, Export). */
function historyGone(why) {
  if (gone) return;
  gone = why;
  subscription?.close();
  clearTimeout(refreshTimer);
  const shown = [...document.querySelectorAll("main > section:not(#history-gone), #orphan-banner")];
  const focusInside = shown.some((part) => part.contains(document.activeElement));
  for (const part of shown) part.hidden = true;
  ui.connection.hidden = true; // not "Live" over a history that is no more
  ui.goneMessage.textContent = goneText(why);
  // A forgotten guest has no way back: a new guest is the next step. Anyone else plays on.
  ui.startOver.hidden = why !== "forgotten";
  ui.goneNext.hidden = why === "forgotten";
  ui.gone.hidden = false;
  document.body.dataset.historyGone = why;
  if (focusInside) ui.goneTitle.focus(); // its button went: the keyboard lands on what happened
}

async function startOver() {
  await whileBusy([ui.startOver], async () => {
    ui.goneStatus.textContent = "Starting as a new guest…";
    try {
      forgetIdentity();
      await startNewGuest();
      location.reload();
    } catch (err) {
      ui.goneStatus.textContent = `A new guest could not be started: ${err.message}`;
    }
  });
}

async function main() {
  ui.more.addEventListener("click", () =>
    loadSessions({ append: true }).catch((err) => showError(err.message, { ofLoad: true })),
  );
  ui.filterClear.addEventListener("click", () => setFilter(null));
  ui.clear.addEventListener("click", openClearConfirm);
  ui.clearNo.addEventListener("click", closeClearConfirm);
  // Escape answers Cancel, whether focus is on the opener or on the question's buttons.
  ui.clear.closest("section").addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !ui.clearConfirm.hidden) closeClearConfirm();
  });
  ui.clearYes.addEventListener("click", clearAll);
  ui.exportCsv.addEventListener("click", () => exportAs("csv"));
  ui.exportExcel.addEventListener("click", () => exportAs("excel"));
  ui.exportJson.addEventListener("click", () => exportAs("json"));
  // A phone turned (portrait, landscape) or a window resized: the chart is drawn at its new width.
  new ResizeObserver(() => {
    if (chartDays && Math.round(ui.chart.clientWidth) !== chartWidth) renderChart(chartDays);
  }).observe(ui.chart);
  // The first reads and the connection's handshake go out at once. They waited for one another
  // (the history, then the rest, then the connection): on a phone's slow network, a second or
  // more a round trip, about five round trips before the page was live. None needs another's
  // answer, and a restore of the identity, if one is needed, is shared by all (client.js).
  socket = connect({ onState: (state) => showConnection(ui.connection, state) });
  const listening = api("/api/listening");
  const shown = readAll(listening);
  learnThisDevice();
  // Awaited below; a failure of it before then (the statistics refused while the history is
  // still on its way) must not count as a rejection nobody handles (a console error).
  shown.catch(() => {});
  try {
    const history = await listening;
    historyId = history.session_id;
    orphanBanner.show(historyId, history);
    document.body.dataset.historyId = historyId;
  } catch (err) {
    // The same failure is `shown`'s: said once, here.
    // Nothing to follow: a badge left at "Connecting…" would promise what never comes.
    socket.disconnect();
    ui.connection.hidden = true;
    showError(`Could not open your history: ${err.message}`);
    return;
  }
  try {
    await shown;
  } catch (err) {
    showError(`Could not load the history: ${err.message}`, { ofLoad: true });
  }
  readAtMidnight();
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && newDay());
  ui.startOver.addEventListener("click", startOver);
  subscription = subscribeSession(socket, historyId, {
    onSnapshot: (session) => {
      renderOpen(session.open ?? []);
      refreshSoon();
    },
    onEvent: (event) => {
      const why = whyGone(event);
      if (why) {
        historyGone(why);
        return;
      }
      orphanBanner.edited(); // listened to, removed or cleared: active again
      if (
        event.type === "listening_session" ||
        event.type === "listening_removed" ||
        event.type === "listening_cleared"
      ) {
        refreshSoon();
      }
    },
    onSubscribed: () => showConnection(ui.connection, "live"),
    // Subscribed again (a reconnect) after the history was deleted and its log expired: the
    // deletion's event was missed, not the feed broken.
    onError: (err) =>
      err.code === "session_not_found" ? historyGone("away") : showError(`Live updates stopped: ${err.message}`),
  });
}

main();
