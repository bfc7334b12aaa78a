/**
 * The voice-session page (seed 002): `/session` opens the user's active session, or shows the
 * empty state; `/session/<id>` opens that page session only and never changes the active one.
 * Opened as `/session`, the page follows the active session live, by the server's push
 * (`follow_active_session`, then `active_session` on each change): when this tab's FAB, another
 * tab, another device or the bot makes another session active, the page switches to it without a
 * reload, and lists it. A cleared one (closed or deleted) leaves the page on its session, whose own
 * events show it closed or deleted. No poll: a connection made again follows again, and its answer
 * says where the active session stands.
 * Server data reaches the DOM through textContent and dataset only.
 */
import { $, api, ApiError, bdi, call, connect, isOffline, showConnection, subscribeSession } from "./client.js";
import { reconcile, setText } from "./keyed.js";
import { OrphanBanner } from "./orphan_banner.js";
import { sendPress } from "./resend.js";
import { characters } from "./text_fit.js";

const STATUS_LABELS = {
  ready: "Ready",
  recording: "Recording",
  cutting: "Cutting",
  paused: "Paused",
  final_uploading: "Final upload",
  closed: "Closed",
  error: "Error",
};

// What each built-in job is, in the person's words (a job type is the operator's name for it).
const JOB_NAMES = {
  done_multiprompt: "Summary",
  post_process_session: "Digest",
  create_tasks_from_chunks: "Tasks",
};
// A job's outcome and its steps (job_result's status, job_progress's step), in plain words.
const JOB_OUTCOMES = { succeeded: "done", retrying: "trying again", failed: "failed" };
const JOB_STEPS = {
  queued: "waiting to start", // queued, no worker has taken it up yet (every one busy, or none running)
  transcribe: "transcribing",
  digest: "summary written",
  tasks: "tasks collected",
};
// The digest's `transcription` when the server has no transcription command (PROTOCOL:
// "`not configured: …`"): the setting it names is the operator's, not the person's.
const NOT_CONFIGURED = "not configured";
const NOT_CONFIGURED_TEXT = "Not set up on this server";

// Fields a session_update may change; anything else in its data is not page state.
const SESSION_FIELDS = [
  "session_name",
  "status",
  "is_active",
  "done_count",
  "created_at",
  "updated_at",
  "closed_at",
  "chunk_count",
  "audio_ms",
  "storage_bytes",
  "digest",
  "tasks",
];

const ERROR_TEXT = {
  session_not_found: ["Session not found", "There is no session with this link. It may have been mistyped."],
  // Maybe the person's own, opened on a browser where they are not signed in (a bookmark on a
  // new laptop), which made a guest of its own: their way back is said (audit "returning" F4).
  forbidden: [
    "No access to this session",
    "This session belongs to another identity. If it is yours, sign in here with a device link made on a device where you are signed in (there: your name at the top of a page, then “Link another device”), or with a passkey (here: the name at the top of this page).",
  ],
  invalid_session_id: ["Invalid session link", "The link does not contain a valid session id."],
  unauthorized: ["Not signed in", "Your sign-in is missing or has expired. Sign in again to open this session."],
  deleted: ["Session deleted", "This session was deleted by its owner, with its recordings."],
  deleted_by_operator: ["Session deleted", "This session was deleted on the server, with its recordings."],
  // The guest sweep's deletion (its `session_deleted` actor `retention:<user id>`): not someone
  // else's doing, as "deleted on the server" read (audit "returning" F2).
  deleted_with_guest: [
    "Session deleted",
    "No device of this guest came back within its idle time, so the guest was forgotten, and this session was deleted with it, with its recordings.",
  ],
  deleted_while_away: ["Session deleted", "This session was deleted while this page was not connected."],
  // This browser's identity is gone (signed out elsewhere): the message says how; the identity
  // notice above offers the way back. Not "Something went wrong": nothing broke.
  identity_lost: ["Not signed in on this device", ""],
  // Signed out on purpose in this browser: nobody, until the person chooses (the identity notice
  // above offers how); the message says so.
  signed_out: ["Signed out", ""],
  unavailable: ["Server unreachable", "The server cannot be reached. Check the connection and reload the page."],
};

const ACTIVITY_LIMIT = 8;
// A follow the server could not answer (busy, or its Redis away: `unavailable`) is asked again
// after this pause, on the same connection.
const FOLLOW_RETRY_MS = 2_000;

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
  statusSaid: $("status-said"),
  doneCount: $("done-count"),
  sessionId: $("session-id"),
  done: $("done-button"),
  doneHint: $("done-hint"),
  pause: $("pause-button"),
  notice: $("notice"),
  activity: $("activity"),
  activityEmpty: $("activity-empty"),
  connection: $("connection"),
  chunkTotal: $("chunk-total"),
  storageUsed: $("storage-used"),
  chunksEmpty: $("chunks-empty"),
  chunkList: $("chunk-list"),
  process: $("process-button"),
  materialsEmpty: $("materials-empty"),
  materialList: $("material-list"),
  materialsMore: $("materials-more"),
  digestEmpty: $("digest-empty"),
  digest: $("digest"),
  digestTexts: $("digest-texts"),
  tasksTitle: $("tasks-title"),
  taskList: $("task-list"),
  mySessions: $("my-sessions"),
  mySessionsEmpty: $("my-sessions-empty"),
  mySessionList: $("my-session-list"),
};

