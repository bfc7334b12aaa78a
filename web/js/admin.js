/**
 * The admin dashboard: metric cards and alerts refreshed every few seconds, the sessions table
 * with filters, sort and cursor paging, one session's detail with deletion, bulk export and
 * orphan deletion with progress, the dead-letter list (retry, discard), and the audit log.
 * Everything shown is set with textContent.
 */
import {
  $,
  ApiError,
  api,
  authorizedFetch,
  hasDeviceToken,
  hasToken,
  keepToken,
  knownIdentity,
  noAnswer,
  restoreIdentity,
  saveFile,
} from "./client.js";

const REFRESH_MS = 2000;
const PAGE_SIZE = 25;

let cursor = null; // the cursor of the next page, null at the end
let pageStart = null; // the cursor the shown page started at
let selected = null; // the session id shown in the detail view
let pendingOrphans = null; // {days, count} of the last dry run
let refreshing = false;

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GB`;
}

const two = (n) => String(n).padStart(2, "0");

// The operator's own time zone (the page says which): toISOString() showed UTC with nothing to
// say so, and an operator west of Greenwich read a session made this evening as made tomorrow.
function formatTime(ms) {
  if (!ms) return "—";
  const t = new Date(ms);
  const day = `${t.getFullYear()}-${two(t.getMonth() + 1)}-${two(t.getDate())}`;
  return `${day} ${two(t.getHours())}:${two(t.getMinutes())}:${two(t.getSeconds())}`;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = String(text);
  row.append(td);
  return td;
}

// The dashboard's periodic refresh; stopped once the server has refused this page's token.
let refreshTimer = null;

// A pasted token taken reloads the page (useToken): the dashboard it opens gets the keyboard's
// focus, which the reload left on nothing, once it shows. Said across the reload in this tab only.
const SIGNED_IN_KEY = "sessionhub.admin.signed-in";
let focusDashboard = sessionStorage.getItem(SIGNED_IN_KEY) !== null;
sessionStorage.removeItem(SIGNED_IN_KEY);

function showForbidden(error) {
  // Asking again every 2 s is refused every time (two refusals, two console errors, each time).
  clearInterval(refreshTimer);
  $("loading").hidden = true;
  $("dashboard").hidden = true;
  $("forbidden").hidden = false;
  // This page showed the dashboard, so its identity was an admin: now refused, it was withdrawn
  // (the page's new token, asked of its refresh cookie, then says "required", not "withdrawn").
  // A token not from the refresh cookie (pasted) is not renewed: once every node has heard of the
  // revoke it is refused `401` with `reason: "withdrawn"`, before the admin check's `403` says so.
  if ((dashboardShown && error.code === "forbidden") || error.details?.reason === "withdrawn") {
    // An admin whose permission an operator withdrew, with the page open: told so, not asked
    // for "a token with the admin permission" as if they had never had one (audit "operator").
    $("forbidden-title").textContent = "Admin permission withdrawn";
    document.title = "Admin permission withdrawn · sessionhub";
    $("forbidden-message").textContent =
      "An operator has withdrawn the admin permission of this identity: this dashboard is closed. Ask an operator to grant it again (sessionhub admin grant), then load this page again.";
  } else if (error.code === "unauthorized") {
    // Nobody signed in yet is not refused anything: the heading (the first thing a screen
    // reader says of this alert) and the tab's title ask them to sign in.
    $("forbidden-title").textContent = "Sign in";
    document.title = "Sign in · Admin · sessionhub";
    $("forbidden-message").textContent = "Sign in with a token that has the admin permission.";
  }
}

function handle(error, where) {
  if (error instanceof ApiError && (error.code === "forbidden" || error.code === "unauthorized")) {
    showForbidden(error);
    return;
  }
  where.textContent = error.message || String(error);
  where.hidden = false;
}

// --- metrics, alerts, audit -------------------------------------------------------------

let dashboardShown = false; // the dashboard's figures were shown in this page at least once

function renderMetrics(metrics) {
  dashboardShown = true;
  const total = metrics.total;
  // The orphans' days as this server counts them (SESSIONHUB_ADMIN_ORPHAN_DAYS), until the operator
  // types their own: the field said 90 whatever the setting, and its count disagreed with the card's.
  const days = $("orphan-days");
  if (!days.dataset.edited && Number.isInteger(metrics.orphan_days)) days.value = String(metrics.orphan_days);
  $("m-sessions").textContent = total.sessions;
  $("m-active").textContent = total.active;
  $("m-today").textContent = total.created_today;
  $("m-orphaned").textContent = total.orphaned;
  $("m-storage").textContent = formatBytes(total.storage_bytes);
  // A node of the release before gives no such figure (an upgrade under way): unknown, not 0.
  $("m-files").textContent = total.file_bytes === undefined ? "—" : formatBytes(total.file_bytes);
  $("m-cost").textContent = `$${total.monthly_cost.total.toFixed(2)}`;
  const remix = total.deepest_remix;
  $("m-remix").textContent = remix.as_of === null ? "— (recalculate)" : String(remix.depth);
  $("m-remix").title = remix.as_of === null ? "" : `as of ${formatTime(remix.as_of)}`;
  const body = $("kinds");
  body.replaceChildren();
  const select = $("f-kind");
  for (const [kind, figures] of Object.entries(metrics.kinds)) {
    const row = document.createElement("tr");
    row.dataset.kind = kind;
    for (const value of [kind, figures.sessions, figures.active, figures.created_today, figures.orphaned])
      cell(row, value);
    cell(row, formatBytes(figures.storage_bytes));
    cell(row, formatBytes(figures.average_bytes));
    cell(row, figures.file_bytes === undefined ? "—" : formatBytes(figures.file_bytes));
    body.append(row);
    if (![...select.options].some((option) => option.value === kind)) select.append(new Option(kind, kind));
  }
  renderNodes(metrics.nodes);
  renderAlerts(metrics.alerts);
}

function renderAlerts(list) {
  const alerts = $("alerts");
  alerts.replaceChildren();
  for (const alert of list) {
    const item = document.createElement("li");
    item.dataset.alert = alert.alert;
    item.textContent = alert.message;
    alerts.append(item);
  }
  $("alerts-none").hidden = list.length > 0;
  followDeadAlert(list);
}

/** The figures could not be read (Redis away): the alerts still say why, when the server can. */
async function refreshAlertsOnly() {
  try {
    renderAlerts((await api("/admin/alerts")).alerts);
  } catch {
    // the refresh line already says the refresh failed
  }
}

// One row per serve node: the address it listens on, its bus, and the clients and subscriptions it
// serves (from its heartbeat; "—" for a node that does not report them). A node restarted on the
// same address names the dead processes it replaced (no longer rows of their own, nor alerts).
function renderNodes(nodes) {
  const body = $("nodes");
  body.replaceChildren();
  for (const node of nodes) {
    const row = document.createElement("tr");
    row.dataset.node = node.node;
    const name = cell(row, node.node);
    const replaces = node.replaces ?? []; // absent from a node of the release before
    if (replaces.length > 0) {
      const note = document.createElement("small");
      note.className = "admin-node-replaces";
      note.textContent = `restarted: replaces ${replaces.join(", ")}`;
      name.append(note);
    }
    cell(row, node.address ?? "—").dataset.field = "address";
    cell(row, node.bus_live && !node.stale ? "live" : "down").dataset.field = "bus";
    cell(row, node.clients ?? "—").dataset.field = "clients";
    cell(row, node.subscriptions ?? "—").dataset.field = "subscriptions";
    cell(row, `${(node.age_ms / 1000).toFixed(1)} s ago`);
    body.append(row);
  }
  $("nodes-none").hidden = nodes.length > 0;
}

function renderAudit(entries) {
  const list = $("audit");
  list.replaceChildren();
  for (const entry of entries) {
    const item = document.createElement("li");
    item.textContent = `${formatTime(entry.ts)} · ${entry.actor} · ${entry.action} · ${entry.target} · ${JSON.stringify(entry.detail)}`;
    list.append(item);
  }
}

// Whether this page asked its refresh cookie for a new token after a refusal: once per load.
let askedForGrant = false;

/**
 * Refused `forbidden`: a grant made since this page's token was minted (`sessionhub admin grant`)
 * comes with its next token. Asked for once, now, not left to the token's expiry (an hour of
 * "Forbidden" after the grant, reloads or not); true when a new token came.
 */
async function grantedSince() {
  // Only a device's token: the refresh cookie of a browser signed in some other way since (a
  // bot's link) holds an older identity, which it would bring back without a word.
  if (askedForGrant || !hasDeviceToken()) return false;
  askedForGrant = true;
  return restoreIdentity({ orNewGuest: false }).then(
    () => true,
    () => false,
  );
}

// The time a refresh writes changes every REFRESH_MS: spoken (a status region), it buried every
// other message of the page. A screen reader hears only a refresh failing and then working again.
let refreshFailing = false;
function sayRefresh(text) {
  const failing = text.startsWith("Refresh failed");
  if (failing === refreshFailing) return;
  refreshFailing = failing;
  $("refresh-said").textContent = text;
}

let lastUpdated = null; // the generated_at of the figures shown (null before the first)

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const [metrics, audit] = await Promise.all([api("/admin/metrics"), api("/admin/audit?limit=20")]);
    renderMetrics(metrics);
    renderAudit(audit.entries);
    $("loading").hidden = true;
    $("dashboard").hidden = false;
    if (focusDashboard) $("dashboard-title").focus();
    focusDashboard = false;
    $("refreshed").textContent = `updated ${formatTime(metrics.generated_at)}`;
    lastUpdated = metrics.generated_at;
    $("stale-note").hidden = true;
    delete $("cards").dataset.stale;
    sayRefresh("Refreshing again: the figures are current.");
  } catch (error) {
    if (error instanceof ApiError && error.code === "forbidden" && (await grantedSince())) {
      refreshing = false;
      await refresh();
      return;
    }
    if (error instanceof ApiError && (error.code === "forbidden" || error.code === "unauthorized"))
      showForbidden(error);
    else {
      $("refreshed").textContent = `refresh failed: ${error.message}`;
      if (lastUpdated !== null) {
        // The figures shown are the last ones read: said so beside them, not only in the top bar.
        $("stale-note").textContent =
          `These figures are from ${formatTime(lastUpdated)}: the refresh failed (${error.message}). Trying again…`;
        $("stale-note").hidden = false;
        $("cards").dataset.stale = "true";
      }
      sayRefresh(`Refresh failed: ${error.message}`);
      if (!$("dashboard").hidden) await refreshAlertsOnly();
    }
  } finally {
    refreshing = false;
  }
}

// --- sessions table ---------------------------------------------------------------------

// A picked day is the operator's local day, as the table's times are: from its local midnight
// to the next one (a DST day has 23 or 25 hours, so not midnight + 24 h).
function dayMs(value, endOfDay) {
  const parts = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (!parts) return null;
  const [year, month, day] = parts.slice(1).map(Number);
  const ms = new Date(year, month - 1, day + (endOfDay ? 1 : 0)).getTime();
  return Number.isNaN(ms) ? null : ms - (endOfDay ? 1 : 0);
}

function listQuery(from) {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), sort: $("f-sort").value, order: $("f-order").value });
  if ($("f-kind").value) params.set("kind", $("f-kind").value);
  if ($("f-state").value) params.set("state", $("f-state").value);
  const owner = $("f-owner").value.trim();
  if (owner) params.set("owner", owner);
  const createdFrom = dayMs($("f-from").value, false);
  const createdTo = dayMs($("f-to").value, true);
  if (createdFrom !== null) params.set("created_from", String(createdFrom));
  if (createdTo !== null) params.set("created_to", String(createdTo));
  if (from) params.set("cursor", from);
  return params;
}

// The server's rule for a user id (auth/claims.py), checked here so that a mistyped owner is
// said in words, not as the server's regular expression.
const USER_ID = /^[A-Za-z0-9_.:@-]{1,128}$/;

/** What is wrong with the filters, said plainly, or null. */
function filterProblem() {
  const owner = $("f-owner").value.trim();
  const badOwner = owner !== "" && !USER_ID.test(owner);
  $("f-owner").setAttribute("aria-invalid", String(badOwner));
  if (badOwner)
    return `Owner "${owner}" is not a user id: user ids have only letters, digits and . _ : @ - (no spaces).`;
  const createdFrom = dayMs($("f-from").value, false);
  const createdTo = dayMs($("f-to").value, true);
  if (createdFrom !== null && createdTo !== null && createdFrom > createdTo)
    return "“Created from” is after “to”: pick a start on or before the end.";
  return null;
}

/** Empty the table: rows left from the last list would look like the answer to these filters. */
function clearSessions() {
  $("sessions").replaceChildren();
  $("sessions-empty").hidden = true;
  cursor = null;
  $("page-next").disabled = true;
}

async function loadPage(from) {
  const error = $("sessions-error");
  error.hidden = true;
  const problem = filterProblem();
  if (problem) {
    clearSessions();
    error.textContent = problem;
    error.hidden = false;
    return;
  }
  try {
    const page = await api(`/admin/sessions?${listQuery(from)}`);
    pageStart = from;
    cursor = page.next_cursor;
    renderSessions(page.sessions);
  } catch (failure) {
    clearSessions();
    handle(failure, error);
  }
}

/**
 * A title in its own bidi isolate: a right-to-left title ("مرحبا") must not pull the id after it
 * into its run (an id starting with a digit showed that digit on the title's other side).
 */
function isolated(text) {
  const bdi = document.createElement("bdi");
  bdi.textContent = text;
  return bdi;
}

function renderSessions(rows) {
  const body = $("sessions");
  body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.dataset.id = row.session_id;
    tr.dataset.orphaned = String(row.orphaned);
    // The row opens the detail on a click anywhere; its first cell is a button, so that a
    // keyboard (Tab, Enter) opens it too.
    const open = document.createElement("button");
    open.type = "button";
    open.className = "link-button row-open";
    if (row.title) open.append(isolated(row.title), ` · ${row.session_id.slice(0, 8)}`);
    else open.textContent = row.session_id;
    open.setAttribute("aria-label", `Open ${open.textContent}`);
    const first = document.createElement("td");
    first.append(open);
    tr.append(first);
    cell(tr, row.kind);
    cell(tr, row.owner_id || "—");
    cell(tr, formatTime(row.created_at));
    cell(tr, formatTime(row.updated_at));
    cell(tr, formatTime(row.accessed_at));
    cell(tr, row.orphaned ? "Orphaned" : "Active").classList.add("status-cell");
    cell(tr, formatBytes(row.size_bytes));
    cell(tr, row.file_bytes ? formatBytes(row.file_bytes) : "—");
    cell(tr, row.remix_count);
    tr.addEventListener("click", () => showDetail(row.session_id));
    body.append(tr);
  }
  $("sessions-empty").hidden = rows.length > 0;
  $("page-next").disabled = cursor === null;
}

// --- detail -----------------------------------------------------------------------------

async function showDetail(sessionId) {
  selected = sessionId;
  const notice = $("detail-notice");
  notice.hidden = true;
  try {
    const detail = await api(`/admin/sessions/${encodeURIComponent(sessionId)}?events=100`);
    $("detail-id").textContent = detail.session_id;
    $("detail-kind").textContent = detail.kind;
    $("detail-link").href = detail.url || "/";
    // Named for what it opens (it was just "open"), the visible word first for voice control.
    $("detail-link").setAttribute("aria-label", `Open session ${detail.session_id}'s page`);
    $("detail-position").textContent =
      `epoch ${detail.epoch || "—"}, offset ${detail.offset}, ${formatBytes(detail.size_bytes)}` +
      (detail.file_bytes ? ` in Redis, ${formatBytes(detail.file_bytes)} of audio files` : "");
    const ancestors = detail.remix.ancestors.map(
      (a) => a.session_id.slice(0, 8) + (a.exists === "yes" ? "" : " (deleted)"),
    );
    $("detail-lineage").textContent =
      `${ancestors.length ? `remixed from ${ancestors.join(" ← ")}` : "an original"}; remixed ${detail.remix.remix_count} time(s)`;
    renderTree($("detail-tree"), detail.remix.descendants);
    $("detail-tree-empty").hidden = detail.remix.descendants.children.length > 0 || detail.remix.descendants.more > 0;
    $("detail-json").textContent = JSON.stringify(detail.session, null, 2);
    const events = $("detail-events");
    events.replaceChildren();
    for (const event of detail.events) {
      const item = document.createElement("li");
      item.textContent = `#${event.offset} ${formatTime(event.ts)} ${event.type} ${JSON.stringify(event.data ?? {})}`;
      events.append(item);
    }
    $("delete-confirm").value = "";
    $("delete-button").disabled = true;
    $("detail").hidden = false;
    // The detail sits below the whole table: bring it into view, where the eye goes next.
    $("detail").scrollIntoView({ block: "start" });
    $("detail-title").setAttribute("tabindex", "-1");
    $("detail-title").focus({ preventScroll: true });
  } catch (error) {
    handle(error, notice);
  }
}

