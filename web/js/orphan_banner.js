/**
 * The orphan banner of every session page (seed 001, "Orphan Detection & Handling").
 *
 * A page's load answer says whether the session was an orphan before that load (`orphaned`:
 * unused for `orphan_days` or more; the load itself revives it). The banner is informational only:
 * dismissible, gone with the first edit (the session is active again), and shown once per
 * orphan spell in this browser: a localStorage flag remembers when it was shown, so a reload
 * or a second tab does not show it again (the session cannot turn orphan again before
 * `orphan_days` have passed since).
 *
 * Markup (each page): `#orphan-banner` with a `.orphan-days` span and an `#orphan-dismiss` button.
 */
const FLAG_PREFIX = "sessionhub.orphan-banner.";
const DAY_MS = 86_400_000;
const DEFAULT_DAYS = 90;

function shownAt(sessionId) {
  try {
    return Number(localStorage.getItem(FLAG_PREFIX + sessionId)) || 0;
  } catch {
    return 0; // storage refused (a private window): the banner shows, which is harmless
  }
}

function remember(sessionId) {
  try {
    localStorage.setItem(FLAG_PREFIX + sessionId, String(Date.now()));
  } catch {
    // as above: without storage the banner may show again on the next load
  }
}

export class OrphanBanner {
  constructor(element = document.getElementById("orphan-banner")) {
    this.element = element;
    element.querySelector("#orphan-dismiss")?.addEventListener("click", () => this.hide());
  }

  /** Show it for a load answer `{orphaned, orphan_days}` unless already shown this spell. */
  show(sessionId, { orphaned = false, orphan_days: days = DEFAULT_DAYS } = {}) {
    if (!orphaned || Date.now() - shownAt(sessionId) < days * DAY_MS) {
      this.hide();
      return;
    }
    for (const span of this.element.querySelectorAll(".orphan-days")) span.textContent = String(days);
    remember(sessionId);
    this.element.hidden = false;
  }

  hide() {
    this.element.hidden = true;
  }

  /** The session was edited (here or by anyone live): it is active again. */
  edited() {
    this.hide();
  }
}
