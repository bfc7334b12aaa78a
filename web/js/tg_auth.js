/**
 * The page behind a one-time link: a device link from "Link another device" or a chat bot's
 * `/login` link (`/tg_auth?token=...`). Trades the token for this user's identity, then opens
 * the user's active session. A used or expired link says so: the heading changes too.
 */
import { signInWithLoginToken } from "./client.js";

const heading = document.getElementById("login-heading");
const status = document.getElementById("login-status");
const loginToken = new URLSearchParams(location.search).get("token");
// The link works once; keep it out of the history and of any later Referer.
history.replaceState(null, "", "/tg_auth");

function refused(title, message) {
  // Signing in is over without success: the heading and the tab's title say so, not "Signing in…".
  heading.textContent = title;
  document.title = `${title} · sessionhub`;
  status.textContent = message;
  document.body.dataset.state = "refused";
}

if (!loginToken) {
  refused(
    "This link is incomplete",
    "Ask for a new one: “Link another device” on a signed-in device, or /login in the bot.",
  );
} else {
  signInWithLoginToken(loginToken).then(
    () => location.replace("/session"),
    (err) =>
      err.code === "unauthorized"
        ? refused(
            "This link was already used or has expired",
            "A sign-in link works once and for a few minutes. Ask for a new one: “Link another device” on a signed-in device, or /login in the bot.",
          )
        : refused("Signing in failed", err.message),
  );
}
