/**
 * Renders /openapi.json as a list of operations by tag: parameters, body schema, statuses (as text).
 * The outline is a heading per group (h2), a heading per route under it (h3) and one per part of
 * a route (h4), with a contents of the groups at the top: the routes were h2s as their groups
 * were, and a keyboard paged through some sixty screens to find one.
 */

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

/** A schema with a top-level $ref replaced by the component it names (nested refs stay as names). */
function resolved(spec, schema) {
  const ref = schema?.$ref;
  if (!ref?.startsWith("#/components/schemas/")) return schema;
  const name = ref.slice("#/components/schemas/".length);
  return { title: name, ...spec.components.schemas[name] };
}

function who(op) {
  if (!op.security.length) return "no token";
  if (op.security.some((scheme) => Object.keys(scheme).length === 0)) return "token optional";
  return "bearer token";
}

// A schema taller than its box scrolls, and a keyboard must reach it to scroll it: then it is a
// Tab stop, named for what it shows (it was one of 24 unnamed Tab stops, scrolling or not). One
// that fits is no Tab stop. Looked at again whenever its size changes (a phone turned).
const scrollers = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(fitScrollers);

function fitScrollers(entries) {
  for (const { target } of entries) {
    const scrolls = target.scrollHeight > target.clientHeight || target.scrollWidth > target.clientWidth;
    if (scrolls) {
      target.tabIndex = 0;
      target.setAttribute("role", "region");
      target.setAttribute("aria-label", target.dataset.name);
    } else {
      target.removeAttribute("tabindex");
      target.removeAttribute("role");
      target.removeAttribute("aria-label");
    }
  }
}

function renderBody(spec, body, operation) {
  const parts = [element("h4", `Body${body.required ? "" : " (optional)"}`)];
  for (const [media, content] of Object.entries(body.content)) {
    parts.push(element("p", media, "muted"));
    const schema = element("pre", JSON.stringify(resolved(spec, content.schema), null, 2), "admin-json");
    schema.dataset.name = `Schema of the ${operation} body (${media})`;
    scrollers?.observe(schema);
    parts.push(schema);
  }
  return parts;
}

function renderOperation(spec, path, method, op) {
  const section = element("section", undefined, "panel");
  section.dataset.operation = `${method.toUpperCase()} ${path}`;
  section.append(element("h3", `${method.toUpperCase()} ${path}`));
  section.append(element("p", `${op.summary} · ${who(op)}`, "muted"));
  if (op.parameters.length) {
    const list = element("ul");
    for (const param of op.parameters) {
      list.append(
        element(
          "li",
          `${param.name} (${param.in}${param.required ? ", required" : ""}): ${JSON.stringify(param.schema)}`,
        ),
      );
    }
    section.append(element("h4", "Parameters"), list);
  }
  if (op.requestBody) section.append(...renderBody(spec, op.requestBody, section.dataset.operation));
  const statuses = element("ul");
  for (const [status, response] of Object.entries(op.responses)) {
    const types = Object.keys(response.content || {}).join(", ");
    statuses.append(element("li", `${status}: ${response.description}${types ? ` (${types})` : ""}`));
  }
  section.append(element("h4", "Responses"), statuses);
  return section;
}

async function start() {
  const response = await fetch("/openapi.json");
  const spec = await response.json();
  document.getElementById("api-title").textContent = spec.info.title;
  document.getElementById("api-description").textContent = spec.info.description;
  const byTag = new Map();
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const tag = op.tags?.[0] || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(renderOperation(spec, path, method, op));
    }
  }
  const container = document.getElementById("operations");
  const contents = document.getElementById("api-contents-list");
  const ids = new Set();
  for (const [tag, sections] of byTag) {
    const group = element("div", undefined, "api-group");
    group.dataset.tag = tag;
    const heading = element("h2", tag);
    heading.id = groupId(tag, ids);
    heading.tabIndex = -1; // a contents link's target takes the focus: Tab reads on from there
    group.append(heading, ...sections);
    container.append(group);
    contents.append(contentsEntry(heading, sections.length));
  }
  document.getElementById("api-contents").hidden = byTag.size === 0;
  container.dataset.ready = "true";
}

/** An id for a group's heading, from its tag, unlike any given before ("group-voice"). */
function groupId(tag, ids) {
  const base = `group-${tag.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  let id = base;
  for (let n = 2; ids.has(id) || document.getElementById(id); n += 1) id = `${base}-${n}`;
  ids.add(id);
  return id;
}

function contentsEntry(heading, count) {
  const link = element("a", heading.textContent, "tap-link"); // a finger's size on a touch screen
  link.href = `#${heading.id}`;
  const item = element("li");
  item.append(link, element("span", ` (${count} route${count === 1 ? "" : "s"})`, "muted"));
  return item;
}

start();
