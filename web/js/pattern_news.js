/**
 * Other players' changes to a pattern, told to a screen reader (news.js). The grid redraws in
 * place as they edit, and a screen reader said nothing of it: a track added, removed, renamed or
 * cleared, the pattern renamed, the tempo set, a player joining or leaving are told, and steps are
 * counted, not told one by one (a player drumming in a beat would be a queue of "step 5 on").
 * Gathered for 1.5 s, each player's changes in one sentence: "Alice added track Snare and changed
 * 5 steps." This page's own changes are not news: its toast says what they did.
 */
import { NewsBatch, say } from "./news.js";

const GATHER_MS = 1500;
const GAP_MS = 3000;
// Past this many names in one clause, a count: "added 5 tracks".
const NAMES_MAX = 3;

// An item of news: {who, kind, ...}, kind "added" | "removed" | "cleared" (with the track's name),
// "renamed" (from, to), "name" (to: the pattern's, "" for none), "tempo" (to), "steps" (count),
// "joined" | "left" (with the player's user).

/**
 * What `op` by `who` changes, read against `state`, the state before it applies: news items, none
 * for a change not told (a volume, a mute: heard, and the grid shows them).
 */
export function opNews(who, op, state) {
  const track = state.tracks.find((t) => t.id === op.trackId);
  switch (op.type) {
    case "add_track":
      return [{ who, kind: "added", name: op.track?.name ?? "" }];
    case "delete_track":
      return track ? [{ who, kind: "removed", name: track.name, trackId: track.id }] : [];
    case "rename_track":
      return track && track.name !== op.name ? [{ who, kind: "renamed", from: track.name, to: op.name }] : [];
    case "clear_track":
      return track ? [{ who, kind: "cleared", name: track.name }] : [];
    case "set_name":
      return [{ who, kind: "name", to: op.name ?? "" }];
    case "set_tempo":
      return state.tempo !== op.tempo ? [{ who, kind: "tempo", to: op.tempo }] : [];
    case "set_step":
      return track && (track.steps[op.step] === true) !== op.on ? [{ who, kind: "steps", count: 1 }] : [];
    case "toggle_step":
      return track ? [{ who, kind: "steps", count: 1 }] : [];
    default:
      return [];
  }
}

/** What a whole new state (an HTTP save by `who`) changes from `before` to `after` ({state, name}). */
export function stateNews(who, before, after) {
  const items = [];
  const was = new Map(before.state.tracks.map((t) => [t.id, t]));
  const now = new Map(after.state.tracks.map((t) => [t.id, t]));
  let steps = 0;
  for (const track of after.state.tracks) {
    const old = was.get(track.id);
    if (!old) items.push({ who, kind: "added", name: track.name });
    else {
      if (old.name !== track.name) items.push({ who, kind: "renamed", from: old.name, to: track.name });
      const length = Math.max(old.steps.length, track.steps.length);
      for (let i = 0; i < length; i += 1) if ((old.steps[i] === true) !== (track.steps[i] === true)) steps += 1;
    }
  }
  for (const track of before.state.tracks) {
    if (!now.has(track.id)) items.push({ who, kind: "removed", name: track.name, trackId: track.id });
  }
  if ((before.name ?? "") !== (after.name ?? "")) items.push({ who, kind: "name", to: after.name ?? "" });
  if (before.state.tempo !== after.state.tempo) items.push({ who, kind: "tempo", to: after.state.tempo });
  if (steps) items.push({ who, kind: "steps", count: steps });
  return items;
}

function listed(parts) {
  return parts.length < 2 ? (parts[0] ?? "") : `${parts.slice(0, -1).join(", ")} and ${parts.at(-1)}`;
}

function tracks(names) {
  if (names.length > NAMES_MAX) return `${names.length} tracks`;
  return `${names.length === 1 ? "track" : "tracks"} ${listed(names)}`;
}

/** One player's changes in one sentence: "Alice added track Snare and changed 5 steps." */
function sentence(who, items) {
  const of = (kind) => items.filter((item) => item.kind === kind);
  const clauses = [];
  if (of("joined").length) clauses.push("joined");
  for (const [kind, verb] of [
    ["added", "added"],
    ["removed", "removed"],
    ["cleared", "cleared"],
  ]) {
    const names = of(kind).map((item) => item.name);
    if (names.length) clauses.push(`${verb} ${tracks(names)}`);
  }
  const renamed = of("renamed");
  if (renamed.length > NAMES_MAX) clauses.push(`renamed ${renamed.length} tracks`);
  else for (const item of renamed) clauses.push(`renamed track ${item.from} to ${item.to}`);
  const name = of("name").at(-1);
  if (name) clauses.push(name.to ? `renamed the pattern to “${name.to}”` : "took the pattern's name away");
  const tempo = of("tempo").at(-1);
  if (tempo) clauses.push(`set the tempo to ${tempo.to} BPM`);
  const steps = of("steps").reduce((sum, item) => sum + item.count, 0);
  if (steps) clauses.push(`changed ${steps} ${steps === 1 ? "step" : "steps"}`);
  if (of("left").length) clauses.push("left");
  return clauses.length ? `${who} ${listed(clauses)}.` : "";
}

function tell(items) {
  const byWho = new Map();
  for (const item of items) {
    if (!byWho.has(item.who)) byWho.set(item.who, []);
    byWho.get(item.who).push(item);
  }
  return [...byWho]
    .map(([who, theirs]) => sentence(who, theirs))
    .filter(Boolean)
    .join(" ");
}

/** Other players' changes, gathered and told in the live region `region`. */
export class PatternNews {
  constructor(region) {
    this.region = region;
    this.batch = new NewsBatch(region, tell, { gatherMs: GATHER_MS, gapMs: GAP_MS });
  }

  add(items) {
    for (const item of items) this.batch.add(item);
  }

  /** Take a gathered, not yet told `kind` ("joined" | "left") of `user` back: whether there was one.
   * A player whose connection dropped and came back within the gathering is neither news. */
  takeBack(user, kind) {
    const at = this.batch.items.findIndex((item) => item.kind === kind && item.user === user);
    if (at < 0) return false;
    this.batch.items.splice(at, 1);
    return true;
  }

  /** Said at once, not gathered: the track holding the person's focus is gone. */
  now(text) {
    say(this.region, text);
  }
}
