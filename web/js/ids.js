/** Fresh random ids for the pages. */

/**
 * 32 random hex digits. `crypto.randomUUID` exists only in secure contexts (https, localhost),
 * and a self-hosted server is often reached by a LAN name over plain http: `getRandomValues`
 * works everywhere.
 */
export function freshId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
