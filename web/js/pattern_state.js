/**
 * Pattern state in the browser: the operations of docs/PROTOCOL.md applied exactly as the
 * server's op.lua applies them, so that the page's copy and Redis's never drift apart.
 */
import { freshId } from "./ids.js";

export const STEPS = 128;
export const STEP_COUNTS = [4, 8, 12, 16, 24, 32, 64];

const STATE_FIELDS = {
  set_tempo: "tempo",
  set_swing: "swing",
  set_loop_region: "loopRegion",
  set_effects: "effects",
  set_scale: "scale",
};

const TRACK_FIELDS = {
  rename_track: "name",
  set_track_sample: "sampleId",
  set_track_volume: "volume",
  set_track_pan: "pan",
  set_track_mute: "muted",
  set_track_solo: "soloed",
  set_track_transpose: "transpose",
  set_track_step_count: "stepCount",
  set_track_playback_mode: "playbackMode",
};

export function clone(value) {
  return structuredClone(value);
}

/** A new track of `sampleId` with the stored shape (128 steps and locks). */
export function newTrack(sampleId, name) {
  const id = `t-${freshId().slice(0, 8)}`;
  return {
    id,
    name,
    sampleId,
    steps: Array(STEPS).fill(false),
    parameterLocks: Array(STEPS).fill(null),
    volume: 0.8,
    muted: false,
    soloed: false,
    transpose: 0,
    stepCount: 16,
  };
}

/**
 * Apply `op` to `doc` ({state, name}) in place; `outcome` is the event's extra data (the
 * server's `on` for toggle_step). Returns false when the op does not apply (track gone).
 */
export function applyOp(doc, op, outcome = {}) {
  const state = doc.state;
  if (op.type === "set_name") {
    doc.name = op.name ?? null;
    return true;
  }
  if (op.type in STATE_FIELDS) {
    const field = STATE_FIELDS[op.type];
    state[field] = clone(op[field]);
    return true;
  }
  if (op.type === "add_track") {
    if (state.tracks.some((t) => t.id === op.track.id) || state.tracks.length >= 16) return false;
    state.tracks.push(clone(op.track));
    return true;
  }
  const index = state.tracks.findIndex((t) => t.id === op.trackId);
  if (index < 0) return false;
  const track = state.tracks[index];
  switch (op.type) {
    case "delete_track":
      state.tracks.splice(index, 1);
      return true;
    case "clear_track":
      track.steps = track.steps.map(() => false);
      track.parameterLocks = track.parameterLocks.map(() => null);
      return true;
    case "set_step":
      track.steps[op.step] = op.on;
      return true;
    case "toggle_step":
      track.steps[op.step] = typeof outcome.on === "boolean" ? outcome.on : !track.steps[op.step];
      return true;
    case "set_lock":
      track.parameterLocks[op.step] = op.lock;
      return true;
    default:
      if (op.type in TRACK_FIELDS) {
        track[TRACK_FIELDS[op.type]] = op[TRACK_FIELDS[op.type]];
        return true;
      }
      return false;
  }
}

/** Tracks that sound: the soloed ones when any is soloed, else the unmuted ones. */
export function audible(tracks) {
  const soloed = tracks.some((t) => t.soloed);
  return tracks.filter((t) => (soloed ? t.soloed : !t.muted));
}
