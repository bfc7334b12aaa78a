/**
 * `/streams`: the streamer's stream sessions, newest first, and the form that creates one.
 * A visitor without a token gets a guest token first (client.js). Text reaches the DOM through
 * textContent only.
 */
import { $, api, createFailure, hasToken } from "./client.js";
import { limitText } from "./text_fit.js";

const form = $("create-form");
const button = $("create-button");
const createError = $("create-error");
const list = $("stream-list");
const listEmpty = $("list-empty");
const listError = $("list-error");

// Characters as seen, as the server counts them (handlers/streams/payloads.py).
const sayCut = (text) => {
  $("create-note").textContent = text;
};
limitText($("title-input"), { chars: 200, what: "A title", say: sayCut });
limitText($("game-input"), { chars: 100, what: "A game", say: sayCut });

const STATE_LABELS = { created: "Not started", active: "Live", paused: "Paused", ended: "Ended" };

async function create(event) {
  event.preventDefault();
  button.disabled = true;
  createError.hidden = true;
  const delay = Number.parseInt($("delay-input").value || "0", 10);
  const body = {
    title: $("title-input").value,
    game: $("game-input").value,
    viewer_delay_s: Number.isNaN(delay) ? 0 : delay,
  };
  try {
    const created = await api("/api/streams", { method: "POST", body, idempotent: true });
    location.assign(`/streams/${encodeURIComponent(created.session.session_id)}`);
  } catch (err) {
    createError.textContent = createFailure("Could not create the session", err);
    createError.hidden = false;
    button.disabled = false;
  }
}

function item(session) {
  const li = document.createElement("li");
  li.className = "recent-item";
  const state = document.createElement("span");
  state.className = "state-badge";
  state.dataset.state = session.state;
  state.textContent = STATE_LABELS[session.state] ?? session.state;
  const link = document.createElement("a");
  link.href = `/streams/${encodeURIComponent(session.session_id)}`;
  link.textContent = session.title;
  const when = document.createElement("span");
  when.className = "muted";
  when.textContent = new Date(session.created_at).toLocaleString();
  const clips = document.createElement("span");
  clips.className = "muted";
  clips.textContent = `${session.clip_count} clip${session.clip_count === 1 ? "" : "s"}`;
  li.append(state, link, when, clips);
  return li;
}

async function load() {
  if (!hasToken()) {
    listEmpty.hidden = false; // no identity yet: nothing to list, and no guest minted just to look
    return;
  }
  try {
    const { sessions } = await api("/api/streams?limit=50");
    list.replaceChildren(...sessions.map(item));
    listEmpty.hidden = sessions.length > 0;
  } catch (err) {
    listError.textContent = `Could not load your sessions: ${err.message}`;
    listError.hidden = false;
  }
}

form.addEventListener("submit", create);
load();