// The descendants as nested lists: each node links to its own detail; `more` counts the
// children the server left out (its depth and width bounds).
function renderTree(list, node) {
  list.replaceChildren();
  for (const child of node.children) {
    const item = document.createElement("li");
    item.dataset.id = child.session_id;
    const link = document.createElement("a");
    link.href = "#detail";
    link.append(isolated(child.name || "Untitled"), ` · ${child.session_id.slice(0, 8)}`);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      showDetail(child.session_id);
    });
    const facts = document.createElement("span");
    facts.className = "muted";
    facts.textContent = ` ${child.remix_count} remix(es)${child.immutable ? ", published" : ""}`;
    item.append(link, facts);
    if (child.children.length || child.more) {
      const nested = document.createElement("ul");
      renderTree(nested, child);
      item.append(nested);
    }
    list.append(item);
  }
  if (node.more) {
    const more = document.createElement("li");
    more.className = "tree-more";
    more.textContent = `${node.more} more`;
    list.append(more);
  }
}

async function deleteSelected(event) {
  event.preventDefault();
  const confirm = $("delete-confirm").value.trim();
  if (!selected || confirm !== selected) return;
  const notice = $("detail-notice");
  try {
    try {
      await api(`/admin/sessions/${encodeURIComponent(selected)}`, { method: "DELETE", body: { confirm } });
      notice.textContent = `Deleted ${selected}.`;
    } catch (error) {
      // Gone either way (PROTOCOL, "Sending a write again"): a delete sent again after its answer
      // was lost, or another operator's. It said "no such session" and left the row listed.
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      notice.textContent = `Deleted ${selected} (it was gone already).`;
    }
    notice.dataset.kind = "";
    notice.hidden = false;
    const hadFocus = document.activeElement === $("delete-button");
    $("delete-button").disabled = true;
    // The pressed button is disabled for good (the session is gone), which dropped the keyboard's
    // focus to the page: it goes to what happened instead.
    if (hadFocus) {
      notice.tabIndex = -1;
      notice.focus();
    }
    await Promise.all([loadPage(pageStart), refresh()]);
  } catch (error) {
    notice.dataset.kind = "error";
    handle(error, notice);
    if (noAnswer(error)) {
      // No answer: it may have been deleted. Said so, and pressing again is safe (a 404 above).
      notice.textContent = `No answer from the server, so ${selected} may have been deleted: press Delete again, which is safe.`;
    }
  }
}