const chunks = new Map(); // chunk_id -> chunk, as listed (with its player link) or announced
const materials = new Map(); // material_id -> material, as listed or announced (material_added)
let materialsNext = null; // the `after` of the next page of materials, null when all are listed
let materialsRead = false; // a page of them was read (until then materialsNext says nothing)
let materialsEnd = 0; // how far from the first the pages read reach (the furthest page's end)
let chunkRefresh = null;

// The digest's place before the first processing (web/session.html says the same).
const NOT_PROCESSED_TEXT = "Not processed yet: Done or “Process now” builds the digest.";
let session = null; // the page session as last rendered
let pageSubscription = null;
const listed = new Set(); // session ids in "My voice sessions"
let listSocket = null;
const orphanBanner = new OrphanBanner();
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

// The status as last said to assistive tech: {sessionId, status}. The first one the page shows is
// not said (it is on the page), nor a cut (the recording goes on), nor what the FAB follows: its
// recorder says its session's state itself, and saying it here too said everything twice.
let statusSaid = null;

function announceStatus(sessionId, status) {
  const heard = status === "cutting" ? "recording" : status;
  const before = statusSaid;
  statusSaid = { sessionId, status: heard };
  if (before?.sessionId !== sessionId || before.status === heard) return;
  if (document.getElementById("sessionhub-fab")?.dataset.sessionId === sessionId) return;
  ui.statusSaid.textContent = `Session status: ${STATUS_LABELS[heard] ?? heard}`;
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
  announceStatus(session.session_id, status);
  ui.doneCount.textContent = String(session.done_count ?? 0);
  ui.state.textContent = session.is_active ? "Open" : "Closed";
  ui.state.dataset.active = String(Boolean(session.is_active));
  ui.createdAt.textContent = formatTime(session.created_at);
  ui.closedLine.hidden = typeof session.closed_at !== "number";
  ui.closedAt.textContent = formatTime(session.closed_at);
  ui.sessionId.textContent = session.session_id;
  renderTotals();
  renderResults();
  show(ui.card);
  updateDoneButton();
}

// --- recordings -----------------------------------------------------------------------------

