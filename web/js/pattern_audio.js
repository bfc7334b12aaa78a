/**
 * Playback with Web Audio and simple built-in synth voices (no sample files): a look-ahead
 * scheduler plays sixteenth notes at the pattern's tempo and swing.
 */
import { audible } from "./pattern_state.js";

const LOOKAHEAD_S = 0.12;
const TICK_MS = 25;

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

function envelope(ctx, at, peak, decay, out) {
  const gain = ctx.createGain();
  gain.gain.setValueAtTime(0.0001, at);
  gain.gain.exponentialRampToValueAtTime(Math.max(peak, 0.0002), at + 0.005);
  gain.gain.exponentialRampToValueAtTime(0.0001, at + decay);
  gain.connect(out);
  return gain;
}

/** One hit of `sampleId` at `at`, `semitones` off its base pitch, into `out`. */
function voice(ctx, sampleId, at, semitones, level, out) {
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
  osc.connect(envelope(ctx, at, level * 0.4, decay, out));
  osc.start(at);
  osc.stop(at + decay + 0.05);
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
  }

  get playing() {
    return this.timer !== null;
  }

  start() {
    this.ctx ??= new AudioContext();
    this.ctx.resume();
    this.step = 0;
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
    while (this.nextAt < this.ctx.currentTime + LOOKAHEAD_S) {
      const swing = this.step % 2 === 1 ? (state.swing / 100) * sixteenth * 0.5 : 0;
      this.play(state, this.step, this.nextAt + swing);
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

  play(state, step, at) {
    for (const track of audible(state.tracks)) {
      const index = step % track.stepCount;
      if (!track.steps[index]) continue;
      const lock = track.parameterLocks[index] ?? {};
      const level = track.volume * (lock.volume ?? 1);
      if (level <= 0) continue;
      const panner = this.ctx.createStereoPanner();
      panner.pan.value = track.pan ?? 0;
      panner.connect(this.ctx.destination);
      voice(this.ctx, track.sampleId, at, track.transpose + (lock.pitch ?? 0), level, panner);
    }
  }
}