// --- bulk -------------------------------------------------------------------------------

function progress(done, total) {
  const bar = $("bulk-progress");
  bar.hidden = false;
  bar.max = Math.max(total, 1);
  bar.value = done;
}

async function streamLines(path, init, onLine) {
  const response = await authorizedFetch(path, init);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  const chunks = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    buffered += decoder.decode(value, { stream: true });
    const lines = buffered.split("\n");
    buffered = lines.pop();
    for (const line of lines) if (line) onLine(JSON.parse(line));
  }
  return chunks;
}

async function exportSessions(scope) {
  const status = $("bulk-status");
  let total = 0;
  let count = 0;
  try {
    const chunks = await streamLines(`/admin/export?scope=${scope}`, {}, (line) => {
      if ("total" in line && "export" in line) total = line.total;
      else count += 1;
      progress(count, total);
      status.textContent = `Exporting ${scope}: ${count} / ${total}`;
    });
    saveFile(new Blob(chunks, { type: "application/x-ndjson" }), `sessionhub-${scope}.jsonl`);
    status.textContent = `Exported ${count} session(s) (${scope}).`;
  } catch (error) {
    handle(error, status);
  }
}

// The days the server takes (handlers/admin/requests.py, older_than_days).
const ORPHAN_DAYS_MAX = 36_500;
const ORPHAN_DAYS_RULE = `Enter a whole number of days, 1 to ${ORPHAN_DAYS_MAX}.`;

