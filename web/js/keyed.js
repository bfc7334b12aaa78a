/**
 * Lists that live events redraw, kept node for node.
 *
 * A list drawn anew on every change (another viewer's clip, a new recording) loses what a person
 * is doing in it: the button a keyboard user has reached (its focus goes back to the page), the
 * recording being played back (its player is replaced), and the browser's scroll anchor (a new
 * node above is not one the browser can anchor past, so everything below jumps under a finger).
 * Here every item keeps its node across redraws: built once, brought up to date in place, moved
 * only when out of place.
 */

/**
 * Make `parent`'s children the nodes of `items`, in order. `keyOf(item, index)` names an item (a
 * string unique in the list); the node of a key that was there before is kept, and
 * `update(node, item, index)` brings it up to date; a new key's node is `make(item)`, then
 * updated too (so `make` need only build the node's frame). Nodes of keys gone are removed, as
 * is any child this did not draw (an "empty" line).
 */
export function reconcile(parent, items, keyOf, make, update) {
  const kept = new Map();
  for (const child of [...parent.children]) {
    const key = child.dataset.key;
    if (key === undefined || kept.has(key)) child.remove();
    else kept.set(key, child);
  }
  const wanted = items.map((item, index) => {
    const key = String(keyOf(item, index));
    let node = kept.get(key);
    if (node) kept.delete(key);
    else {
      node = make(item);
      node.dataset.key = key;
    }
    update(node, item, index);
    return node;
  });
  for (const node of kept.values()) node.remove();
  // Moved only when out of place: a node taken out and put back loses its focus (and an audio
  // element its playback), and appending or removing one item moves nothing else.
  let at = parent.firstElementChild;
  for (const node of wanted) {
    if (node === at) at = at.nextElementSibling;
    else parent.insertBefore(node, at);
  }
}

/** Set `node`'s text when it differs (an unchanged text is not written: no mutation, no reflow). */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}
