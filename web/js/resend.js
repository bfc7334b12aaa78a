/**
 * One press of Done or Process now, sent until the server answers it.
 *
 * A press carries a fresh `request_id`; the server answers a resend of that id as the press
 * itself (`repeated`), never counting it or queueing its job twice (docs/PROTOCOL.md,
 * `session_done`). So a press whose answer did not come (a stalled network: `details.unconfirmed`;
 * a connection lost before the answer) is sent again, the same press, once the connection is
 * there, instead of asking the person to press again (which, being another press, would count
 * again).
 */

import { call } from "./client.js";
import { freshId } from "./ids.js";

// A resend waits this long after the last try, and for the connection to be back.
export const RESEND_AFTER_MS = 1000;

/**
 * Whether `err` leaves a press sent but unanswered (a stalled network, a connection lost before
 * the answer): applied or not, only sending it again tells. A press never sent (offline all
 * along: `timeout` without `unconfirmed`) is not; it failed, and the page says so.
 */
export function unanswered(err) {
  return err?.details?.unconfirmed === true || err?.code === "disconnected";
}

/**
 * Emit `event` with `payload` and a fresh `request_id` until it is answered; resolves to the
 * ack, rejects with a refusal (an ApiError of another code). Options as `sendUntilAnswered`'s.
 */
export async function sendPress(socket, event, payload, options = {}) {
  return (await sendUntilAnswered(socket, event, { ...payload, request_id: freshId() }, options)).ack;
}

/**
 * Emit `event` with `payload`, the same, until it is answered: for a press with its own id, or a
 * write the same by nature when sent again (docs/PROTOCOL.md, "Sending a write again"). Resolves
 * to `{ack, resent}` (`ack` null when `doneBefore(err)` says a resend's refusal means the first
 * send did it: a delete answered `not_found`); rejects with a refusal. `onSlow` as `call`'s, for
 * the first try; `onResend(err)` each time an unanswered try is to be sent again.
 */
export async function sendUntilAnswered(socket, event, payload, { onSlow, onResend, doneBefore } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const ack = await call(socket, event, payload, undefined, attempt === 0 ? { onSlow } : {});
      return { ack, resent: attempt > 0 };
    } catch (err) {
      if (attempt > 0 && doneBefore?.(err)) return { ack: null, resent: true };
      if (!unanswered(err)) throw err;
      onResend?.(err);
      await connectedAgain(socket);
    }
  }
}

/** Resolves RESEND_AFTER_MS from now once `socket` is connected (at once if it is then). */
export function connectedAgain(socket) {
  return new Promise((resolve) => {
    setTimeout(() => {
      if (socket.connected) resolve();
      else socket.once("connect", () => resolve());
    }, RESEND_AFTER_MS);
  });
}
