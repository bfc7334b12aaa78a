/**
 * This browser's listening device id (`device_id` of listening reports), shared by the player
 * (web/js/player.js) and the history (web/js/history.js).
 *
 * Made from the signed-in device (`GET /api/auth/me`'s `device_id`) when there is one: the site's
 * storage cleared with its cookies kept brings the same identity and device back from the cookie,
 * and so the same id here, where a random one made the person's own plays read "Another browser"
 * (audit "returning"). A hash of the device, in the random ids' shape (`web-` and 8 hex digits).
 */

export const DEVICE_KEY = "sessionhub.listening.device";

/** The listening device id of a signed-in device (FNV-1a, 32 bits, of its id). */
export function listeningDeviceOf(signedInDeviceId) {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(signedInDeviceId)) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return `web-${hash.toString(16).padStart(8, "0")}`;
}
