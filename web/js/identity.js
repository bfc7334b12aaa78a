/**
 * Who am I, on every page: the current identity in the top bar (display name, editable), its
 * devices with last use and revoke, a one-time link + QR code for another device, sign out and
 * sign out everywhere. It also says so when this browser's identity could not be restored
 * (`sessionhub:identity-lost`), and offers to start over as a new guest — never silently.
 *
 * It mints nothing on its own: a first visit without an identity shows "No identity yet".
 */
import {
  ApiError,
  addPasskey,
  api,
  connect,
  forgetIdentity,
  hasToken,
  IDENTITY_KEY,
  knownIdentity,
  noAnswer,
  passkeysOffered,
  passkeysSupported,
  rememberKeptFor,
  rememberName,
  restoreIdentity,
  signedOutOnPurpose,
  signInWithPasskey,
  signOut,
  startNewGuest,
} from "./client.js";
import { durationWords, limitText } from "./text_fit.js";

// A display name's most characters as seen (storage/identity/repository.py MAX_NAME_CHARS).
const NAME_MAX = 60;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "onclick") node.addEventListener("click", value);
    else if (value !== undefined) node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

const when = (ms) => new Date(ms).toLocaleString();
const NO_PASSKEYS = "Passkeys are not set up on this server.";

let root = null; // the top bar's identity control
let panel = null; // the details panel (devices, link, sign out)
let heard = null; // the last name the server pushed ({userId, name, count}), whenever it came
let heardCount = 0; // names pushed so far

function mount() {
  const bar = document.querySelector("header.topbar") ?? document.body;
  root = el("span", { id: "identity", class: "identity", "data-state": "loading" });
  bar.append(root);
  // Escape closes the panel, as a menu's: from the name button or inside it (focus back on the
  // name), and from the page once focus has left it (focus stays where it is).
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && panel) closePanel({ focusOpener: root.contains(document.activeElement) });
  });
  // Focus moved on past the panel (Tab from its last control, a click on the page): it closes.
  // Left open, the panel lay over the page and hid the field the keyboard had reached. Focus lost
  // to nowhere (a control of the panel redrawn or disabled under it) is not leaving it.
  root.addEventListener("focusout", (event) => {
    const to = event.relatedTarget;
    if (panel && to instanceof Node && !root.contains(to)) closePanel();
  });
  window.addEventListener("sessionhub:identity-lost", (event) => showLost(event.detail));
  // The page became someone (a first visit's guest, a sign-in): show who. A reading under way
  // (the page's first, whose token was being renewed: this event) shows them already; asked
  // again after it only if it did not (it began before the guest was made, say).
  window.addEventListener("sessionhub:identity", (event) => {
    const wanted = event.detail.user_id;
    const after = () => root.dataset.userId !== wanted && load();
    loading.then(after, after);
  });
  // Renamed on another device (the server's `user_renamed`, or a connection's `follow_user`
  // answer): shown, and kept for this browser's other tabs. Heard before the page's own reading
  // of who it is was answered, it is kept for that answer (see load).
  window.addEventListener("sessionhub:renamed", (event) => {
    const { user_id: userId, name } = event.detail ?? {};
    if (typeof name !== "string" || typeof userId !== "string") return;
    heard = { userId, name, count: ++heardCount };
    if (userId !== root.dataset.userId || !shown) return;
    rememberName(userId, name);
    if (label(name) !== label(shown.name)) showName(name);
  });
  // A connection made again was told nothing while it was away: its `follow_user` answer (a
  // `sessionhub:renamed` above) carries the name as it stands now.
  // Another tab of this browser signed out, started over as a new guest or signed in: this tab
  // is that browser too, and must not go on showing who it was.
  window.addEventListener("storage", (event) => {
    if (event.key === IDENTITY_KEY || event.key === null) followOtherTab();
  });
  load();
}

