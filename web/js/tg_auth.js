/**
 * The page behind a one-time link: a device link from "Link another device" or a chat bot's
 * `/login` link (`/tg_auth?token=...`). Trades the token for this user's identity, then opens
 * the page the link was made on (`next`), or the user's active session. A used or expired link
 * says so: the heading changes too.
 *
 * A browser that already is somebody who owns sessions and has no passkey would lose them for
 * good (its identity lives only in this browser's cookie, which the link replaces): the page
 * asks first, and redeems the link only when the person says so.
 */
import {
  ApiError,
  api,
  bdi,
  hasToken,
  knownIdentity,
  passkeysOffered,
  peekLoginToken,
  signInWithLoginToken,
  signInWithPasskey,
} from "./client.js";

const heading = document.getElementById("login-heading");
const status = document.getElementById("login-status");
const question = document.getElementById("login-confirm");
const other = document.getElementById("login-other"); // what else the person can do
const params = new URLSearchParams(location.search);
const loginToken = params.get("token");
// The page the link was made on (a stream's dashboard, say), opened once signed in: a path of
// this server's pages only (handlers/account_http.py NEXT_PATTERN), else /session.
const NEXT_PATH = /^\/([A-Za-z0-9._~-][A-Za-z0-9._~/-]{0,199})?$/;
const next = NEXT_PATH.test(params.get("next") ?? "") ? params.get("next") : "/session";
// The link works once; keep it out of the history and of any later Referer.
history.replaceState(null, "", "/tg_auth");

/**
 * `withPasskey`: the words to say instead of `message` where a passkey is a way in (this browser
 * can use one and the server offers them), with its button. A server without passkeys was
 * advised "Sign in with a passkey" of, and its button said so only when pressed.
 */
function refused(title, message, { withPasskey = "" } = {}) {
  // Signing in is over without success: the heading and the tab's title say so, not "Signing in…".
  heading.textContent = title;
  document.title = `${title} · sessionhub`;
  status.textContent = message;
  document.body.dataset.state = "refused";
  other.replaceChildren(...whatElse(false));
  if (!withPasskey) return;
  passkeysOffered().then((on) => {
    document.body.dataset.passkeys = on ? "offered" : "off"; // answered
    if (!on || document.body.dataset.state !== "refused") return;
    status.textContent = withPasskey;
    other.replaceChildren(...whatElse(true));
  });
}

/**
 * What the person can do instead: a passkey sign-in when the words offer one, and the active
 * session only for a browser that is somebody (without an identity it opens nothing).
 */
function whatElse(passkey) {
  const offers = [];
  if (passkey) offers.push(passkeyButton(), " ");
  const somebody = hasToken() || (knownIdentity() !== null && typeof knownIdentity().lost !== "string");
  const away = document.createElement("a");
  away.className = "button"; // a finger's size on a phone, as the page's other choices
  away.href = somebody ? "/session" : "/";
  away.textContent = somebody ? "Open my active session" : "Back to the start page";
  offers.push(away);
  return offers;
}

function passkeyButton() {
  const button = document.createElement("button");
  button.id = "login-passkey";
  button.className = "button primary";
  button.type = "button";
  button.textContent = "Sign in with a passkey";
  button.addEventListener("click", async () => {
    try {
      await signInWithPasskey();
      location.replace(next);
    } catch (err) {
      status.textContent =
        err instanceof ApiError && err.details?.reason === "off"
          ? "Passkeys are not set up on this server: ask for a new link."
          : "No passkey signed you in. Try another, or ask for a new link.";
    }
  });
  return button;
}

/**
 * The identity this browser would leave behind for good by becoming `owner` (the link's), or null
 * when it has none to lose.
 */
