/** Shared formatting of the stream pages: offsets as `H:MM:SS`, state labels, page paths. */

export const STATE_LABELS = { created: "Not started", active: "Live", paused: "Paused", ended: "Ended" };

/** Whole seconds, rounded down, as `H:MM:SS` (how the server's exports show them too). */
export function hms(ms) {
  const total = Math.max(0, Math.floor(Number(ms) / 1000) || 0);
  const h = Math.floor(total / 3600);
  const m = Math.floor(total / 60) % 60;
  const s = total % 60;
  return `${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
}

/** The session id of a path like `/watch/<id>` or `/streams/<id>`, or null. */
export function idFromPath(prefix) {
  const match = new RegExp(`^/${prefix}/([^/]+)/?$`).exec(location.pathname);
  if (!match) return null;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return match[1]; // the server will call it an invalid session id
  }
}