function followOtherTab() {
  const known = knownIdentity();
  const state = root.dataset.state;
  // Signed out on purpose in another tab: this tab leaves what it showed of the person, as that
  // tab did (to the start page), instead of showing it under "nobody" until a reload.
  if (signedOutOnPurpose() && (state === "known" || hiddenFor)) {
    location.assign("/");
    return;
  }
  // Signed in as someone else in another tab: what this page shows (a session, a dashboard, its
  // controls) is the other person's, whom this browser no longer is. Loaded again as who it is
  // now, instead of its top bar saying one person while the page acted as the other (audit
  // "manytabs").
  if (known && !known.lost && state === "known" && root.dataset.userId && known.user_id !== root.dataset.userId) {
    location.reload();
    return;
  }
  if (known?.lost) {
    if (state !== "lost") load();
  } else if (known === null ? state !== "none" : known.user_id !== root.dataset.userId || state !== "known") {
    load();
  } else if (typeof known.name === "string" && shown && label(known.name) !== label(shown.name)) {
    showName(known.name); // renamed in another tab: the same person, with the name they chose
  }
}

/**
 * What the top bar shows for `name`, a name of the identity `me`: the name when it has one. A
 * guest without one is "Guest"; anyone else without one is shown by their user id: a token
 * minted by `sessionhub token` without `--name` (an operator's, pasted on /admin) names no one,
 * and "Guest" would say this browser is someone it is not.
 */
function label(name, me = shown) {
  // A guest kept with a passkey is no passing guest: its default name ("Guest") is not said.
  if (me?.saved === true && (!name || name === "Guest")) return "Signed in";
  return name || (me && me.guest === false ? me.user_id : "Guest");
}

/** Show `name` as the person's, here too, without asking the server again. */
function showName(name) {
  shown = { ...shown, name };
  const button = document.getElementById("identity-name");
  if (button) button.textContent = label(name);
  const field = document.getElementById("identity-name-input");
  // The open panel's field follows, unless the person is typing in it here.
  if (field && document.activeElement !== field) field.value = name;
}

// The reading of who this is under way (or the last one, settled): see "sessionhub:identity".
let loading = Promise.resolve();
let lostCount = 0; // the times the identity was found lost (see read)

function load() {
  loading = read();
  return loading;
}

async function read() {
  if (!hasToken() && knownIdentity() === null) {
    // Maybe only the cookie is left (storage cleared): try it, but never mint a guest here.
    try {
      await restoreIdentity({ orNewGuest: false });
    } catch {
      return showNone();
    }
  }
  try {
    const asked = heardCount;
    const lostBefore = lostCount;
    const me = await api("/api/auth/me");
    // The identity was found lost (a refusal elsewhere: the socket's, another request's) while
    // this reading was on its way: its answer is older than that verdict, and drew the name over
    // the lost notice, taking its way forward with it (a sign-in answered a moment before a
    // revocation reached every check).
    if (lostCount !== lostBefore) return;
    // A name the server pushed while this reading was on its way is at least as new as it.
    if (heard?.userId === me.user_id && heard.count > asked) me.name = heard.name;
    showMe(me);
  } catch (err) {
    if (err instanceof ApiError && err.code === "identity_lost") showLost(err);
    else showNone();
  }
}

function passkeySignIn() {
  if (!passkeysSupported()) return "";
  // Shown once the server says it offers passkeys: a server without them offered this way in,
  // and said only at the press that it was closed.
  const button = el(
    "button",
    { id: "identity-passkey-signin", class: "button", type: "button", hidden: "" },
    "Sign in with a passkey",
  );
  passkeysOffered().then((on) => {
    button.hidden = !on;
    button.dataset.offered = String(on); // answered: hidden now means off, not not yet known
  });
  let said = null; // the last refusal said beside the button: one at a time
  button.addEventListener("click", async () => {
    try {
      await signInWithPasskey();
      reloadOnce();
    } catch (err) {
      if (err instanceof ApiError && err.details?.reason === "off") {
        // Not a person's error to read ("…need SESSIONHUB_PUBLIC_URL"): the way is closed, say so.
        button.replaceWith(el("span", { role: "alert", class: "muted" }, NO_PASSKEYS));
        return;
      }
      said?.remove();
      said = el("span", { id: "identity-passkey-refused", role: "alert", class: "muted" }, ` ${signInRefusal(err)}`);
      button.after(said);
    }
  });
  return button;
}