function orphanDays() {
  const value = $("orphan-days").value.trim();
  const days = Number(value);
  return /^[0-9]{1,5}$/.test(value) && days >= 1 && days <= ORPHAN_DAYS_MAX ? days : null;
}

/**
 * Say `text` beside the days field, which is marked invalid and described by it (the pattern
 * page's tempo does the same); "" takes it away. It was said in the bulk status line, tied to
 * nothing, with the field unmarked.
 */
function sayOrphanDays(text) {
  const field = $("orphan-days");
  $("orphan-days-error").textContent = text; // never hidden: a region shown as it is filled goes unsaid
  if (text) {
    field.setAttribute("aria-invalid", "true");
    field.setAttribute("aria-describedby", "orphan-days-error");
    field.focus();
  } else {
    field.removeAttribute("aria-invalid");
    field.removeAttribute("aria-describedby");
  }
}

async function countOrphans(event) {
  event.preventDefault();
  const status = $("bulk-status");
  const days = orphanDays();
  const confirmButton = $("orphans-confirm");
  confirmButton.hidden = true;
  sayOrphanDays("");
  if (days === null) {
    status.textContent = "";
    sayOrphanDays(ORPHAN_DAYS_RULE);
    return;
  }
  try {
    const dry = await api("/admin/orphans/delete", { method: "POST", body: { older_than_days: days, dry_run: true } });
    pendingOrphans = { days, count: dry.count };
    status.textContent = `${dry.count} orphan(s) not accessed for ${days} days.`;
    if (dry.count > 0) {
      confirmButton.textContent = `Delete ${dry.count} orphan(s)`;
      confirmButton.hidden = false;
    }
  } catch (error) {
    // The server's own rule for the days (a setting of another release): said beside the field.
    if (error instanceof ApiError && error.code === "invalid_payload" && error.message.startsWith("older_than_days"))
      sayOrphanDays(ORPHAN_DAYS_RULE);
    else handle(error, status);
  }
}

