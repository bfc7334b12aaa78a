/**
 * The pattern page's edits that wait for the server's rate: ops refused `rate_limited` (nothing
 * of them applied), and every edit the person made after them, in the order they were made.
 *
 * A burst of clicks past the connection's rate had its refused ops dropped with a toast each: 64
 * quick clicks left 45 steps on and 19 "too many events; slow down". Held here, they go again,
 * one at a time, once the server's `retry_after_s` has passed (pattern.js sends them).
 */

const STEP_OPS = new Set(["set_step", "set_lock"]);
// Past this many distinct waiting edits (more than hands make in a wait of the rate) they go by
// the page's auto-save instead: one PUT of the whole state, not hundreds of ops.
export const HELD_MAX = 256;

/** What `op` sets, as a key two ops share when the later one overwrites the earlier; null: none. */
function target(op) {
  if (STEP_OPS.has(op.type)) return `${op.type} ${op.trackId} ${op.step}`;
  if (["add_track", "delete_track", "clear_track"].includes(op.type)) return null;
  return "trackId" in op ? `${op.type} ${op.trackId}` : op.type;
}

/** Whether `later` leaves nothing of `earlier`, so that `earlier` need not be sent at all. */
export function supersedes(later, earlier) {
  if (later.trackId !== undefined && later.trackId === earlier.trackId) {
    if (later.type === "delete_track") return true;
    if (later.type === "clear_track" && STEP_OPS.has(earlier.type)) return true;
  }
  const key = target(earlier);
  return key !== null && key === target(later);
}

/**
 * Whether `later`, applied (or refused `not_found`) while `earlier` was held, must be made again
 * after it: the track it edits is the one `earlier` adds, or clears under its step.
 */
export function mustFollow(earlier, later) {
  if (later.trackId === undefined) return false;
  if (earlier.type === "add_track") return earlier.track.id === later.trackId;
  return earlier.type === "clear_track" && earlier.trackId === later.trackId && STEP_OPS.has(later.type);
}

/** Edits in the order the person made them: each op's place, given as it is first seen. */
export class MadeOrder {
  #places = new WeakMap();
  #count = 0;

  of(op) {
    if (!this.#places.has(op)) this.#places.set(op, ++this.#count);
    return this.#places.get(op);
  }

  sorted(ops) {
    return [...ops].sort((a, b) => this.of(a) - this.of(b));
  }
}

/** The held ops, in made order, none overwritten by a later one. */
export class HeldOps {
  #ops = [];
  #order;

  constructor(order) {
    this.#order = order;
  }

  get length() {
    return this.#ops.length;
  }

  get ops() {
    return this.#ops;
  }

  /** Hold `op` in its place, unless one of `later` (the page's other unconfirmed ops) overwrites it. */
  add(op, later = []) {
    const place = this.#order.of(op);
    if ([...later, ...this.#ops].some((other) => this.#order.of(other) > place && supersedes(other, op))) return;
    this.#ops = this.#ops.filter((earlier) => !(this.#order.of(earlier) < place && supersedes(op, earlier)));
    const at = this.#ops.findIndex((other) => this.#order.of(other) > place);
    this.#ops.splice(at < 0 ? this.#ops.length : at, 0, op);
  }

  /** Whether `op`, answered while these wait, must be made again after one of them. */
  precede(op) {
    const place = this.#order.of(op);
    return this.#ops.some((earlier) => this.#order.of(earlier) < place && mustFollow(earlier, op));
  }

  shift() {
    return this.#ops.shift();
  }

  /** Every held op, taken out (in made order). */
  drain() {
    const ops = this.#ops;
    this.#ops = [];
    return ops;
  }
}