/**
 * A passkey sign-in that failed, in words for people: the browser's DOMException text and the
 * server's detail are neither ("Response sign count of 2 was not greater than current count…").
 */
function signInRefusal(err) {
  if (err?.name === "NotAllowedError" || err?.name === "AbortError") return "No passkey was chosen.";
  if (err instanceof ApiError && err.details?.reason === "unknown")
    return "This passkey is not known here any more (it was removed); try another or a device link.";
  if (err instanceof ApiError && (err.details?.reason === "refused" || err.details?.reason === "challenge"))
    return "This passkey was refused; try another or a device link.";
  if (err instanceof ApiError) return err.message; // the server's own words (unreachable, busy)
  return "This browser could not use a passkey here; try a device link.";
}

function showNone() {
  root.dataset.state = "none";
  delete root.dataset.userId; // nobody: the identity shown before is not named any more
  if (signedOutOnPurpose()) return showSignedOut();
  root.replaceChildren(el("span", { class: "muted" }, "No identity yet "), passkeySignIn());
}

/**
 * This browser was signed out on purpose: it stays nobody, on every page and later visit, until
 * the person chooses how to go on (client.js SIGNED_OUT_KEY).
 */
function showSignedOut() {
  root.replaceChildren(
    el(
      "span",
      { id: "identity-signed-out", class: "notice", role: "status" },
      "You signed out on this browser. ",
      passkeySignIn(),
      " ",
      startOverButton(),
      el("span", { class: "muted" }, " Or open a device link made on a device where you are signed in."),
    ),
  );
}

function startOverButton() {
  return el(
    "button",
    { id: "identity-start-over", class: "button", type: "button", onclick: () => startOver() },
    "Start as a new guest",
  );
}

/**
 * What became of the lost identity's things, in words true for it. A guest's sign-in runs out
 * when none of its devices came back within the guest idle time, and the guest sweeper then
 * deletes what it made: "they stay with the old identity; sign in to get it back" sent a guest
 * back after 31 days looking for sessions no link or passkey could bring back.
 */
function whatBecameOfIt(err) {
  const known = knownIdentity();
  // A guest that saved a passkey is kept as long as its devices are used (`kept_for_s: null`):
  // nothing of it was deleted, and its passkey signs it in again.
  const wasGuest = String(known?.user_id ?? "").startsWith("guest-") && known?.kept_for_s !== null;
  // In days, as the identity panel said while it could (`rememberKeptFor`): that panel is gone now.
  const within =
    typeof known?.kept_for_s === "number"
      ? `within ${durationWords(known.kept_for_s)}`
      : "for as long as guests are kept";
  if (wasGuest && err.details?.reason === "expired")
    return `A guest none of whose devices comes back ${within} is deleted with what it made. If another device of yours still uses it, sign in here with a device link from there.`;
  // A guest has no passkey to sign in with: only a device still signed in as it can bring it back.
  if (wasGuest)
    return `What this guest made stays with it: if another device of yours is still signed in as it, sign in here with a device link from there. A guest no device uses is deleted with what it made ${within}.`;
  return "Your streams and sessions stay with the old identity; sign in with a device link or passkey to get it back.";
}

function showLost(err) {
  if (!root) return;
  lostCount += 1;
  // The page showed the person (their sessions, their history): it shows them no more.
  if (root.dataset.state === "known") hideTheirData(root.dataset.userId);
  root.dataset.state = "lost";
  const start = startOverButton();
  const notice = el(
    "span",
    { id: "identity-lost", class: "notice", role: "alert" },
    `${err.message} ${whatBecameOfIt(err)} `,
    passkeySignIn(),
    " ",
    start,
  );
  root.replaceChildren(notice);
}

async function startOver() {
  forgetIdentity();
  await startNewGuest();
  reloadOnce();
}

// Two ways may ask for a reload at once (Start over's own, and the new identity's arrival on a
// page that hid another's data): the second aborted the first's navigation. One is enough.
let reloading = false;

function reloadOnce() {
  if (reloading) return;
  reloading = true;
  location.reload();
}

let hiddenFor = null; // whose data the page hid when their identity went (see hideTheirData)