async function deleteOrphans() {
  const status = $("bulk-status");
  if (!pendingOrphans) return;
  const { days, count } = pendingOrphans;
  pendingOrphans = null;
  $("orphans-confirm").hidden = true;
  try {
    await streamLines(
      "/admin/orphans/delete",
      {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ older_than_days: days, confirm_count: count }),
      },
      (line) => {
        progress(line.done === true ? line.total : line.done, line.total);
        status.textContent =
          line.done === true ? `Deleted ${line.deleted} orphan(s).` : `Deleting: ${line.done} / ${line.total}`;
      },
    );
    await Promise.all([loadPage(null), refresh()]);
  } catch (error) {
    handle(error, status);
    // The answer lost (the connection reset, or cut mid-stream): the server may have deleted them
    // all. "The server cannot be reached." read as nothing done (audit verify42b).
    if (answerLost(error)) {
      status.textContent = "No answer from the server, so the orphans may have been deleted: count them again to see.";
      Promise.all([loadPage(null), refresh()]).catch(() => {});
    }
  }
}

/** Whether `error` is an answer that never came (no connection, or one cut mid-answer). */
function answerLost(error) {
  return noAnswer(error) || error instanceof TypeError; // a stream cut mid-answer: a TypeError
}

/** What a recalculation did, in an operator's words: "no drift" said of totals measured anew
 * from 1.7 MB to 3.0 MB read as "nothing changed" (audit "adminphone"). */
function recalculatedWords(drift) {
  const sum = (totals) => Object.values(totals ?? {}).reduce((all, bytes) => all + (Number(bytes) || 0), 0);
  const moved = [
    ["Redis", sum(drift.bytes_before), sum(drift.bytes_after)],
    ["audio files", sum(drift.file_bytes_before), sum(drift.file_bytes_after)],
  ]
    .filter(([, before, after]) => before !== after)
    .map(([what, before, after]) => `${what} ${formatBytes(before)} → ${formatBytes(after)}`);
  const counted = drift.drift
    ? `${drift.added} added, ${drift.removed} removed, ${drift.corrected} corrected`
    : "every entry was right";
  const sizes = moved.length ? `; sizes measured anew: ${moved.join(", ")}` : "";
  return `Recalculated ${drift.sessions} session(s): ${counted}${sizes}.`;
}

async function recalculate() {
  const status = $("bulk-status");
  try {
    const drift = await api("/admin/recalculate", { method: "POST", body: {} });
    status.textContent = recalculatedWords(drift);
    await refresh();
  } catch (error) {
    handle(error, status);
    if (answerLost(error)) {
      status.textContent = "No answer from the server, so it may have run: pressing Recalculate again is harmless.";
      refresh().catch(() => {});
    }
  }
}

// --- dead letters -----------------------------------------------------------------------

const DEAD_PAGE = 25;
let deadShown = []; // the dead letters listed, newest first
let deadNext = null; // the offset of the next page, null at the end
let deadTotal = null; // the list's total as last read
let deadLoading = false;
let deadNewest = ""; // names the list's newest entry as last read: Discard all repeats it
let pendingDeadCount = null; // the count "Discard all" asks to confirm
let pendingDeadNewest = ""; // and the newest entry it was counted with

function jobLabel(letter) {
  return `${letter.type || "untyped"} job ${letter.job_id.slice(0, 8)}`;
}