function formatDuration(ms) {
  const totalS = Math.max(0, Math.round((Number(ms) || 0) / 100) / 10);
  const hours = Math.floor(totalS / 3600);
  const minutes = Math.floor((totalS - hours * 3600) / 60);
  const seconds = (totalS - hours * 3600 - minutes * 60).toFixed(1).padStart(4, "0");
  // An hour and more as H:MM:SS.s (a day-long voice note read "1440:00.0").
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

function formatBytes(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function renderTotals() {
  const count = session.chunk_count ?? 0;
  ui.chunkTotal.textContent = `${count} chunk${count === 1 ? "" : "s"} · ${formatDuration(session.audio_ms)}`;
  ui.chunkTotal.dataset.audioMs = String(session.audio_ms ?? 0);
  ui.storageUsed.textContent = `${formatBytes(session.storage_bytes)} stored`;
}

// A chunk's node, built once and brought up to date by updateChunk (keyed.js): a new recording,
// a transcript or a re-listed link (each list signs its links anew) redraws the list, and a chunk
// being played back must keep its player and go on playing.
function chunkItem() {
  const item = document.createElement("li");
  item.className = "chunk";
  const head = document.createElement("div");
  head.className = "chunk-head";
  const title = document.createElement("span");
  title.className = "chunk-title";
  const detail = document.createElement("span");
  detail.className = "muted chunk-detail";
  head.append(title, detail);
  item.append(head);
  return item;
}

function updateChunk(item, chunk, index) {
  item.dataset.chunkId = String(chunk.chunk_id);
  item.dataset.durationMs = String(chunk.duration_ms ?? 0);
  const length = formatDuration(chunk.duration_ms);
  setText(item.querySelector(".chunk-title"), `#${index + 1} · ${length}`);
  setText(
    item.querySelector(".chunk-detail"),
    [chunk.speaker, formatBytes(chunk.size_bytes), formatTime(chunk.start_ms)].filter(Boolean).join(" · "),
  );
  if (typeof chunk.audio_url === "string" && chunk.audio_url.startsWith("/voicebot/audio/")) {
    let player = item.querySelector("audio");
    if (!player) {
      player = chunkPlayer();
      item.querySelector(".chunk-head").after(player);
    }
    // Named after its line: three players were three unnamed "Audio" with "play" buttons alike.
    const name = `Recording #${index + 1}, ${length}`;
    if (player.getAttribute("aria-label") !== name) player.setAttribute("aria-label", name);
    offerLink(player, chunk.audio_url);
  }
  let transcript = item.querySelector(".transcript");
  if (typeof chunk.transcript === "string" && chunk.transcript) {
    if (!transcript) {
      transcript = document.createElement("p");
      transcript.className = "transcript";
      item.append(transcript);
    }
    setText(transcript, chunk.transcript);
  } else transcript?.remove();
}

function chunkPlayer() {
  const player = document.createElement("audio");
  player.controls = true;
  player.preload = "none";
  // A link that expired while the player was paused fails when it plays on: it takes the newest
  // link and goes on from where it was.
  player.addEventListener("error", () => {
    const fresh = player.dataset.fresh;
    if (!fresh || player.getAttribute("src") === fresh) return;
    const at = player.currentTime;
    player.src = fresh;
    if (at > 0)
      player.addEventListener(
        "loadedmetadata",
        () => {
          player.currentTime = at;
        },
        { once: true },
      );
  });
  return player;
}

/** A player takes a newer link only while it has not started: a player in use keeps its own. */
function offerLink(player, url) {
  player.dataset.fresh = url;
  const current = player.getAttribute("src");
  if (current === url) return;
  if (!current || (player.paused && player.currentTime === 0)) player.src = url;
}

function renderChunks() {
  const ordered = [...chunks.values()].sort((a, b) => a.start_ms - b.start_ms || a.seq - b.seq);
  reconcile(ui.chunkList, ordered, (chunk) => chunk.chunk_id, chunkItem, updateChunk);
  ui.chunksEmpty.hidden = ordered.length > 0;
}

async function loadChunks() {
  const listed = await api(`/voicebot/sessions/${encodeURIComponent(session.session_id)}/chunks`);
  chunks.clear();
  for (const chunk of listed.chunks) chunks.set(chunk.chunk_id, chunk);
  renderChunks();
}

/** A new chunk shows at once; its player link (signed, short-lived) comes with a re-list. */
function refreshChunksSoon() {
  clearTimeout(chunkRefresh);
  chunkRefresh = setTimeout(() => loadChunks().catch(() => {}), 300);
}

// --- materials from the chat -----------------------------------------------------------------
// The bot answers each with "Добавлено в сессию: <link>", and this page showed none of them until
// a Done built the digest (audit "telegram"): listed at load, a page at a time, and each one
// added as its `material_added` event comes.

// How much of a long text or caption the list shows before "Show all"; the bidi controls taken out.
const MATERIAL_SHOWN_CHARS = 280;
const BIDI_CONTROLS = /[\u202a-\u202e\u2066-\u2069]/g;
// Marks piled on one letter past what any script writes ("Zalgo" text): a letter with 1,000 of
// them made one character the shortening cannot cut, and a phone's page 6,739 px wide (audit
// "verify50"). Six are kept.
const MARKS_PILED = /(\p{M}{6})\p{M}+/gu;

const MATERIAL_AUDIO = {
  fetching: "being fetched from Telegram",
  stored: "in the recordings",
  failed: "not fetched",
};

const MATERIAL_KINDS = {
  text: "Text",
  voice: "Voice note",
  audio: "Audio",
  photo: "Photo",
  document: "Document",
  video: "Video",
  video_note: "Round video",
};

function materialItem() {
  const item = chunkItem(); // its title and detail line, as a recording's
  item.classList.add("material");
  const text = document.createElement("p");
  text.className = "material-text";
  item.append(text);
  return item;
}

function updateMaterial(item, material) {
  item.dataset.materialId = String(material.material_id);
  item.dataset.kind = String(material.kind ?? "");
  const kind = MATERIAL_KINDS[material.kind] ?? String(material.kind ?? "Material");
  const length = Number(material.duration_s) > 0 ? ` · ${formatDuration(Number(material.duration_s) * 1000)}` : "";
  setText(item.querySelector(".chunk-title"), `${kind}${length}`);
  // A voice note's audio, fetched from Telegram with the bot's token: being fetched, in the
  // recordings above, or why not (its fetch failed for good).
  const audio = Object.hasOwn(MATERIAL_AUDIO, material.audio) ? MATERIAL_AUDIO[material.audio] : "";
  setText(item.querySelector(".chunk-detail"), [formatTime(material.added_at), audio].filter(Boolean).join(" · "));
  const text = item.querySelector(".material-text");
  // Without the bidi overrides a caption may carry (a reversed "RLO" text showed reversed): each
  // caption is its own paragraph in its own direction (app.css) already.
  const words =
    typeof material.text === "string" ? material.text.replace(BIDI_CONTROLS, "").replace(MARKS_PILED, "$1") : "";
  const long = characters(words).length > MATERIAL_SHOWN_CHARS;
  const whole = item.dataset.whole === "true";
  setText(text, long && !whole ? `${characters(words).slice(0, MATERIAL_SHOWN_CHARS).join("").trimEnd()}…` : words);
  text.hidden = !text.textContent;
  let more = item.querySelector(".material-more");
  if (long) {
    if (!more) {
      // A caption of 4,096 characters was 3,000 px of a phone's page: its start, and the rest on request.
      more = document.createElement("button");
      more.type = "button";
      more.className = "button small material-more";
      more.addEventListener("click", () => {
        item.dataset.whole = item.dataset.whole === "true" ? "false" : "true";
        updateMaterial(item, materials.get(item.dataset.materialId) ?? material);
      });
      text.after(more);
    }
    const count = characters(words).length;
    setText(more, whole ? "Show less" : `Show all (${count} characters)`);
    more.setAttribute("aria-expanded", String(whole));
  } else more?.remove();
  let why = item.querySelector(".material-error");
  if (material.audio === "failed") {
    if (!why) {
      why = document.createElement("p");
      why.className = "muted material-error";
      item.append(why);
    }
    setText(why, `Its audio could not be fetched from Telegram: ${material.audio_error || "no reason given"}.`);
  } else why?.remove();
}

function renderMaterials() {
  const ordered = [...materials.values()].sort((a, b) => (Number(a.added_at) || 0) - (Number(b.added_at) || 0));
  reconcile(ui.materialList, ordered, (material) => material.material_id, materialItem, updateMaterial);
  ui.materialsEmpty.hidden = ordered.length > 0;
  ui.materialsMore.hidden = materialsNext === null;
}

/** The page of materials after the first `after`, merged with those announced meanwhile (one
 * stored while the page was read is announced, and may not be on it). */
async function loadMaterials(after = 0) {
  const sessionId = session.session_id;
  const path = `/voicebot/sessions/${encodeURIComponent(sessionId)}/materials?after=${after}&limit=100`;
  const page = await api(path);
  if (session?.session_id !== sessionId) return null; // the page moved to another session meanwhile
  for (const material of page.materials) materials.set(material.material_id, material);
  const next = typeof page.next === "number" ? page.next : null;
  // Only the furthest page read says where "More" starts: a first page read again on a snapshot,
  // answered after "More" had listed the rest, put "More" back (a loaded make test saw it).
  const end = after + page.materials.length;
  if (!materialsRead || end >= materialsEnd) {
    materialsEnd = end;
    materialsNext = next;
  }
  materialsRead = true;
  renderMaterials();
  return next;
}

/** The pages of materials listed so far, read again from the first (one read, for a list that
 * fits a page): what was stored while no events came shows, and "More" stays where it was. */
async function relistMaterials() {
  const listedTo = materialsRead ? materialsNext : 0; // null: every page was listed
  let after = 0;
  do after = await loadMaterials(after);
  while (after !== null && (listedTo === null || after < listedTo));
}

async function onMoreMaterials() {
  if (materialsNext === null || !session) return;
  ui.materialsMore.disabled = true;
  try {
    await loadMaterials(materialsNext);
  } catch (err) {
    showNotice(`More materials could not be listed: ${err.message}`, { kind: "error", source: "materials" });
  } finally {
    ui.materialsMore.disabled = false;
    if (!ui.materialsMore.hidden && document.activeElement === document.body) ui.materialsMore.focus();
  }
}

// --- digest and tasks ---------------------------------------------------------------------

/** A term and its value: a string, or strings and nodes (people's names as bdi). */
function fact(term, value) {
  const row = document.createElement("div");
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.append(...[value].flat());
  row.append(dt, dd);
  return row;
}

function renderResults() {
  const digest = session.digest && typeof session.digest === "object" ? session.digest : null;
  ui.digestEmpty.hidden = Boolean(digest);
  // Opened while its job runs, the page said "Not processed yet" and offered Process now; so it
  // did while the job waited for a worker, and after it failed (as if nothing had been tried).
  ui.digestEmpty.textContent = digestWaiting(digestJob(session.last_job));
  ui.digest.hidden = !digest;
  ui.digest.replaceChildren();
  ui.digestTexts.replaceChildren();
  if (digest) {
    const speakers = Array.isArray(digest.speakers) ? digest.speakers : [];
    ui.digest.append(
      fact("Audio chunks", String(digest.chunk_count ?? 0)),
      fact("Audio", formatDuration(digest.audio_ms)),
      fact("Materials", String(digest.material_count ?? 0)),
      // Each name is an isolate: a right-to-left one took its "(0:05)" and the comma into its run.
      fact(
        "Speakers",
        speakers.length
          ? speakers.flatMap((s, i) => [
              ...(i ? [", "] : []),
              s.speaker ? bdi(String(s.speaker)) : "unnamed",
              ` (${formatDuration(s.audio_ms)})`,
            ])
          : "—",
      ),
      fact("Transcription", transcriptionText(digest.transcription)),
    );
    for (const text of Array.isArray(digest.texts) ? digest.texts : []) {
      const item = document.createElement("li");
      item.textContent = String(text.text ?? "");
      ui.digestTexts.append(item);
    }
  }
  const tasks = Array.isArray(session.tasks) ? session.tasks : [];
  ui.tasksTitle.hidden = tasks.length === 0;
  ui.taskList.replaceChildren(
    ...tasks.map((task) => {
      const item = document.createElement("li");
      item.className = "task";
      item.dataset.chunkId = String(task.chunk_id ?? "");
      item.textContent = String(task.text ?? "");
      return item;
    }),
  );
}

function apply(event) {
  const data = event.data ?? {};
  orphanBanner.edited(); // a logged change: the session is active again
  if (event.type === "session_update" && data.deleted === true) {
    ui.connection.hidden = true;
    showError(new ApiError("deleted", ""));
  } else if (event.type === "session_deleted") {
    // An operator's delete (DELETE /admin/sessions/<id>) or an orphan sweep, not its owner's; or
    // the guest sweep's, which names itself as the actor (handlers/guest_retention.py).
    ui.connection.hidden = true;
    const swept = String(data.actor ?? "").startsWith("retention:");
    showError(new ApiError(swept ? "deleted_with_guest" : "deleted_by_operator", ""));
  } else if (event.type === "session_update") {
    const changed = Object.fromEntries(SESSION_FIELDS.filter((key) => key in data).map((key) => [key, data[key]]));
    render({ ...session, ...changed });
  } else if (event.type === "session_status" && typeof data.status === "string") {
    render({ ...session, status: data.status });
  } else if (event.type === "job_result" || event.type === "job_progress") {
    addActivity(jobLine(data), event.ts);
    if (!NOT_DIGEST_JOBS.has(data.job_type)) {
      session = { ...session, last_job: data };
      // "Processing queued." said of a press: its outcome, below, says more now.
      if (data.status === "succeeded" || data.status === "failed") clearNotice("process");
      renderResults();
    }
    // A voice note's fetch ended (its material now says where its audio is): listed again.
    if (data.job_type === "TELEGRAM_FETCH" && (data.status === "succeeded" || data.status === "failed"))
      loadMaterials().catch(() => {});
  } else if (event.type === "new_message" && data.chunk?.chunk_id) {
    chunks.set(data.chunk.chunk_id, { ...chunks.get(data.chunk.chunk_id), ...data.chunk });
    render({ ...session, chunk_count: data.chunk_count, audio_ms: data.audio_ms, storage_bytes: data.storage_bytes });
    renderChunks();
    refreshChunksSoon();
  } else if (event.type === "material_added" && typeof data.material_id === "string") {
    materials.set(data.material_id, data);
    renderMaterials();
  } else if (event.type === "chunk_updated" && data.chunk?.chunk_id) {
    chunks.set(data.chunk.chunk_id, { ...chunks.get(data.chunk.chunk_id), ...data.chunk });
    renderChunks();
  }
}

/** The digest's transcription outcome as the person reads it. */
function transcriptionText(transcription) {
  const text = String(transcription ?? "—");
  return text.startsWith(NOT_CONFIGURED) ? NOT_CONFIGURED_TEXT : text;
}

/** A job type in words: a built-in's name, another's type as a phrase ("MY_JOB": "My job"). */
function jobName(type) {
  const key = String(type ?? "").toLowerCase();
  const phrase = key.replaceAll("_", " ").trim();
  return JOB_NAMES[key] ?? (phrase ? phrase[0].toUpperCase() + phrase.slice(1) : "Job");
}

/**
 * A job_result's or job_progress's data as one line: `{job_id, name, state, status}`, where
 * `state` is the outcome or step ("succeeded", "transcribe") and `status` says it in words
 * ("done", "transcribing 3 of 5"; a one-step count is not said).
 */
function jobLine(job) {
  const base = { job_id: job.job_id, name: jobName(job.job_type) };
  if (typeof job.status === "string") {
    return { ...base, state: job.status, status: JOB_OUTCOMES[job.status] ?? job.status.replaceAll("_", " ") };
  }
  const step = String(job.step ?? "step");
  const words = JOB_STEPS[step] ?? step.replaceAll("_", " ");
  const count = Number(job.total) > 1 ? ` ${job.done ?? 0} of ${job.total}` : "";
  return { ...base, state: step, status: `${words}${count}` };
}

/** What the digest's place says before there is one: where its last job is, or how it ended. */
function digestWaiting(job) {
  if (processing()) {
    const line = jobLine(job);
    return line.state === "queued"
      ? "Waiting to be processed: its turn comes when the server has a worker free; the digest appears here when it is done."
      : `Being processed (${line.status}): the digest appears here when it is done.`;
  }
  if (job && typeof job === "object" && job.status === "failed") {
    const why = typeof job.error === "string" && job.error ? ` (${job.error})` : "";
    return `Processing failed${why}. “Process now” tries again.`;
  }
  return NOT_PROCESSED_TEXT;
}

// Jobs that build no digest: a voice note's fetch from Telegram said "Processing failed … Process
// now tries again" where nothing was processed, and Process now fetches nothing (audit "tgfetch").
const NOT_DIGEST_JOBS = new Set(["TELEGRAM_FETCH"]);

/** The session's last job, if it is one that builds the digest (else none: the digest's own state). */
function digestJob(job) {
  return job && typeof job === "object" && !NOT_DIGEST_JOBS.has(job.job_type) ? job : null;
}

/** Whether the session's last digest job is still at work (a step, or a retry to come). */
function processing() {
  const job = digestJob(session?.last_job);
  return Boolean(job && typeof job === "object" && (typeof job.status !== "string" || job.status === "retrying"));
}

/** One line per job, its latest step or outcome: a job's steps replace its line, not add to it. */
function addActivity(job, ts) {
  const jobId = String(job.job_id ?? "");
  const known = jobId ? [...ui.activity.children].find((item) => item.dataset.jobId === jobId) : undefined;
  const item = known ?? document.createElement("li");
  if (jobId) item.dataset.jobId = jobId;
  const kind = document.createElement("span");
  kind.className = "job-type";
  kind.textContent = job.name;
  const outcome = document.createElement("span");
  outcome.className = "job-status";
  outcome.dataset.status = String(job.state ?? "");
  outcome.textContent = job.status;
  const time = document.createElement("time");
  time.textContent = formatTime(ts);
  item.replaceChildren(kind, outcome, time);
  ui.activity.prepend(item);
  while (ui.activity.children.length > ACTIVITY_LIMIT) ui.activity.lastElementChild.remove();
  ui.activityEmpty.hidden = true;
}

function showError(err) {
  // A session gone by the guest sweep or an operator says so to a link opened later, not "may
  // have been mistyped" (its `reason`: handlers/session_gone.py; audit "daysdevices").
  const gone = err?.code === "session_not_found" ? ERROR_TEXT[err.details?.reason] : undefined;
  const [title, text] = gone ?? ERROR_TEXT[err?.code] ?? ["Something went wrong", ""];
  ui.errorTitle.textContent = title;
  ui.errorMessage.textContent = text || err?.message || String(err);
  ui.error.dataset.code = err?.code ?? "error";
  show(ui.error);
}

/** A one-line notice under the actions; `source` lets a later success clear its own kind. */
/** The notice gone, when it is still one of `source`'s. */
function clearNotice(source) {
  if (ui.notice.dataset.source === source) showNotice("", { source: "" });
}

function showNotice(text, { kind = "info", source = "done" } = {}) {
  ui.notice.textContent = text;
  ui.notice.dataset.kind = kind;
  ui.notice.dataset.source = source;
}

/**
 * The browser offline before the socket noticed (a ping away: Done and Process are still
 * offered): the call waits for the connection, up to its timeout; said at once, not after it.
 */
function sayIfOffline(what, source) {
  if (isOffline(socket)) showNotice(`Offline: ${what} is sent when the connection is back…`, { source });
}

function connectionChanged(state, ack) {
  live = state === "live";
  showConnection(ui.connection, state);
  if (ack) {
    ui.connection.dataset.recovered = String(ack.recovered ?? "");
    ui.connection.dataset.missed = String(ack.missed ?? 0);
  }
  updateDoneButton();
}

function updateDoneButton() {
  // A press still being sent keeps its button off, the connection back or not: pressed again it
  // would be another press (counted, queued again), not this one.
  // While a recorder (this tab's, another's, another device's) records into it, Done would close
  // the session under it: what it records next could no longer be uploaded (refused: closed), and
  // that recorder went on recording. It is paused first (its lease ends within seconds anyway
  // when the recorder is gone: the status then leaves "recording").
  const recording = session?.status === "recording" || session?.status === "cutting";
  ui.doneHint.hidden = !recording;
  // Whoever records (a phone left recording in a pocket, a tab left open at home) is paused from
  // here: its recorder stops when it hears the pause, and keeps what it recorded.
  ui.pause.hidden = !recording;
  ui.pause.disabled = !(live && session) || ui.pause.dataset.sending === "true";
  // Closed, Done may be pressed again (seed 002: it counts, and builds the summary again), but it
  // is no longer the thing to do: a plain button that says what it does then.
  const closed = session?.is_active === false;
  ui.done.classList.toggle("primary", !closed);
  ui.done.textContent = closed ? "Done again" : "Done";
  ui.done.disabled = !(live && session) || recording || ui.done.dataset.sending === "true";
  ui.process.disabled = !(live && session) || ui.process.dataset.sending === "true";
}

/**
 * Run `work` with `button` disabled meanwhile. A disabled button drops the keyboard's focus to the
 * page (the next Tab starts from the top): it is given back once the button is enabled again.
 */
async function whileDisabled(button, work) {
  const hadFocus = document.activeElement === button;
  button.dataset.sending = "true";
  button.disabled = true;
  try {
    await work();
  } finally {
    delete button.dataset.sending;
    updateDoneButton();
    const lost = document.activeElement === null || document.activeElement === document.body;
    if (hadFocus && lost && !button.disabled) button.focus();
  }
}

async function onProcess() {
  if (!socket || !session) return;
  await whileDisabled(ui.process, processSession);
}

async function processSession() {
  sayIfOffline("Process now", "process");
  try {
    await sendPress(
      socket,
      "post_process_session",
      { session_id: session.session_id },
      {
        onResend: (err) =>
          showNotice(`${err.message} ${resending("Process now", "queued")}`, { kind: "error", source: "process" }),
      },
    );
    showNotice("Processing queued.", { source: "process" });
  } catch (err) {
    showNotice(`Processing failed: ${err.message}`, { kind: "error", source: "process" });
  }
}

/** What the page says while it sends a press of `what` again (resend.js): it is the same press. */
function resending(what, effect) {
  return `${what} is being sent again once the connection is back, as the same press: it is never ${effect} twice.`;
}

async function onPause() {
  if (!socket || !session) return;
  await whileDisabled(ui.pause, pauseRecording);
  // Paused, the button hides and Done is the thing to press next.
  if (ui.pause.hidden && document.activeElement === document.body && !ui.done.disabled) ui.done.focus();
}

async function pauseRecording() {
  const sessionId = session.session_id;
  sayIfOffline("Pause", "pause");
  // This page's recorder hears the pause as any other does: told it is this page's, it says so.
  window.dispatchEvent(new CustomEvent("sessionhub:pause-here", { detail: { session_id: sessionId } }));
  try {
    await call(socket, "set_session_status", { session_id: sessionId, status: "paused" });
    showNotice("Paused: the recorder stops and keeps what it recorded. Done closes the session.", { source: "pause" });
  } catch (err) {
    showNotice(`Pause failed: ${err.message}`, { kind: "error", source: "pause" });
  }
}

async function onDone() {
  if (!socket || !session) return;
  ui.done.setAttribute("aria-busy", "true");
  await whileDisabled(ui.done, closeSession);
  ui.done.removeAttribute("aria-busy");
}

async function closeSession() {
  sayIfOffline("Done", "done");
  // The recorder on this page hears the close as any other client does: told it is this page's
  // Done, it does not say the session "was closed elsewhere".
  window.dispatchEvent(new CustomEvent("sessionhub:done-here", { detail: { session_id: session.session_id } }));
  try {
    // Sent, never answered (a stalled network, a lost connection): maybe closed, maybe not. A
    // second press would count, and queue its job, again; this press is sent again instead, as
    // itself (its request id), until answered: counted once however many tries reach the server.
    const ack = await sendPress(
      socket,
      "session_done",
      { session_id: session.session_id },
      {
        onSlow: () => showNotice("Still sending Done…"),
        onResend: (err) => showNotice(`${err.message} ${resending("Done", "counted")}`, { kind: "error" }),
      },
    );
    showNotice(`Session closed (Done × ${ack.done_count}).`);
  } catch (err) {
    showNotice(`Done failed: ${err.message}`, { kind: "error" });
  }
}

async function activeSessionId() {
  const { active_session: active } = await api("/voicebot/active_session", { method: "POST" });
  if (!active) return null;
  history.replaceState(null, "", `/session/${encodeURIComponent(active.session_id)}`);
  return active.session_id;
}

/** The page's connection (one, for the page session, the list and the active session's pushes). */
function pageSocket() {
  socket ??= connect({ onState: (state) => connectionChanged(state) });
  return socket;
}

async function open(sessionId) {
  showLoaded(await api(`/voicebot/sessions/${encodeURIComponent(sessionId)}`));
}

/** Show `loaded` (a session record) as the page session, with its recordings and live events. */
function showLoaded(loaded) {
  render(loaded);
  // The last job step the session kept: a page opened while it is processed says so at once, not
  // "No jobs yet" until the next step's event.
  const job = loaded.last_job;
  if (job && typeof job === "object" && ui.activity.children.length === 0) addActivity(jobLine(job), job.at);
  orphanBanner.show(loaded.session_id, loaded);
  loadChunks().catch((err) => {
    // Live updates stopping says more than the listing failing (both race on a refused token).
    if (ui.notice.dataset.source === "live" && ui.notice.textContent) return;
    showNotice(`Recordings could not be listed: ${err.message}`, { kind: "error", source: "chunks" });
  });
  materials.clear();
  materialsNext = null;
  materialsRead = false;
  materialsEnd = 0;
  renderMaterials();
  loadMaterials().catch((err) => {
    if (ui.notice.dataset.source === "live" && ui.notice.textContent) return;
    showNotice(`Chat materials could not be listed: ${err.message}`, { kind: "error", source: "materials" });
  });
  pageSubscription = subscribeSession(pageSocket(), session.session_id, {
    onSnapshot: (snapshot) => {
      render(snapshot);
      // Events are complete from a snapshot on, not before it: a recording or a chat material
      // stored between the lists' reads above and this snapshot was announced to nobody, and the
      // page missed it until a reload (CI saw the bot's note missed). Listed again from here.
      loadChunks().catch(() => {});
      relistMaterials().catch(() => {});
    },
    onEvent: apply,
    onSubscribed: (ack) => {
      connectionChanged("live", ack);
      if (ui.notice.dataset.source === "live") showNotice("");
    },

    onError: (err) => {
      if (err.code === "session_not_found") {
        // Subscribed again (a reconnect) after the session was deleted: its last event was
        // missed, but the deletion is what happened. Said as a deletion, not as a broken feed.
        ui.connection.hidden = true;
        showError(new ApiError("deleted_while_away", ""));
        return;
      }
      showNotice(`Live updates stopped: ${err.message}`, { kind: "error", source: "live" });
    },
  });
}

// --- the user's voice sessions, with live pictograms (on /session without an id) -------------

const LIST_LIMIT = 20;

function sessionItem(entry) {
  const item = document.createElement("li");
  item.className = "my-session";
  item.dataset.sessionId = entry.session_id;
  const pictogram = document.createElement("span");
  pictogram.className = "pictogram small";
  pictogram.setAttribute("role", "img");
  const link = document.createElement("a");
  link.href = `/session/${encodeURIComponent(entry.session_id)}`;
  link.textContent = entry.session_name || "Untitled session";
  const label = document.createElement("span");
  label.className = "muted status-text";
  item.append(pictogram, link, label);
  const show = (status) => {
    pictogram.dataset.status = status;
    pictogram.setAttribute("aria-label", `Status: ${STATUS_LABELS[status] ?? status}`);
    label.textContent = STATUS_LABELS[status] ?? status;
  };
  show(entry.status);
  return { item, show };
}

function listSession(entry, { first = false } = {}) {
  if (listed.has(entry.session_id)) return;
  listed.add(entry.session_id);
  const { item, show } = sessionItem(entry);
  if (first) ui.mySessionList.prepend(item);
  else ui.mySessionList.append(item);
  ui.mySessionsEmpty.hidden = true;
  subscribeSession(listSocket, entry.session_id, {
    onSnapshot: (snapshot) => {
      if (snapshot.session_name !== undefined)
        item.querySelector("a").textContent = snapshot.session_name || "Untitled session";
      show(snapshot.status);
    },
    onEvent: (event) => event.type === "session_status" && show(event.data?.status),
  });
}

/** List the user's sessions not listed yet (newest first); resolves to the active session's id. */
async function listMySessions() {
  const { sessions, active_session_id: activeId } = await api(`/voicebot/sessions?limit=${LIST_LIMIT}`);
  ui.mySessions.hidden = false;
  listSocket ??= pageSocket();
  const fresh = sessions.filter((entry) => !listed.has(entry.session_id));
  // Once the list is shown, what is new since goes on top, the newest first.
  if (listed.size > 0) for (const entry of fresh.reverse()) listSession(entry, { first: true });
  else for (const entry of fresh) listSession(entry);
  ui.mySessionsEmpty.hidden = listed.size > 0;
  if (ui.notice.dataset.source === "list") showNotice("");
  return activeId ?? null;
}

// --- following the active session (on /session without an id) -----------------------------

/** Show `loaded` (the active session's record) instead of the page session. */
function switchTo(loaded) {
  pageSubscription?.close();
  pageSubscription = null;
  chunks.clear();
  renderChunks();
  ui.activity.replaceChildren();
  ui.activityEmpty.hidden = false;
  showNotice("");
  history.replaceState(null, "", `/session/${encodeURIComponent(loaded.session_id)}`);
  ui.connection.hidden = false;
  showLoaded(loaded);
  if (!ui.mySessions.hidden || listed.size > 0) listSession(session, { first: true });
}

let switching = Promise.resolve();
// The user's active session as the server last told this page (undefined: not told yet; null:
// none). Only the latest is shown: a switch still to come for one that is no longer active is
// skipped, and a record read while a newer push came is dropped.
let wanted;

/** Show the active session as last told (one switch at a time, in the order they came). */
function showWanted() {
  switching = switching.then(async () => {
    const target = wanted;
    if (!target || target === session?.session_id) return; // none: the page session shows it closed
    try {
      const loaded = await api(`/voicebot/sessions/${encodeURIComponent(target)}`);
      if (target === wanted) switchTo(loaded);
    } catch (err) {
      if (target !== wanted) return; // gone meanwhile (deleted, and cleared): the newer push decides
      showNotice(`The active session could not be opened: ${err.message}`, { kind: "error", source: "live" });
    }
  });
}

function told(data) {
  if (data === null || typeof data !== "object" || !("session_id" in data)) return;
  wanted = typeof data.session_id === "string" ? data.session_id : null;
  showWanted();
}

let pushes = 0; // counts pushes: a follow's answer that a push overtook is older than the push
let followedOnce = false;

/** Follow the user's active session on this connection: its answer, then a push on each change. */
function followActive() {
  const sent = pageSocket();
  const before = pushes;
  call(sent, "follow_active_session", {}, undefined, { resend: false }).then(
    (ack) => {
      if (pushes === before) told(ack);
      // Sessions started while this page was away (the last one only is the active one) are
      // listed; the first answer comes with the page's own first listing.
      if (followedOnce) listMySessions().catch(() => {});
      followedOnce = true;
    },
    (err) => {
      // Disconnected: the next connection follows again. Refused for now: asked again.
      if (err?.code === "unavailable" || err?.code === "timeout")
        setTimeout(() => sent.connected && followActive(), FOLLOW_RETRY_MS);
    },
  );
}

/** From now on the page shows the user's active session as the server pushes it. */
function followPushed() {
  const followed = pageSocket();
  followed.on("active_session", (data) => {
    pushes += 1;
    told(data);
  });
  followed.on("connect", followActive);
  if (followed.connected) followActive();
}

async function main() {
  ui.done.addEventListener("click", onDone);
  ui.pause.addEventListener("click", onPause);
  ui.materialsMore.addEventListener("click", onMoreMaterials);
  ui.process.addEventListener("click", onProcess);
  // "New voice session" starts one here, with the page's recorder (the FAB's New); the link to
  // the start page stays for a page without it.
  $("empty-new").addEventListener("click", (event) => {
    const fabNew = document.getElementById("fab-new");
    if (!fabNew || fabNew.disabled) return;
    event.preventDefault();
    fabNew.click();
  });
  const requested = pathSessionId();
  try {
    const sessionId = requested ?? (await activeSessionId());
    if (sessionId === null) {
      ui.connection.hidden = true;
      show(ui.empty);
    } else {
      await open(sessionId);
    }
  } catch (err) {
    ui.connection.hidden = true;
    showError(err);
    return;
  }
  if (requested === null) {
    listMySessions().catch((err) =>
      showNotice(`Your sessions could not be listed: ${err.message}`, { kind: "error", source: "list" }),
    );
    // Only now: the follow's answer is newer than the active session read above (asked after it).
    followPushed();
  }
}

main();