/**
 * The identity this page showed is gone from this browser (signed out from another device, its
 * sign-in refused for good): what the page shows of them (`<main>`: their sessions, history,
 * exports, Delete) is hidden, not left on a shared screen until a reload. The page goes on
 * underneath (its connection waits for an identity); the same person back shows it again, anyone
 * else reloads it.
 */
function hideTheirData(userId) {
  const main = document.querySelector("main:not(#identity-gone)");
  if (!main || hiddenFor) return;
  hiddenFor = userId;
  main.hidden = true;
  main.after(
    el(
      "main",
      { id: "identity-gone", class: "page" },
      el(
        "section",
        { class: "panel page-error" },
        el("h1", {}, "Not signed in on this device"),
        el("p", {}, "What this page showed is hidden: this browser is no longer signed in as who it was."),
      ),
    ),
  );
}

/** `me` is this browser again: the page it hid shows again for the same person, else reloads. */
function showTheirData(me) {
  if (!hiddenFor) return true;
  if (me.user_id !== hiddenFor) {
    reloadOnce();
    return false;
  }
  hiddenFor = null;
  document.getElementById("identity-gone")?.remove();
  const main = document.querySelector("main");
  if (main) main.hidden = false;
  return true;
}

let shown = null; // the identity the control shows (`/api/auth/me`'s answer)
let ownConnection = null; // the connection this control opened (a page without one of its own)

/**
 * A page without a Socket.IO connection of its own (`<body data-connection="none">`: the streams
 * list, /api-docs; not /admin, whose nodes table would count it) gets one for the top bar, once it knows who it is (a first visit mints
 * nothing): it follows the user's renames (client.js `connect` does, at each connect), as every
 * other page's connection does.
 */
function followOnOwnConnection() {
  if (ownConnection || document.body.dataset.connection !== "none") return;
  ownConnection = connect();
}

function showMe(me) {
  if (!showTheirData(me)) return;
  shown = me;
  rememberKeptFor(me.user_id, me.forgotten_after_s);
  followOnOwnConnection();
  root.dataset.state = "known";
  root.dataset.userId = me.user_id;
  const name = el(
    "button",
    { id: "identity-name", class: "button", type: "button", "aria-expanded": "false" },
    label(me.name, me),
  );
  name.addEventListener("click", () => (panel ? closePanel() : openPanel(shown, name)));
  panel = null; // an open panel goes with the rest of the control
  // Shown again (a device signed out from the panel, a rename): the keyboard's focus on the name
  // stays on it, not dropped to the page with the button it was on.
  const hadFocus = root.contains(document.activeElement) && document.activeElement.id === "identity-name";
  root.replaceChildren(name);
  if (hadFocus) name.focus();
}

function openPanel(me, opener) {
  opener.setAttribute("aria-expanded", "true");
  panel = el("div", { id: "identity-panel", class: "panel identity-panel" });
  root.append(panel);
  renderPanel(me);
  listPasskeys().catch(() => {});
  listDevices().catch(() => {});
}

/**
 * The devices as the server knows them now: the panel was drawn from the identity read when the
 * page loaded, and a device linked since was missing from it until a reload, with no way to sign
 * it out from here (audit "returning" F3).
 */
async function listDevices() {
  const me = await api("/api/auth/me");
  const list = document.getElementById("identity-devices");
  if (me.user_id !== shown?.user_id || !list) return;
  shown = { ...shown, devices: me.devices };
  refreshRows(list, [...deviceList(me.devices).children], "device", document.getElementById("identity-link"));
}

/**
 * A list brought up to date row by row: a row that reads the same is kept as it is. Replacing
 * the whole list while it was on screen took the keyboard's focus off a button the person had
 * just reached, and left whatever they held in it detached (a CI run's test saw the phone's name,
 * found a moment before, gone from the page). Rows are keyed by their `data-<key>`.
 */
