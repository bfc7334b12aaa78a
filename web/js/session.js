/**
 * The voice-session page (seed 002): `/session` opens the user's active session, or shows the
 * empty state; `/session/<id>` opens that page session only and never changes the active one.
 * Server data reaches the DOM through textContent and dataset only.
 */
import { api, call, connect, subscribeSession } from "./client.js";

const STATUS_LABELS = {
  ready: "Ready",
  recording: "Recording",
  cutting: "Cutting",
  paused: "Paused",
  final_uploading: "Final upload",
  closed: "Closed",
  error: "Error",
};

// Fields a session_update may change; anything else in its data is not page state.
const SESSION_FIELDS = ["session_name", "status", "is_active", "done_count", "created_at", "updated_at", "closed_at"];

const ERROR_TEXT = {
  session_not_found: ["Session not found", "There is no session with this link. It may have been mistyped."],
  forbidden: ["No access to this session", "This session belongs to another user."],
  invalid_session_id: ["Invalid session link", "The link does not contain a valid session id."],
  unauthorized: ["Not signed in", "Your sign-in is missing or has expired. Sign in again to open this session."],
  unavailable: ["Server unreachable", "The server cannot be reached. Check the connection and reload the page."],
};

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  connected: "Connecting…",
  live: "Live",
  offline: "Offline — reconnecting…",
  unauthorized: "Not signed in",
};

const ACTIVITY_LIMIT = 8;

const $ = (id) => document.getElementById(id);

const ui = {
  loading: $("loading"),
  empty: $("empty-state"),
  error: $("page-error"),
  errorTitle: $("page-error-title"),
  errorMessage: $("page-error-message"),
  card: $("session"),
  name: $("session-name"),
  state: $("session-state"),
  createdAt: $("created-at"),
  closedLine: $("closed-line"),
  closedAt: $("closed-at"),
  pictogram: $("status-pictogram"),
  statusLabel: $("status-label"),
  doneCount: $("done-count"),
  sessionId: $("session-id"),
  done: $("done-button"),
  notice: $("notice"),
  activity: $("activity"),
  activityEmpty: $("activity-empty"),
  connection: $("connection"),
};

let session = null; // the page session as last rendered
let socket = null;
let live = false;

function show(section) {
  for (const element of [ui.loading, ui.empty, ui.error, ui.card]) element.hidden = element !== section;
}

/** The id in `/session/<id>`, or null on `/session`. */
function pathSessionId() {
  const match = /^\/session(?:\/([^/]+))?\/?$/.exec(location.pathname);
  if (!match?.[1]) return null;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return match[1]; // the server will call it an invalid session id
  }
}

function formatTime(ms) {
  return typeof ms === "number" ? new Date(ms).toLocaleString() : "—";
}

function render(next) {
  session = next;
  const name = session.session_name || "Untitled session";
  const status = typeof session.status === "string" ? session.status : "ready";
  const label = STATUS_LABELS[status] ?? status;
  document.title = `${name} · sessionhub`;
  ui.name.textContent = name;
  ui.name.classList.toggle("untitled", !session.session_name);
  ui.pictogram.dataset.status = status;
  ui.pictogram.setAttribute("aria-label", `Status: ${label}`);
  ui.statusLabel.textContent = label;
  ui.doneCount.textContent = String(session.done_count ?? 0);
  ui.state.textContent = session.is_active ? "Open" : "Closed";
  ui.state.dataset.active = String(Boolean(session.is_active));
  ui.createdAt.textContent = formatTime(session.created_at);
  ui.closedLine.hidden = typeof session.closed_at !== "number";
  ui.closedAt.textContent = formatTime(session.closed_at);
  ui.sessionId.textContent = session.session_id;
  show(ui.card);
  updateDoneButton();
}

function apply(event) {
  const data = event.data ?? {};
  if (event.type === "session_update") {
    const changed = Object.fromEntries(SESSION_FIELDS.filter((key) => key in data).map((key) => [key, data[key]]));
    render({ ...session, ...changed });
  } else if (event.type === "session_status" && typeof data.status === "string") {
    render({ ...session, status: data.status });
  } else if (event.type === "job_result") {
    addActivity(data, event.ts);
  }
}

function addActivity(job, ts) {
  const item = document.createElement("li");
  const kind = document.createElement("span");
  kind.className = "job-type";
  kind.textContent = String(job.job_type ?? "job");
  const outcome = document.createElement("span");
  outcome.className = "job-status";
  outcome.dataset.status = String(job.status ?? "");
  outcome.textContent = String(job.status ?? "");
  const time = document.createElement("time");
  time.textContent = formatTime(ts);
  item.append(kind, outcome, time);
  ui.activity.prepend(item);
  while (ui.activity.children.length > ACTIVITY_LIMIT) ui.activity.lastElementChild.remove();
  ui.activityEmpty.hidden = true;
}

function showError(err) {
  const [title, text] = ERROR_TEXT[err?.code] ?? ["Something went wrong", ""];
  ui.errorTitle.textContent = title;
  ui.errorMessage.textContent = text || err?.message || String(err);
  ui.error.dataset.code = err?.code ?? "error";
  show(ui.error);
}

/** A one-line notice under the actions; `source` lets a later success clear its own kind. */
function showNotice(text, { kind = "info", source = "done" } = {}) {
  ui.notice.textContent = text;
  ui.notice.dataset.kind = kind;
  ui.notice.dataset.source = source;
  ui.notice.hidden = !text;
}

function showConnection(state, ack) {
  live = state === "live";
  ui.connection.dataset.state = state;
  ui.connection.textContent = CONNECTION_TEXT[state] ?? state;
  if (ack) {
    ui.connection.dataset.recovered = String(ack.recovered ?? "");
    ui.connection.dataset.missed = String(ack.missed ?? 0);
  }
  updateDoneButton();
}

function updateDoneButton() {
  ui.done.disabled = !(live && session);
}

async function onDone() {
  if (!socket || !session) return;
  ui.done.disabled = true;
  ui.done.setAttribute("aria-busy", "true");
  try {
    const ack = await call(socket, "session_done", { session_id: session.session_id });
    showNotice(`Session closed (Done × ${ack.done_count}).`);
  } catch (err) {
    showNotice(`Done failed: ${err.message}`, { kind: "error" });
  } finally {
    ui.done.removeAttribute("aria-busy");
    updateDoneButton();
  }
}

async function activeSessionId() {
  const { active_session: active } = await api("/voicebot/active_session", { method: "POST" });
  if (!active) return null;
  history.replaceState(null, "", `/session/${encodeURIComponent(active.session_id)}`);
  return active.session_id;
}

async function open(sessionId) {
  render(await api(`/voicebot/sessions/${encodeURIComponent(sessionId)}`));
  socket = connect({ onState: (state) => showConnection(state) });
  subscribeSession(socket, session.session_id, {
    onSnapshot: (snapshot) => render(snapshot),
    onEvent: apply,
    onSubscribed: (ack) => {
      showConnection("live", ack);
      if (ui.notice.dataset.source === "live") showNotice("");
    },
    onError: (err) => showNotice(`Live updates stopped: ${err.message}`, { kind: "error", source: "live" }),
  });
}

async function main() {
  ui.done.addEventListener("click", onDone);
  try {
    const sessionId = pathSessionId() ?? (await activeSessionId());
    if (sessionId === null) {
      ui.connection.hidden = true;
      show(ui.empty);
      return;
    }
    await open(sessionId);
  } catch (err) {
    ui.connection.hidden = true;
    showError(err);
  }
}

main();
