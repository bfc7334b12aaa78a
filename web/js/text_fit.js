/**
 * Text fields held to a limit said in characters, counted as people see them: grapheme clusters
 * (Intl.Segmenter), as the server counts them (protocol/seen_text.py), with a UTF-8 byte cap
 * behind them (20 bytes a character unless the field says otherwise).
 *
 * A field's `maxlength` counts UTF-16 units: a Hindi name of 29 letters was cut mid-syllable at
 * "60", a family emoji was cut to two of its people (another emoji), and the name saved was not
 * the one typed, without a word (audit "localeworld").
 */

const segmenter =
  typeof Intl.Segmenter === "function" ? new Intl.Segmenter(undefined, { granularity: "grapheme" }) : null;
const utf8 = new TextEncoder();
export const BYTES_PER_CHARACTER = 20;

/** A duration for people: "30 days", "12 hours", "5 minutes", "1 minute" (a short setting said
 * "1 minutes"), "45 seconds". Shared by the identity panel and the pages that say how long a
 * guest is kept. */
export function durationWords(seconds) {
  const [size, unit] =
    seconds >= 2 * 86400
      ? [86400, "day"]
      : seconds >= 2 * 3600
        ? [3600, "hour"]
        : seconds >= 60
          ? [60, "minute"]
          : [1, "second"];
  const count = Math.max(1, Math.round(seconds / size));
  return `${count} ${unit}${count === 1 ? "" : "s"}`;
}

/** The characters of `text` as a person sees them. */
export function characters(text) {
  return segmenter ? Array.from(segmenter.segment(text), (part) => part.segment) : Array.from(text);
}

/** `text` cut to at most `chars` characters and `bytes` bytes of UTF-8, whole characters only. */
export function fitted(text, chars, bytes = chars * BYTES_PER_CHARACTER) {
  const all = characters(text);
  if (all.length <= chars && utf8.encode(text).length <= bytes) return text;
  const kept = all.slice(0, chars);
  while (kept.length && utf8.encode(kept.join("")).length > bytes) kept.pop();
  return kept.join("");
}

/**
 * Hold `input` to `chars` characters (and `bytes` of UTF-8): a paste or a keystroke past them is
 * cut at a whole character, and `say(message)` tells the person ("A name holds at most 60
 * characters: cut to fit."). `what` starts that message ("A name").
 */
export function limitText(input, { chars, bytes = chars * BYTES_PER_CHARACTER, what, say }) {
  // UTF-16 units are never more than UTF-8 bytes: only a guard against a paste of megabytes.
  input.maxLength = bytes;
  const hold = () => {
    const kept = fitted(input.value, chars, bytes);
    if (kept === input.value) return;
    input.value = kept;
    const count = characters(kept).length;
    say(
      count < chars
        ? `${what} holds at most ${chars} characters, fewer of long ones like these (emoji, marks): cut to ${count}.`
        : `${what} holds at most ${chars} characters: cut to fit.`,
    );
  };
  input.addEventListener("input", hold);
  hold();
}