function refreshRows(list, rows, key, fallback) {
  const focused = list.contains(document.activeElement) ? document.activeElement.closest("li") : null;
  const place = focused ? [...list.children].indexOf(focused) : -1;
  // Only a row that changed is touched: a row taken out and put back loses the focus too.
  rows.forEach((row, at) => {
    const old = list.children[at];
    if (!old) list.append(row);
    else if (!old.isEqualNode(row)) old.replaceWith(row);
  });
  while (list.children.length > rows.length) list.lastElementChild.remove();
  // The row under the focus changed (its "last used" moved on): the focus goes to its new button;
  // it went (removed): to the row now in its place, else to what the list's owner names.
  if (focused && !focused.isConnected) {
    const same = [...list.children].find((row) => row.dataset[key] === focused.dataset[key]);
    const near = same ?? list.children[Math.min(place, list.children.length - 1)];
    (near?.querySelector("button") ?? fallback)?.focus();
  }
  list.dataset.state = "current"; // as the server knows them now, not as the page's load found them
}

function deviceList(devices) {
  const list = el("ul", { id: "identity-devices" });
  for (const device of devices) list.append(deviceRow(device));
  return list;
}

function closePanel({ focusOpener = false } = {}) {
  panel?.remove();
  panel = null;
  const opener = document.getElementById("identity-name");
  opener?.setAttribute("aria-expanded", "false");
  if (focusOpener) opener?.focus();
}

function renderPanel(me) {
  const nameInput = el("input", {
    id: "identity-name-input",
    type: "text", // styled as every text field: a fingertip's target on a phone
    value: me.name || "",
    "aria-label": "Display name",
  });
  const nameNote = el("p", { id: "identity-name-note", class: "muted", role: "status" });
  limitText(nameInput, {
    chars: NAME_MAX,
    what: "A name",
    say: (text) => {
      nameNote.textContent = text;
    },
  });
  const save = el("button", { class: "button", type: "submit" }, "Save name");
  // A form: Enter in the field saves, as the button does (it did nothing before).
  const nameForm = el("form", { id: "identity-name-form" }, el("p", {}, nameInput, " ", save));
  nameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    act(save, "The name was not saved", () => rename(nameInput.value));
  });
  const devices = deviceList(me.devices);
  panel.replaceChildren(
    el(
      "p",
      { class: "muted" },
      me.guest && !me.saved
        ? "You are a guest: this browser keeps who you are."
        : me.saved
          ? "Signed in: a passkey keeps who you are, on this device or any other."
          : "Signed in.",
      ` Id: ${me.user_id}`,
    ),
    retentionNote(me),
    nameForm,
    nameNote,
    el("h2", {}, "Your devices"),
    devices,
    el(
      "p",
      {},
      el(
        "button",
        { id: "identity-link", class: "button", type: "button", onclick: () => showLink() },
        "Link another device",
      ),
    ),
    el("div", { id: "identity-link-out" }),
    el("h2", {}, "Passkeys"),
    el("ul", { id: "identity-passkeys" }),
    el(
      "p",
      {},
      el(
        "button",
        { id: "identity-add-passkey", class: "button", type: "button", onclick: () => savePasskey() },
        me.saved ? "Add another passkey" : "Keep this identity: add a passkey",
      ),
      " ",
      passkeySignIn(),
    ),
    el("p", { id: "identity-passkey-status", class: "muted", role: "status" }),
    el(
      "p",
      { class: "actions" },
      signOutButton("identity-signout", "Sign out", false),
      " ",
      signOutButton("identity-signout-all", "Sign out everywhere", true),
    ),
    el("p", { id: "identity-error", class: "notice", "data-kind": "error", role: "alert", hidden: "" }),
  );
}

/**
 * One device of the list: a short name for it ("Chrome on Linux"; its stored label, the
 * User-Agent it signed in with, in its title) and, for another device than this one, a button
 * naming the device it signs out, which asks first. A bare "Sign out" per device, before the panel's own, signed
 * another device out at once for someone who meant to sign out here.
 */
function deviceRow(device) {
  const short = deviceName(device.label);
  const used = when(device.last_used_at);
  const name = el("span", { class: "device-name", title: device.label || undefined }, short);
  if (device.current)
    return el("li", { "data-device": device.device_id }, "This device (", name, `) · last used ${used}`);
  const revoke = el(
    "button",
    { class: "button", type: "button", "aria-label": `Sign out ${short}, last used ${used}` },
    `Sign out ${short}`,
  );
  revoke.addEventListener("click", () => {
    if (!window.confirm(`Sign out ${short} (last used ${used})? It will have to sign in again.`)) return;
    act(revoke, "The device was not signed out", () => revokeDevice(device.device_id));
  });
  return el("li", { "data-device": device.device_id }, name, ` · last used ${used} `, revoke);
}

