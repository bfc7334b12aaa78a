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

// The form's fields by the API's names: a refusal that names one is said beside it, in a
// person's words (it was the validator's own, "title: String should have at least 1 character",
// away from the field, which was not marked), and the field takes the focus to correct it.
const FIELDS = {
  title: { input: $("title-input"), message: $("title-error"), what: "A title" },
  game: { input: $("game-input"), message: $("game-error"), what: "A game" },
  viewer_delay_s: { input: $("delay-input"), message: $("delay-error"), what: "The viewer delay" },
};

// Characters as seen, as the server counts them (handlers/streams/payloads.py).
const sayCut = (text) => {
  $("create-note").textContent = text;
};
limitText($("title-input"), { chars: 200, what: "A title", say: sayCut });
limitText($("game-input"), { chars: 100, what: "A game", say: sayCut });

const STATE_LABELS = { created: "Not started", active: "Live", paused: "Paused", ended: "Ended" };

/** Say `text` beside `field` (the pattern page's tempo does the same); "" takes it away. */
function sayField(field, text) {
  field.message.textContent = text; // never hidden: a region shown as it is filled goes unsaid
  if (text) {
    field.input.setAttribute("aria-invalid", "true");
    field.input.setAttribute("aria-describedby", field.message.id);
  } else {
    field.input.removeAttribute("aria-invalid");
    field.input.removeAttribute("aria-describedby");
  }
}

function refuseField(field, text) {
  sayField(field, text);
  field.input.focus();
}

/** A refusal of one of the form's fields, in a person's words, or null when it names none. */
function fieldRefusal(err) {
  if (err?.code !== "invalid_payload") return null;
  const found = /^(title|game|viewer_delay_s): (?:Value error, )?(.*)$/s.exec(err.message ?? "");
  if (!found) return null;
  const field = FIELDS[found[1]];
  return { field, text: refusalWords(found[1], field, found[2]) };
}

function refusalWords(name, field, said) {
  if (name === "viewer_delay_s") return `The viewer delay is ${field.input.min} to ${field.input.max} whole seconds.`;
  if (name === "title" && /at least 1 character/.test(said)) return "Give the stream a title.";
  if (/character that shows/.test(said))
    return "Give the stream a title with a character that shows, not only invisible ones.";
  const most = /at most (\d+ (?:characters|bytes[^,]*))/.exec(said);
  if (most) return `${field.what} holds at most ${most[1]}.`;
  if (/control character/.test(said))
    return `${field.what} is one line of text: no tabs, line breaks or control characters.`;
  return `${field.what} was not taken: ${said.replace(/\.$/, "")}.`;
}

async function create(event) {
  event.preventDefault();
  createError.hidden = true;
  for (const field of Object.values(FIELDS)) sayField(field, "");
  // The form is `novalidate`: the browser's own bubble ("Please fill out this field.") passed in
  // a moment, tied to nothing a screen reader keeps, and these words never showed (audit
  // "verify51"). Spaces alone are no title: said here, as the server would (it trims them away).
  if (!FIELDS.title.input.value.trim()) {
    refuseField(FIELDS.title, "Give the stream a title.");
    return;
  }
  const delayInput = FIELDS.viewer_delay_s.input;
  const delayText = delayInput.value.trim();
  const delay = delayText === "" ? 0 : Number(delayText);
  // A number field holding "1.5", "-5", "700" or letters (its value is "" then): not sent.
  if (
    !Number.isInteger(delay) ||
    delay < Number(delayInput.min) ||
    delay > Number(delayInput.max) ||
    delayInput.validity.badInput
  ) {
    refuseField(FIELDS.viewer_delay_s, refusalWords("viewer_delay_s", FIELDS.viewer_delay_s, ""));
    return;
  }
  button.disabled = true;
  const body = {
    title: $("title-input").value,
    game: $("game-input").value,
    viewer_delay_s: delay,
  };
  try {
    const created = await api("/api/streams", { method: "POST", body, idempotent: true });
    location.assign(`/streams/${encodeURIComponent(created.session.session_id)}`);
  } catch (err) {
    button.disabled = false;
    const refused = fieldRefusal(err);
    if (refused) {
      refuseField(refused.field, refused.text);
      return;
    }
    createError.textContent = createFailure("Could not create the session", err);
    createError.hidden = false;
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
// Corrected as it is typed: the mark and the message go with the first change.
form.addEventListener("input", (event) => {
  const field = Object.values(FIELDS).find((f) => f.input === event.target);
  if (field?.input.getAttribute("aria-invalid") === "true") sayField(field, "");
});
load();