function deadStatus(text, kind = "") {
  const status = $("dead-status");
  status.dataset.kind = kind;
  status.textContent = text;
  return status;
}

function deadButton(action, letter) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = action === "discard" ? "button small danger" : "button small";
  button.textContent = action === "retry" ? "Retry" : "Discard";
  button.dataset.action = action;
  // Every row has the same two buttons: their names say which job they act on.
  button.setAttribute("aria-label", `${button.textContent} ${jobLabel(letter)}`);
  button.addEventListener("click", () => {
    // A discard cannot be undone, and its button sits beside Retry: a tap meant for Retry on a
    // phone dropped the job for good (audit "adminphone"). The first press asks; the second,
    // within DISCARD_ARMED_MS, discards.
    if (action === "discard" && button.dataset.armed !== "true") {
      armDiscard(button, letter);
      return;
    }
    clearTimeout(disarmTimers.get(button));
    settleDeadLetter(action, letter, button);
  });
  return button;
}

const DISCARD_ARMED_MS = 8_000;
const disarmTimers = new WeakMap();

function armDiscard(button, letter) {
  const label = jobLabel(letter);
  button.dataset.armed = "true";
  button.textContent = "Confirm discard";
  button.setAttribute("aria-label", `Confirm discard ${label}`);
  deadStatus(`Discard ${label} for good? Press "Confirm discard" again; it cannot be undone.`);
  disarmTimers.set(
    button,
    setTimeout(() => {
      delete button.dataset.armed;
      button.textContent = "Discard";
      button.setAttribute("aria-label", `Discard ${label}`);
    }, DISCARD_ARMED_MS),
  );
}

function renderDeadLetter(letter) {
  const item = document.createElement("li");
  item.className = "dead-letter";
  item.dataset.job = letter.job_id;
  const type = document.createElement("strong");
  type.className = "dead-type";
  type.textContent = letter.type || "(no type)";
  item.append(type);
  if (letter.session_id) {
    const session = document.createElement("a");
    session.href = "#detail";
    session.dataset.action = "session";
    session.className = "tap-link dead-session";
    session.textContent = `session ${letter.session_id}`;
    session.addEventListener("click", (event) => {
      event.preventDefault();
      showDetail(letter.session_id);
    });
    item.append(session);
  }
  const meta = document.createElement("p");
  meta.className = "dead-meta muted";
  const when = letter.buried_at
    ? `failed for good ${formatTime(letter.buried_at)}`
    : `queued ${formatTime(letter.enqueued_at)}`;
  meta.textContent = `${letter.attempts} attempt(s) · ${when} · by ${letter.performer_id || "—"} · job ${letter.job_id}`;
  const error = document.createElement("p");
  error.className = "dead-error";
  error.textContent = letter.last_error || "(no error recorded)";
  const buttons = document.createElement("div");
  buttons.className = "dead-buttons";
  // An entry that is no job of this release (no id: not even JSON) can be neither retried nor
  // discarded by its id: its buttons only said "no route" (audit "verify47").
  if (letter.job_id) buttons.append(deadButton("retry", letter), deadButton("discard", letter));
  else buttons.textContent = "Not a job this release can read: only Discard all removes it.";
  item.append(meta, error, buttons);
  return item;
}

function renderDeadLetters() {
  const list = $("dead-list");
  // A list read again under the keyboard keeps its place: the same control of the same job.
  const focused = list.contains(document.activeElement) ? document.activeElement : null;
  const keep = focused && { job: focused.closest("[data-job]")?.dataset.job, action: focused.dataset.action };
  list.replaceChildren(...deadShown.map(renderDeadLetter));
  $("dead-summary").textContent =
    deadTotal === 0 ? "No dead letters." : `${deadTotal} dead letter(s); the newest ${deadShown.length} shown.`;
  $("dead-more").hidden = deadNext === null;
  $("dead-discard-all").hidden = !deadTotal;
  $("dead-discard-all").textContent = `Discard all ${deadTotal}`;
  if (pendingDeadCount !== deadTotal || pendingDeadNewest !== deadNewest) {
    pendingDeadCount = null;
    $("dead-discard-confirm").hidden = true;
  }
  if (keep?.job) {
    const row = [...list.children].find((item) => item.dataset.job === keep.job);
    row?.querySelector(`[data-action="${keep.action}"]`)?.focus();
  }
}

async function loadDeadLetters(more = false) {
  if (deadLoading) return;
  deadLoading = true;
  try {
    const offset = more ? deadShown.length : 0;
    const limit = more ? DEAD_PAGE : Math.min(100, Math.max(DEAD_PAGE, deadShown.length));
    const page = await api(`/admin/jobs/dead?limit=${limit}&offset=${offset}`);
    // A job buried between two pages shifts the next one: an entry listed twice is shown once.
    const seen = new Set(more ? deadShown.map((letter) => letter.job_id) : []);
    const fresh = page.dead_letters.filter((letter) => !seen.has(letter.job_id));
    deadShown = more ? [...deadShown, ...fresh] : fresh;
    deadNext = page.next_offset;
    deadTotal = page.total;
    deadNewest = page.newest || "";
    renderDeadLetters();
  } catch (error) {
    handle(error, deadStatus("", "error"));
  } finally {
    deadLoading = false;
  }
}

