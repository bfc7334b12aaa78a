/**
 * The landing page: "New voice session" creates a session (which becomes the user's active
 * one, per seed 002) and opens its page. A visitor without a token gets a guest token first.
 */
import { api } from "./client.js";

const form = document.getElementById("new-session-form");
const nameInput = document.getElementById("session-name-input");
const button = document.getElementById("new-session");
const errorLine = document.getElementById("index-error");

async function createSession(event) {
  event.preventDefault();
  button.disabled = true;
  errorLine.hidden = true;
  try {
    const name = nameInput.value.trim();
    const created = await api("/voicebot/create_session", { method: "POST", body: name ? { session_name: name } : {} });
    // The same-origin path, not created.url: that one names the public host, which a
    // development or staging instance is not.
    location.assign(`/session/${encodeURIComponent(created.session_id)}`);
  } catch (err) {
    errorLine.textContent = `Could not create a session: ${err.message}`;
    errorLine.hidden = false;
    button.disabled = false;
  }
}

form.addEventListener("submit", createSession);
