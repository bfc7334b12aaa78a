/** Renders /openapi.json as a list of operations: parameters, body schema, statuses (as text). */

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function renderOperation(path, method, op) {
  const section = element("section", undefined, "panel");
  section.dataset.operation = `${method.toUpperCase()} ${path}`;
  section.append(element("h2", `${method.toUpperCase()} ${path}`));
  section.append(element("p", `${op.summary}${op.security?.length ? " · admin token" : ""}`, "muted"));
  if (op.parameters.length) {
    const list = element("ul");
    for (const param of op.parameters) {
      list.append(element("li", `${param.name} (${param.in}${param.required ? ", required" : ""}): ${JSON.stringify(param.schema)}`));
    }
    section.append(element("h3", "Parameters"), list);
  }
  if (op.requestBody) {
    section.append(element("h3", "Body"), element("pre", JSON.stringify(op.requestBody.content["application/json"].schema, null, 2), "admin-json"));
  }
  const statuses = element("ul");
  for (const [status, response] of Object.entries(op.responses)) statuses.append(element("li", `${status}: ${response.description}`));
  section.append(element("h3", "Responses"), statuses);
  return section;
}

async function start() {
  const response = await fetch("/openapi.json");
  const spec = await response.json();
  document.getElementById("api-title").textContent = spec.info.title;
  document.getElementById("api-description").textContent = spec.info.description;
  const container = document.getElementById("operations");
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) container.append(renderOperation(path, method, op));
  }
}

start();