async function settleDeadLetter(action, letter, button) {
  const label = jobLabel(letter);
  const retry = action === "retry";
  const hadFocus = document.activeElement === button;
  const row = button.closest("[data-job]");
  for (const each of row.querySelectorAll("button")) each.disabled = true;
  deadStatus(retry ? `Retrying ${label}…` : `Discarding ${label}…`);
  try {
    const path = `/admin/jobs/dead/${encodeURIComponent(letter.job_id)}`;
    const answer = await (retry ? api(`${path}/retry`, { method: "POST" }) : api(path, { method: "DELETE" }));
    const done = answer.outcome === "retried" ? "queued again" : "discarded";
    deadStatus(answer.again ? `${label} was ${done} already.` : `${label} ${done}.`);
  } catch (error) {
    handle(error, deadStatus("", "error"));
    if (noAnswer(error)) {
      const word = retry ? "Retry" : "Discard";
      deadStatus(
        `No answer from the server, so ${label} may be ${retry ? "queued again" : "discarded"}: press ${word} again, which is safe.`,
        "error",
      );
    }
  }
  await loadDeadLetters();
  if (document.body.contains(button)) {
    // Not read again (no answer: the server or its store away): the row is as it was, its
    // buttons usable for the press the status asks for. They stayed disabled until the operator
    // thought of "Refresh list", and the focus fell to the page (audit "adminhostile").
    for (const each of row.querySelectorAll("button")) each.disabled = false;
    if (hadFocus) button.focus();
  } else if (hadFocus) {
    // The pressed button went with its row: the keyboard goes to what happened.
    const status = $("dead-status");
    status.tabIndex = -1;
    status.focus();
  }
  refresh().catch(() => {});
}

function askDiscardAll() {
  pendingDeadCount = deadTotal;
  pendingDeadNewest = deadNewest;
  const confirmButton = $("dead-discard-confirm");
  confirmButton.textContent = `Yes, discard all ${deadTotal} dead letter(s)`;
  confirmButton.hidden = false;
  confirmButton.focus();
}

async function discardAllDeadLetters() {
  const count = pendingDeadCount;
  if (count === null) return;
  pendingDeadCount = null;
  $("dead-discard-confirm").hidden = true;
  deadStatus(`Discarding ${count} dead letter(s)…`);
  try {
    // The newest entry too: the count alone let a letter buried since (another discarded
    // meanwhile) go unseen (audit "adminhostile").
    const newest = encodeURIComponent(pendingDeadNewest);
    const answer = await api(`/admin/jobs/dead?confirm=${count}&newest=${newest}`, { method: "DELETE" });
    deadStatus(`Discarded ${answer.discarded} dead letter(s).`);
  } catch (error) {
    handle(error, deadStatus("", "error"));
    if (error instanceof ApiError && error.code === "conflict")
      deadStatus(
        "The dead letters changed since they were listed: the list is read again; look, then press Discard all again.",
        "error",
      );
    else if (noAnswer(error))
      deadStatus("No answer from the server, so they may have been discarded: the list is read again.", "error");
  }
  await loadDeadLetters();
  const status = $("dead-status");
  status.tabIndex = -1;
  status.focus();
  refresh().catch(() => {});
}

/** The alert counts dead letters every refresh: a count other than the one listed reads them again. */
function followDeadAlert(list) {
  const alert = list.find((each) => each.alert === "dead_letters");
  if (alert && deadTotal !== null && alert.dead !== deadTotal) loadDeadLetters();
}

// --- token ------------------------------------------------------------------------------

let checkingToken = false;

/**
 * Sign in with a pasted token: kept only once the server has taken it for this page. A token
 * that is expired, not this server's, or without the admin permission is refused in words and
 * nothing is stored: keeping it signed the whole browser in as whoever it names (a person's
 * token pasted by mistake became this browser's identity on every page), and the page then said
 * only that it needed an admin token.
 */
async function useToken(event) {
  event.preventDefault();
  if (checkingToken) return;
  const say = (words) => {
    $("forbidden-message").textContent = words;
  };
  const token = $("token-input").value.trim();
  let exp;
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    exp = Number(payload.exp);
  } catch {
    say("That is not a token.");
    return;
  }
  // Whether it has expired is the server's to say, on its own clock: judged on this browser's
  // (exp against Date.now()), a phone or laptop whose clock runs ahead refused a good token and
  // one behind sent a dead one and said only that the server did not take it. Once taken, the
  // token is kept with its life counted on this browser's clock from now (client.js keepToken).
  checkingToken = true;
  say("Checking the token…");
  try {
    const response = await fetch("/admin/metrics", {
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
    });
    if (response.ok) {
      keepToken(token, { expiresAt: exp });
      sessionStorage.setItem(SIGNED_IN_KEY, "1");
      location.reload();
      return;
    }
    if (response.status === 401 && (await refusedAsExpired(response)))
      say("That token has expired. Make a new one and paste it here.");
    else if (response.status === 401)
      say("This server does not take that token (revoked, expired, or made for another server).");
    else if (response.status === 403) say("That token does not have the admin permission.");
    else say(`The token could not be checked (the server answered ${response.status}). Try again.`);
  } catch {
    say("The token could not be checked: the server cannot be reached. Try again.");
  } finally {
    checkingToken = false;
  }
}