// Browsers and systems as their User-Agent names them, most specific first: Edge, Opera and
// Samsung Internet say "Chrome" too, Chrome says "Safari", Android says "Linux", iOS "Mac OS X".
// The server keeps a device's first 120 characters (handlers/auth_http.py): what comes last
// (Safari's "Safari/", Edge's "Edg/") may be cut off, so an Edge may read as its Chrome.
const BROWSERS = [
  [/\bEdg(e|A|iOS)?\//, "Edge"],
  [/\bOPR\//, "Opera"],
  [/\bSamsungBrowser\//, "Samsung Internet"],
  [/\b(Firefox|FxiOS)\//, "Firefox"],
  [/\b(Chrome|CriOS|HeadlessChrome|Chromium)\//, "Chrome"],
  [/\bAppleWebKit\/.*\bVersion\/[\d.]+/, "Safari"], // its "Safari/" ends a label cut at 120 characters
];
const SYSTEMS = [
  [/\biPhone\b/, "iPhone"],
  [/\biPad\b/, "iPad"],
  [/\bAndroid\b/, "Android"],
  [/\bCrOS\b/, "ChromeOS"],
  [/\bWindows\b/, "Windows"],
  [/\bMac OS X\b|\bMacintosh\b/, "macOS"],
  [/\bLinux\b|\bX11\b/, "Linux"],
];
const DEVICE_NAME_MAX = 32;

/** A device's name for people from the User-Agent it signed in with: "Safari on iPhone". */
function deviceName(userAgent) {
  const ua = String(userAgent ?? "").trim();
  if (!ua) return "A device";
  const browser = BROWSERS.find(([pattern]) => pattern.test(ua))?.[1];
  const system = SYSTEMS.find(([pattern]) => pattern.test(ua))?.[1];
  if (browser && system) return `${browser} on ${system}`;
  if (browser || system) return browser ?? `A browser on ${system}`;
  return ua.length > DEVICE_NAME_MAX ? `${ua.slice(0, DEVICE_NAME_MAX - 1)}…` : ua; // not a browser's
}

function signOutButton(id, text, everywhere) {
  const button = el("button", { id, class: "button", type: "button" }, text);
  button.addEventListener("click", () => {
    const warning = strandingWarning(everywhere);
    if (warning && !window.confirm(warning)) return;
    act(button, "You are still signed in", () => leave(everywhere, warning !== ""));
  });
  return button;
}

/**
 * What signing out would cost a guest with no passkey when no other device stays signed in as
 * it: nothing could sign in as that identity again, and what it made is deleted once the guests'
 * time runs out. It was done at one press, then said a device link or passkey would bring it back
 * (audit "returning" F1). "" when the person keeps a way back.
 */
function strandingWarning(everywhere) {
  const me = shown;
  if (!me?.guest || typeof me.forgotten_after_s !== "number") return ""; // a passkey signs it in again
  const others = (me.devices ?? []).filter((device) => !device.current).length;
  if (!everywhere && others > 0) return ""; // another device can make a device link
  return (
    `You are a guest without a passkey: once ${everywhere ? "every device is" : "this device is"} signed out, ` +
    `no device can sign in as this identity again, and what you made with it (voice sessions, streams, ` +
    `listening history) is deleted after ${durationWords(me.forgotten_after_s)}. To keep it, add a passkey first` +
    `${everywhere ? "" : " or link another device"}. Sign out anyway?`
  );
}

/**
 * Run what `button` asks for: the button is disabled meanwhile, and a failure (the server cannot
 * be reached, a refusal) is said in the panel, `what` first, instead of going unseen.
 */
async function act(button, what, action) {
  const error = document.getElementById("identity-error");
  error.hidden = true;
  const hadFocus = document.activeElement === button;
  button.disabled = true;
  try {
    await action();
  } catch (err) {
    // Unconfirmed (no answer came): its own words say what may have happened, not "was not".
    error.textContent = err?.details?.unconfirmed ? err.message : `${what}: ${err.message}`;
    error.hidden = false;
  } finally {
    button.disabled = false;
    // Disabled, the button dropped the keyboard's focus to the page: it gets it back (a button
    // the action took away, or a focus the action put elsewhere, is left as it is).
    const lost = document.activeElement === null || document.activeElement === document.body;
    if (hadFocus && lost && button.isConnected) button.focus();
  }
}

async function listPasskeys() {
  const list = document.getElementById("identity-passkeys");
  const status = document.getElementById("identity-passkey-status");
  const { enabled, passkeys } = await api("/api/auth/passkeys");
  if (!enabled || !passkeysSupported()) {
    document.getElementById("identity-add-passkey").hidden = true;
    // Signing in with one cannot work either: no button that only leads to a refusal.
    const signIn = panel?.querySelector("#identity-passkey-signin");
    if (signIn) signIn.hidden = true;
    status.textContent = enabled ? "This browser cannot use passkeys." : NO_PASSKEYS;
    return;
  }
  const rows = passkeys.map((key) =>
    el(
      "li",
      { "data-passkey": key.passkey_id },
      // Its label is the User-Agent that added it: named as the devices above are.
      `${key.label ? deviceName(key.label) : "Passkey"} · added ${when(key.created_at)} `,
      removeButton(key.passkey_id),
    ),
  );
  // A passkey removed by keyboard: the focus goes to the next one's Remove, or to Add.
  refreshRows(list, rows, "passkey", document.getElementById("identity-add-passkey"));
}

function removeButton(passkeyId) {
  const button = el("button", { class: "button", type: "button" }, "Remove");
  button.addEventListener("click", () => act(button, "The passkey was not removed", () => removePasskey(passkeyId)));
  return button;
}

/** How long a guest's things are kept (`forgotten_after_s`), or nothing for an identity kept for good. */
function retentionNote(me) {
  if (!me.forgotten_after_s) return "";
  return el(
    "p",
    { id: "identity-retention" },
    `What you make here is kept while you come back at least every ${durationWords(me.forgotten_after_s)}; after that, it is deleted with your guest identity. Add a passkey to keep it for good.`,
  );
}

/**
 * A passkey added or removed changes how long this identity is kept: the panel says it as the
 * server now does, and the browser remembers it (what `whatBecameOfIt` says if the identity is
 * ever lost). It kept saying "deleted with your guest identity. Add a passkey…" after one was added.
 */
async function keptChanged() {
  const me = await api("/api/auth/me");
  if (me.user_id !== shown?.user_id) return;
  shown = { ...shown, forgotten_after_s: me.forgotten_after_s };
  rememberKeptFor(me.user_id, me.forgotten_after_s);
  const note = document.getElementById("identity-retention");
  const fresh = retentionNote(me);
  if (note) note.replaceWith(fresh);
  else if (fresh) panel?.firstElementChild?.after(fresh);
}

async function savePasskey() {
  const status = document.getElementById("identity-passkey-status");
  try {
    await addPasskey();
    // Kept for good now, at once: a sign-out pressed before keptChanged's read is answered must
    // not ask as if nothing could sign in as it again (strandingWarning).
    if (shown) shown = { ...shown, forgotten_after_s: null };
    status.textContent = "Passkey added: sign in with it on any device to be you there.";
  } catch (err) {
    // Its answer lost, the server may have saved it: "No passkey added" contradicted the list
    // once it was read again (and Add again said "already saved").
    status.textContent = err?.details?.unconfirmed
      ? "No answer from the server, so the passkey may have been added: the list shows it once the connection is back."
      : `No passkey added. ${addRefusal(err)}`;
  }
  passkeysChanged(); // the status above has said what happened
}

// After a passkey was added or removed, the list and the retention note are read again: at once,
// and, while the server cannot be reached (the answer lost with the network), again after these
// pauses, so that they show what the server holds once it is back.
const RELIST_MS = [0, 2000, 5000, 10_000, 20_000];

function passkeysChanged() {
  const relist = async (waits) => {
    await new Promise((resolve) => setTimeout(resolve, waits[0]));
    try {
      await listPasskeys();
      keptChanged().catch(() => {}); // as it was shown: the next reading says it
    } catch {
      if (waits.length > 1) relist(waits.slice(1));
    }
  };
  relist(RELIST_MS);
}

/**
 * Why no passkey was added, in words for people: the browser's DOMException text ("The user
 * attempted to register an authenticator that contains one of the credentials already registered
 * with the relying party.") is not.
 */
function addRefusal(err) {
  // The authenticator holds one of this identity's passkeys already (the options exclude them).
  if (err?.name === "InvalidStateError") return "This passkey is already saved for this identity.";
  if (err?.name === "NotAllowedError" || err?.name === "AbortError") return "It was cancelled or timed out.";
  if (err instanceof ApiError && err.details?.reason === "registered")
    return "This passkey is already saved for an identity here.";
  if (err instanceof ApiError && err.code === "invalid_payload") return "The passkey was not accepted; try again.";
  if (err instanceof ApiError) return err.message; // the server's own words (unreachable, busy)
  return "This browser could not make a passkey here.";
}

async function removePasskey(passkeyId) {
  try {
    await api(`/api/auth/passkeys/${encodeURIComponent(passkeyId)}`, { method: "DELETE" });
  } catch (err) {
    // Gone either way (PROTOCOL, "Sending a write again"): a remove sent again after its answer
    // was lost said "no such passkey of yours", and the row stayed.
    if (err instanceof ApiError && err.status === 404) return;
    if (noAnswer(err)) {
      const words =
        "No answer from the server, so the passkey may have been removed: the list shows it once the connection is back.";
      throw new ApiError(err.code, words, 0, { unconfirmed: true });
    }
    throw err;
  } finally {
    passkeysChanged();
  }
}

async function rename(name) {
  const me = await api("/api/auth/me", { method: "PATCH", body: { name: name.trim() || "Guest" } });
  rememberName(me.user_id, me.name); // the browser's other tabs show it too
  await restoreIdentity().catch(() => {}); // tokens carry the new name from their next refresh
  showMe(me);
  document.getElementById("identity-name").focus(); // the Save button pressed is gone
}

async function revokeDevice(deviceId) {
  await api(`/api/auth/devices/${encodeURIComponent(deviceId)}`, { method: "DELETE" });
  closePanel({ focusOpener: true });
  load();
}

// Where a device link may lead: handlers/account_http.py NEXT_PATTERN, the same rule.
const NEXT_PATH = /^\/([A-Za-z0-9._~-][A-Za-z0-9._~/-]{0,199})?$/;

async function showLink() {
  const out = document.getElementById("identity-link-out");
  try {
    // The other device opens this page once signed in (a stream's dashboard, a pattern), not
    // always /session; a path the server would not take (it names this server's pages only)
    // is left out.
    const here = NEXT_PATH.test(location.pathname) ? `?next=${encodeURIComponent(location.pathname)}` : "";
    const link = await api(`/api/auth/link${here}`, { method: "POST" });
    // One image, named: a name on a div without a role is not read, and segno's SVG has no
    // title, so a screen reader said "image" and nothing more.
    const qr = el("div", { class: "identity-qr", role: "img", "aria-label": "QR code of the device link" });
    qr.innerHTML = link.qr_svg; // SVG made by the server from the link (segno), no user text in it
    qr.querySelector("svg")?.setAttribute("aria-hidden", "true"); // Chromium still listed it, unnamed
    const minutes = Math.round(link.expires_in_s / 60);
    out.replaceChildren(
      el("p", { class: "muted" }, `Open this on the other device within ${minutes} min; it works once.`),
      el("input", {
        id: "identity-link-url",
        type: "text",
        readonly: "",
        value: link.url,
        "aria-label": "Device link",
      }),
      qr,
    );
  } catch (err) {
    out.replaceChildren(el("p", { role: "alert" }, err.message));
  }
}

async function leave(everywhere, stranding) {
  await signOut({ everywhere, stranding });
  // Signed out, to the start page (it mints nothing). Reloaded, a page of what the person owned
  // (a session, a stream's dashboard, their history) made a new guest for itself at once, which
  // was then refused the very page: "No access to this session: it belongs to another user."
  location.assign("/");
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
else mount();
