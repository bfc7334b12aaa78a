/**
 * The landing page: one entry per capability, and the signed-in user's recent sessions of
 * every kind. "New voice session" creates a session (which becomes the user's active one, per
 * seed 002) and opens its page. A visitor without a token gets a guest token first.
 */
import { api, createFailure, hasToken } from "./client.js";
import { limitText } from "./text_fit.js";

const form = document.getElementById("new-session-form");
const nameInput = document.getElementById("session-name-input");
const button = document.getElementById("new-session");
const errorLine = document.getElementById("index-error");
const recentList = document.getElementById("recent-list");
const recentEmpty = document.getElementById("recent-empty");
const recentError = document.getElementById("recent-error");
const nameNote = document.getElementById("session-name-note");

// 200 characters as seen, as the server counts a session name (handlers/payloads.py).
limitText(nameInput, {
  chars: 200,
  what: "A session name",
  say: (text) => {
    nameNote.textContent = text;
  },
});

async function createSession(event) {
  event.preventDefault();
  button.disabled = true;
  errorLine.hidden = true;
  try {
    const name = nameInput.value.trim();
    const created = await api("/voicebot/create_session", {
      method: "POST",
      body: name ? { session_name: name } : {},
      idempotent: true,
    });
    // The same-origin path, not created.url: that one names the public host, which a
    // development or staging instance is not.
    location.assign(`/session/${encodeURIComponent(created.session_id)}`);
  } catch (err) {
    errorLine.textContent = createFailure("Could not create a session", err);
    errorLine.hidden = false;
    button.disabled = false;
  }
}

/** A same-origin path for a listed session (entries may carry absolute public URLs). */
function localPath(url) {
  try {
    const parsed = new URL(url, location.origin);
    return parsed.pathname + parsed.search;
  } catch {
    return "/";
  }
}

function recentItem(entry) {
  const item = document.createElement("li");
  item.className = "recent-item";
  item.dataset.kind = entry.kind;
  const kind = document.createElement("span");
  kind.className = "kind-badge";
  kind.textContent = entry.kind;
  const link = document.createElement("a");
  link.href = localPath(entry.url);
  link.textContent = entry.title;
  const when = document.createElement("span");
  when.className = "muted";
  when.textContent = new Date(entry.created_at).toLocaleString();
  item.append(kind, link, when);
  if (entry.status) {
    const status = document.createElement("span");
    status.className = "muted";
    status.textContent = entry.status;
    item.append(status);
  }
  return item;
}

let reads = 0; // a read older than the last one begun is not shown over it

async function loadRecent() {
  if (!hasToken()) {
    recentEmpty.hidden = false; // a first visit: no identity yet, so nothing to list (and no guest minted)
    return;
  }
  const read = ++reads;
  try {
    const { sessions } = await api("/api/me/sessions?limit=20");
    if (read !== reads) return;
    recentError.hidden = true;
    recentList.replaceChildren(...sessions.map(recentItem));
    recentEmpty.hidden = sessions.length > 0;
  } catch (err) {
    recentError.textContent = `Could not load your sessions: ${err.message}`;
    recentError.hidden = false;
  }
}

form.addEventListener("submit", createSession);
loadRecent();
// A first visit has no identity to list sessions of, and the recorder's New makes one and a session:
// the list said "No sessions yet." beside the recording until a reload (audit "returning"). It is
// read again when this browser's identity changes and when one of its tabs makes a session active.
window.addEventListener("sessionhub:identity", () => loadRecent());
if (typeof BroadcastChannel !== "undefined")
  new BroadcastChannel("sessionhub-active").addEventListener("message", () => loadRecent());