/** Whether a 401 says the token ran out on the server's clock (its message "token expired"). */
async function refusedAsExpired(response) {
  try {
    const body = await response.json();
    return typeof body.message === "string" && body.message.startsWith("token expired");
  } catch {
    return false; // no JSON body (a proxy's page): not said
  }
}

// --- sorting by the column headers -----------------------------------------------------------

/** Sortable headers are buttons; the one sorted by says how (aria-sort), kept with the selects. */
function setUpSortHeaders() {
  for (const th of document.querySelectorAll("th[data-sort]")) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sort-button";
    button.textContent = th.textContent;
    th.replaceChildren(button);
    button.addEventListener("click", () => {
      const same = $("f-sort").value === th.dataset.sort;
      $("f-sort").value = th.dataset.sort;
      $("f-order").value = same && $("f-order").value === "desc" ? "asc" : "desc";
      showSort();
      loadPage(null);
    });
  }
  $("f-sort").addEventListener("change", showSort);
  $("f-order").addEventListener("change", showSort);
  showSort();
}

function showSort() {
  for (const th of document.querySelectorAll("th[data-sort]")) {
    const sorted = th.dataset.sort === $("f-sort").value;
    if (sorted) th.setAttribute("aria-sort", $("f-order").value === "asc" ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
}

/**
 * A control that takes the focus inside a table's scrolling region is scrolled into it: Chromium
 * scrolls to a focused element only when none of it shows, and the Sessions table's last sort
 * button ("Remixes") stayed cut off at a desktop's width, its focus ring around one letter.
 */
function scrollFocusIntoTables() {
  for (const region of document.querySelectorAll(".table-scroll")) {
    region.addEventListener("focusin", (event) => {
      if (event.target !== region) event.target.scrollIntoView({ block: "nearest", inline: "nearest" });
    });
  }
}

/**
 * A table wider than its region says so above it: on a phone the Sessions table showed 3 of its
 * 10 columns, and nothing said the rest were a swipe away (audit "adminphone"). Looked at as
 * each region's size or content changes.
 */
function hintWideTables() {
  const look = (region) => {
    const wide = region.scrollWidth > region.clientWidth + 1;
    let hint = region.previousElementSibling?.classList.contains("table-hint") ? region.previousElementSibling : null;
    if (wide && hint === null) {
      hint = document.createElement("p");
      hint.className = "muted table-hint";
      hint.id = `${region.querySelector("table")?.getAttribute("aria-labelledby") ?? "table"}-hint`;
      hint.textContent = "Scroll the table sideways for its other columns.";
      region.before(hint);
      region.setAttribute("aria-describedby", hint.id);
    }
    if (hint) hint.hidden = !wide;
    region.dataset.wide = String(wide);
  };
  for (const region of document.querySelectorAll(".table-scroll")) {
    new ResizeObserver(() => look(region)).observe(region);
    new MutationObserver(() => look(region)).observe(region, { childList: true, subtree: true });
  }
}

function start() {
  setUpSortHeaders();
  scrollFocusIntoTables();
  hintWideTables();
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    loadPage(null);
  });
  $("page-first").addEventListener("click", () => loadPage(null));
  $("page-next").addEventListener("click", () => cursor && loadPage(cursor));
  $("delete-confirm").addEventListener("input", () => {
    $("delete-button").disabled = $("delete-confirm").value.trim() !== selected;
  });
  $("delete-form").addEventListener("submit", deleteSelected);
  $("export-all").addEventListener("click", () => exportSessions("all"));
  $("export-orphans").addEventListener("click", () => exportSessions("orphans"));
  $("recalculate").addEventListener("click", recalculate);
  $("orphans-form").addEventListener("submit", countOrphans);
  $("orphan-days").addEventListener("input", () => {
    $("orphan-days").dataset.edited = "true";
    if ($("orphan-days").getAttribute("aria-invalid") === "true") sayOrphanDays(""); // being corrected
  });
  $("orphans-confirm").addEventListener("click", deleteOrphans);
  $("token-form").addEventListener("submit", useToken);
  $("dead-refresh").addEventListener("click", () => loadDeadLetters());
  $("dead-more").addEventListener("click", () => loadDeadLetters(true));
  $("dead-discard-all").addEventListener("click", askDiscardAll);
  $("dead-discard-confirm").addEventListener("click", discardAllDeadLetters);
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  $("time-zone").textContent = `Times and days are in this browser's time zone${zone ? ` (${zone})` : ""}.`;
  identified().then((known) => {
    if (!known) return showForbidden(new ApiError("unauthorized", "no identity", 401));
    refresh().then(() => {
      if ($("dashboard").hidden) return;
      loadPage(null);
      loadDeadLetters();
    });
    refreshTimer = setInterval(refresh, REFRESH_MS);
  });
}

/**
 * Whether this browser has an identity to show the dashboard to: a token, or one its refresh
 * cookie restores. A visitor with none (a fresh browser, a crawler) is not made a new guest
 * only to be refused (a profile, a device and a cookie stored for nobody): it gets the sign-in.
 */
async function identified() {
  if (hasToken() || knownIdentity() !== null) return true;
  try {
    await restoreIdentity({ orNewGuest: false });
    return true;
  } catch {
    return false; // no identity (or one that cannot be restored): the page's own sign-in
  }
}

start();
