/**
 * The page behind a chat bot's `/login` link (`/tg_auth?token=...`): trade the one-time token
 * for this user's token, then open the user's active session.
 */
import { signInWithLoginToken } from "./client.js";

const status = document.getElementById("login-status");
const heading = document.getElementById("login-heading");

/** Signing in is over without success: the heading says so too, not "Signing in…". */
function failed(title, text) {
  heading.textContent = title;
  document.title = `${title} · sessionhub`;
  status.textContent = text;
}
const loginToken = new URLSearchParams(location.search).get("token");
// The link works once; keep it out of the history and of any later Referer.
history.replaceState(null, "", "/tg_auth");

if (!loginToken) {
  failed("Login link incomplete", "This login link is incomplete. Ask the bot for a new one with /login.");
} else {
  signInWithLoginToken(loginToken).then(
    () => location.replace("/session"),
    (err) =>
      err.code === "unauthorized"
        ? failed("Login link expired", "This login link was used already or has expired. Ask the bot for a new one with /login.")
        : failed("Signing in failed", `Signing in failed: ${err.message}`),
  );
}