async function identityToLose(owner) {
  if (!hasToken() && knownIdentity() === null) return null; // a browser that is nobody yet
  try {
    const me = await api("/api/auth/me");
    if (me.user_id === owner.user_id || me.saved) return null; // the same person, or a passkey brings it back
    const { sessions } = await api("/api/me/sessions?limit=1");
    if (sessions.length === 0) return null;
    const passkeys = await api("/api/auth/passkeys").catch(() => ({ enabled: false }));
    return { ...me, passkeys: passkeys.enabled === true };
  } catch {
    return null; // gone already (or unreachable): nothing this link takes away
  }
}

/**
 * A link that cannot be used (`reason`, `link`: the look's answer, or a refusal's details): ended
 * by a sign-out, else used or expired. Its advice is one the person can follow: after a sign-out
 * everywhere no device is signed in to make a new link, and a bot's link was made by no device.
 */
function usedUp({ reason, link } = {}) {
  if (reason === "signed_out" && link === "bot") {
    const why = "Every device of that identity was signed out after the bot sent it.";
    refused("This link was ended by a sign-out", `${why} Send /login to the bot again for a new link.`, {
      withPasskey: `${why} Send /login to the bot again for a new link, or sign in with a passkey.`,
    });
    return;
  }
  if (reason === "signed_out") {
    const why = "The device that made it, or every device of that identity, was signed out since.";
    refused("This link was ended by a sign-out", `${why} Ask for a new link on a device still signed in.`, {
      withPasskey: `${why} Sign in with a passkey, or ask for a new link on a device still signed in.`,
    });
    return;
  }
  refused(
    "This link was already used or has expired",
    "A sign-in link works once and for a few minutes. Ask for a new one: “Link another device” on a signed-in device, or /login in the bot.",
  );
}

function redeem() {
  question.hidden = true;
  heading.textContent = "Signing in…";
  status.textContent = "Checking your sign-in link.";
  // A redemption whose answer the network lost is sent again (client.js): the page says so, not
  // "Checking your sign-in link." for seconds on end, and says what to do when none came back.
  const onRetry = () => {
    status.textContent = "No answer from the server yet: sending your sign-in link again.";
  };
  signInWithLoginToken(loginToken, { onRetry }).then(
    () => location.replace(next),
    (err) => {
      if (err.code === "unauthorized") usedUp(err.details);
      else if (err.status === 0)
        refused(
          "Signing in failed",
          "The server could not be reached, even after trying again. Check the connection, then open the link again.",
        );
      else refused("Signing in failed", err.message);
    },
  );
}

/** Look at the link first (it stays unused): ask when this browser would lose what it owns. */
async function start() {
  let owner;
  try {
    owner = await peekLoginToken(loginToken);
  } catch (err) {
    if (err.code === "unauthorized") return usedUp(err.details); // a server from before `usable`
    return redeem(); // the look failed (a server from before it, say): the exchange says the rest
  }
  // A link that cannot be used is the look's answer, not a refusal (which logs a console error).
  if (owner.usable === false) return usedUp(owner);
  const me = await identityToLose(owner);
  if (me) ask(me);
  else redeem();
}

function ask(me) {
  // The name is the person's own text: isolated, a right-to-left one keeps the sentence in place.
  const who = me.name && me.name !== "Guest" ? ["“", bdi(me.name), "”"] : ["a guest"];
  heading.textContent = "Sign this browser in as someone else?";
  document.title = "Sign in as someone else? · sessionhub";
  const keep = me.passkeys
    ? " To keep them, add a passkey to this identity first (your name at the top of any page), then open the link again."
    : "";
  status.replaceChildren(
    "This browser is ",
    ...who,
    ", with sessions of its own. Signed in with this link, it becomes the identity that made the " +
      `link: those sessions stay with the old identity, which no browser could open again.${keep}`,
  );
  document.body.dataset.state = "asking";
  question.hidden = false;
}

if (!loginToken) {
  refused(
    "This link is incomplete",
    "Ask for a new one: “Link another device” on a signed-in device, or /login in the bot.",
  );
} else {
  document.getElementById("login-continue").addEventListener("click", redeem);
  start();
}
