/**
 * What other people do, told to a screen reader: a viewer's clip on the streamer's dashboard, a
 * co-editor's change to a pattern. Said politely, in a live region of its own (the page's own
 * messages keep theirs), and gathered: a burst is one sentence ("12 new clips"), not a queue of
 * hundreds that a screen reader would read out for minutes after the raid is over.
 */

// A text said again is emptied first, then written after this pause: a region given the same
// text again changes nothing, and a screen reader says nothing.
const REPEAT_PAUSE_MS = 100;
const repeats = new WeakMap(); // region -> the timer writing its text again

/** Say `text` in the live region `region`, again when it is the text it holds already. */
export function say(region, text) {
  clearTimeout(repeats.get(region));
  if (text === "" || region.textContent !== text) {
    region.textContent = text;
    return;
  }
  region.textContent = "";
  repeats.set(
    region,
    setTimeout(() => {
      region.textContent = text;
    }, REPEAT_PAUSE_MS),
  );
}

/**
 * News gathered for `gatherMs` after its first item, then told in one text (`tell(items)`, ""
 * for nothing to say) in `region`; one telling every `gapMs` at most, so that a burst going on
 * for a minute is a sentence every few seconds, each saying how much came since the last.
 */
export class NewsBatch {
  constructor(region, tell, { gatherMs, gapMs }) {
    this.region = region;
    this.tell = tell;
    this.gatherMs = gatherMs;
    this.gapMs = gapMs;
    this.items = [];
    this.timer = null;
    this.toldAt = Number.NEGATIVE_INFINITY;
  }

  add(item) {
    this.items.push(item);
    if (this.timer !== null) return;
    const waitMs = Math.max(this.gatherMs, this.toldAt + this.gapMs - performance.now());
    this.timer = setTimeout(() => this.flush(), waitMs);
  }

  /** Tell what was gathered now. */
  flush() {
    clearTimeout(this.timer);
    this.timer = null;
    const items = this.items;
    this.items = [];
    const text = items.length ? this.tell(items) : "";
    if (!text) return;
    say(this.region, text);
    this.toldAt = performance.now();
  }
}
