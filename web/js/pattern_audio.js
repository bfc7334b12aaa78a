/**
 * Playback with Web Audio and simple built-in synth voices (no sample files): a look-ahead
 * scheduler plays sixteenth notes at the pattern's tempo and swing (a track's own swing blended
 * in). As Keyboardia plays them, a tied step (its lock's `tie`) holds the note sounding on its
 * track instead of striking a new one, and an FM voice (`tone:fm-*`) sounds as its track's
 * `fmParams` say.
 */
import { audible } from "./pattern_state.js";

const LOOKAHEAD_S = 0.12;
const TICK_MS = 25;
const MAX_LATE_S = 0.03; // a step due longer ago than this is skipped, not struck late
const GATE = 0.9; // Keyboardia's gate: a note held over tied steps lasts 90 % of their length
const SWING_DELAY = 0.5; // full swing moves an off-beat half a sixteenth late

// Keyboardia's FM presets: their pitch and, when a track has no `fmParams`, their sound.
const FM_PRESETS = {
  "tone:fm-epiano": { hz: 262, decay: 0.6, harmonicity: 3.01, modulationIndex: 10 },
  "tone:fm-bass": { hz: 55, decay: 0.3, harmonicity: 2, modulationIndex: 8 },
  "tone:fm-bell": { hz: 523, decay: 1.2, harmonicity: 5.01, modulationIndex: 14 },
};

const BASE_HZ = {
  "synth:bass": 55,
  "synth:lead": 440,
  "synth:pad": 220,
  "synth:pluck": 330,
};

function noise(ctx, seconds) {
  const buffer = ctx.createBuffer(1, Math.ceil(ctx.sampleRate * seconds), ctx.sampleRate);
  const data = buffer.getChannelData(0);
  for (let i = 0; i < data.length; i += 1) data[i] = Math.random() * 2 - 1;
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  return source;
}

/** A strike at `at` that dies away over `decay` s, or, held (`holdS` > 0), does so after it. */
function envelope(ctx, at, peak, decay, out, holdS = 0) {
  const gain = ctx.createGain();
  const level = Math.max(peak, 0.0002);
  gain.gain.setValueAtTime(0.0001, at);
  gain.gain.exponentialRampToValueAtTime(level, at + 0.005);
  gain.gain.setValueAtTime(level, at + Math.max(holdS, 0.005));
  gain.gain.exponentialRampToValueAtTime(0.0001, at + holdS + decay);
  gain.connect(out);
  return gain;
}

/** An FM voice as Tone.js's FMSynth makes it: the modulator, at `harmonicity` times the note,
 * swings the carrier's frequency by `modulationIndex` times its own frequency. */
function fmVoice(ctx, note, out) {
  const preset = FM_PRESETS[note.sampleId] ?? FM_PRESETS["tone:fm-epiano"];
  const { harmonicity, modulationIndex } = note.fm ?? preset;
  const hz = preset.hz * 2 ** (note.semitones / 12);
  const { at, holdS } = note;
  const carrier = ctx.createOscillator();
  const modulator = ctx.createOscillator();
  const depth = ctx.createGain();
  carrier.frequency.setValueAtTime(hz, at);
  modulator.frequency.setValueAtTime(hz * harmonicity, at);
  depth.gain.setValueAtTime(hz * harmonicity * modulationIndex, at);
  modulator.connect(depth);
  depth.connect(carrier.frequency);
  carrier.connect(envelope(ctx, at, note.level * 0.4, preset.decay, out, holdS));
  const end = at + holdS + preset.decay + 0.05;
  for (const osc of [carrier, modulator]) {
    osc.start(at);
    osc.stop(end);
  }
}

/** One note (`notesAt`'s) into `out`. */
function voice(ctx, note, out) {
  const { sampleId, at, semitones, level, holdS } = note;
  if (sampleId.startsWith("tone:fm-")) {
    fmVoice(ctx, note, out);
    return;
  }
  const ratio = 2 ** (semitones / 12);
  if (sampleId === "kick") {
    const osc = ctx.createOscillator();
    osc.frequency.setValueAtTime(150 * ratio, at);
    osc.frequency.exponentialRampToValueAtTime(40 * ratio, at + 0.15);
    osc.connect(envelope(ctx, at, level, 0.3, out));
    osc.start(at);
    osc.stop(at + 0.35);
    return;
  }
  if (sampleId === "snare" || sampleId === "hihat" || sampleId === "clap") {
    const src = noise(ctx, 0.3);
    const filter = ctx.createBiquadFilter();
    filter.type = sampleId === "hihat" ? "highpass" : "bandpass";
    filter.frequency.value = (sampleId === "hihat" ? 7000 : 1800) * ratio;
    src.connect(filter);
    filter.connect(envelope(ctx, at, level * 0.7, sampleId === "hihat" ? 0.06 : 0.2, out));
    src.start(at);
    src.stop(at + 0.3);
    return;
  }
  const osc = ctx.createOscillator();
  osc.type = sampleId === "synth:bass" ? "sawtooth" : sampleId === "synth:lead" ? "square" : "triangle";
  osc.frequency.setValueAtTime((BASE_HZ[sampleId] ?? 262) * ratio, at);
  const decay = sampleId === "synth:pad" ? 0.8 : 0.25;
  osc.connect(envelope(ctx, at, level * 0.4, decay, out, holdS));
  osc.start(at);
  osc.stop(at + holdS + decay + 0.05);
}

/** How many steps a note struck at `index` sounds: itself and the tied steps right after it. */
function tiedLength(track, index) {
  let length = 1;
  while (length < track.stepCount) {
    const next = (index + length) % track.stepCount;
    if (!track.steps[next] || track.parameterLocks[next]?.tie !== true) break;
    length += 1;
  }
  return length;
}

/**
 * The notes `state` strikes at pattern step `step`, due at `at` (before swing). `previous` is
 * the step played just before (null at the start) and `sounding` maps a track id to the last
 * step its note was struck or held at; both say whether a tied step has a note to hold (else it
 * strikes, as Keyboardia's does). Updates `sounding`.
 */
export function notesAt(state, step, previous, at, sixteenth, sounding) {
  const tracks = audible(state.tracks);
  const heard = new Set(tracks.map((t) => t.id));
  for (const id of sounding.keys()) if (!heard.has(id)) sounding.delete(id);
  const notes = [];
  for (const track of tracks) {
    const index = step % track.stepCount;
    if (!track.steps[index]) {
      sounding.delete(track.id);
      continue;
    }
    const lock = track.parameterLocks[index] ?? {};
    const held = lock.tie === true && previous !== null && sounding.get(track.id) === previous;
    sounding.set(track.id, step);
    const level = track.volume * (lock.volume ?? 1);
    if (held || level <= 0) continue;
    const length = tiedLength(track, index);
    // Keyboardia's blend: a track's swing adds to the pattern's without passing full swing.
    const global = state.swing / 100;
    const own = (track.swing ?? 0) / 100;
    const swing = step % 2 === 1 ? (global + own - global * own) * sixteenth * SWING_DELAY : 0;
    notes.push({
      trackId: track.id,
      step: index,
      sampleId: track.sampleId,
      at: at + swing,
      holdS: length > 1 ? sixteenth * length * GATE : 0,
      semitones: track.transpose + (lock.pitch ?? 0),
      level,
      pan: track.pan ?? 0,
      fm: track.fmParams ?? null,
    });
  }
  return notes;
}

/** Plays whatever `getState()` returns at each step; `onStep(step)` follows the playhead. */
export class Player {
  constructor(getState, onStep) {
    this.getState = getState;
    this.onStep = onStep;
    this.ctx = null;
    this.timer = null;
    this.step = 0;
    this.nextAt = 0;
    this.previous = null; // the step played last, for ties
    this.sounding = new Map();
  }

  get playing() {
    return this.timer !== null;
  }

  start() {
    this.ctx ??= new AudioContext();
    this.ctx.resume();
    this.step = 0;
    this.previous = null;
    this.sounding.clear();
    this.nextAt = this.ctx.currentTime + 0.05;
    this.timer = setInterval(() => this.schedule(), TICK_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.onStep(null);
  }

  schedule() {
    const state = this.getState();
    if (!state) return;
    const sixteenth = 60 / state.tempo / 4;
    // A tick that comes late (a long task held the page) finds steps whose time has passed:
    // struck now, they would all sound in one instant. Those more than a moment late are skipped
    // as missed beats, and the pattern goes on in time; a tie after them strikes anew.
    while (this.nextAt < this.ctx.currentTime - MAX_LATE_S) {
      this.previous = null;
      this.nextAt += sixteenth;
      this.step = this.advance(state, this.step);
    }
    while (this.nextAt < this.ctx.currentTime + LOOKAHEAD_S) {
      this.play(state, this.step, this.nextAt);
      const shown = this.step;
      const delayMs = Math.max(0, (this.nextAt - this.ctx.currentTime) * 1000);
      setTimeout(() => this.playing && this.onStep(shown), delayMs);
      this.nextAt += sixteenth;
      this.step = this.advance(state, this.step);
    }
  }

  advance(state, step) {
    const region = state.loopRegion;
    if (region && step + 1 > region.end) return region.start;
    return (step + 1) % 128;
  }

  /** Strikes what pattern step `step` strikes, due at `at` (swing is added per track). */
  play(state, step, at) {
    const sixteenth = 60 / state.tempo / 4;
    const notes = notesAt(state, step, this.previous, at, sixteenth, this.sounding);
    this.previous = step;
    for (const note of notes) {
      const panner = this.ctx.createStereoPanner();
      panner.pan.value = note.pan;
      panner.connect(this.ctx.destination);
      voice(this.ctx, note, panner);
    }
  }
}
