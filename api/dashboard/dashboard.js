// The ridgerider dashboard: plain JS over the HTTP API, with the key in session storage only.
"use strict";

const KEY = "ridgerider-key";
const PAGE = 50;
const ENSEMBLE = 20;  // solutions whose models one ensemble request evaluates, at most
const MAX_DRAWN = 2000;  // critical points the tree view draws at most
const FOLD_ABOVE = 150;  // a tree of more points opens folded below the start's rides
const SLOT = 48;  // px between neighbouring points of a row at least (wider labels widen it)
const ROW = 110;  // px between depths
const LEGIBLE = 0.5;  // the least zoom at which the tree's 9 px labels are drawn
const ENDED = ["finished", "failed", "cancelled"];
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const state = { job: null, sort: "id", cursors: [null], page: 0, rows: [], picked: new Set(),
  stream: null, graph: null, redraw: 0, chosen: null, folded: null, following: true,
  view: { x: 0, y: 0, zoom: 1 } };

class ApiError extends Error {
  constructor(status, body) {
    super(body.detail || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, ...options.headers };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) signOut("the key was refused");
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new ApiError(response.status, body);
  }
  return options.raw ? response : response.json();
}

function element(tag, attributes = {}, ...children) {
  const made = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") made.textContent = value;
    else if (name.startsWith("on")) made.addEventListener(name.slice(2), value);
    else made.setAttribute(name, value);
  }
  made.append(...children);
  return made;
}

const number = (value) => (value === null || value === undefined ? "–"
  : Number.isInteger(value) ? String(value) : Number(value).toPrecision(4));

// Signing in and out.

async function signIn(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key").value.trim());
  $("key").value = "";
  try {
    await api("/jobs?limit=1");
  } catch (error) {
    $("login-error").textContent = error.message;
    return;
  }
  show();
}

function signOut(reason = "") {
  sessionStorage.removeItem(KEY);
  if (state.stream) state.stream.abort();
  clearTimeout(state.jobsTimer);
  clearTimeout(state.redraw);
  state.redraw = 0;
  state.job = null;
  $("login-error").textContent = reason;
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("jobs").tBodies[0].replaceChildren();
  delete $("jobs").dataset.loaded;
}

async function show() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  $("job-section").hidden = true;
  await Promise.all([refreshJobs(), buildSubmitForm()]);
}

// Jobs: the list, the submission form, cancelling.

async function refreshJobs() {
  const page = await api("/jobs?limit=50");
  const body = $("jobs").tBodies[0];
  body.replaceChildren(...page.jobs.map((job) => {
    const p = job.progress || {};
    const budgets = [`${job.spec.max_nodes ?? "auto"} points`, `depth ${job.spec.max_depth ?? "auto"}`];
    if (job.spec.max_seconds) budgets.push(`${job.spec.max_seconds} s`);
    if (job.spec.max_hvps) budgets.push(`${job.spec.max_hvps} HVPs`);
    const live = ["queued", "running", "finalising"].includes(job.status);
    return element("tr", { "data-job": job.id },
      element("td", { text: job.id }), element("td", { class: "text", text: job.problem }),
      element("td", { class: "text status", text: job.status }),
      element("td", { text: p.nodes ?? "" }), element("td", { text: p.minima ?? "" }),
      element("td", { text: p.rides ?? "" }), element("td", { text: p.outstanding ?? "" }),
      element("td", { class: "text", text: budgets.join(", ") }),
      element("td", {},
        element("button", { text: "Open", onclick: () => openJob(job.id) }),
        live ? element("button", { text: "Cancel", onclick: () => cancel(job.id) }) : ""));
  }));
  $("jobs").dataset.loaded = "true";
  clearTimeout(state.jobsTimer);
  if (page.jobs.some((job) => !ENDED.includes(job.status))) {
    state.jobsTimer = setTimeout(() => refreshJobs().catch(() => {}), 3000);
  }
}

async function cancel(jobId) {
  await api(`/jobs/${jobId}/cancel`, { method: "POST" }).catch(notice);
  await refreshJobs();
}

function notice(error) {
  // An error of an action that has no place of its own on the page.
  $("notice").textContent = error ? error.message : "";
}

function fieldInput(name, schema, value) {
  const options = schema.enum || (schema.kind === "choice" ? schema.choices
    : schema.type === "boolean" ? ["true", "false"] : null);
  let input;
  if (options) {
    input = element("select", { name }, ...options.map((o) => element("option", { text: o })));
    if (schema.nullable || value === null) {  // the problem's own default, sent as nothing
      input.prepend(element("option", { value: "", text: "(default)" }));
    }
    input.value = value === null || value === undefined ? "" : String(value);
  } else {
    const numeric = ["integer", "number"].includes(schema.type || schema.kind);
    input = element("input", { name, type: numeric ? "number" : "text", step: "any" });
    if (value !== null && value !== undefined) input.value = value;
    if (schema.minimum !== undefined && schema.minimum !== null) input.min = schema.minimum;
    if (schema.maximum !== undefined && schema.maximum !== null) input.max = schema.maximum;
  }
  const range = schema.allowed || [schema.minimum ?? schema.exclusiveMinimum, schema.maximum]
    .map((bound) => bound ?? "").join(" … ");
  return element("label", { "data-field": name }, name, input,
    element("small", { text: [schema.description || schema.help, range.trim() !== "…" ? range : ""]
      .filter(Boolean).join(" · ") }),
    element("span", { class: "field-error" }));
}

async function buildSubmitForm() {
  if ($("problem-fields").querySelector("select")) return;
  const [problems, openapi] = await Promise.all([api("/problems"), fetch("/openapi.json")
    .then((r) => r.json())]);
  state.problems = Object.fromEntries(problems.map((p) => [p.name, p]));
  const chooser = element("select", { name: "problem-name", onchange: problemChanged },
    ...problems.map((p) => element("option", { text: p.name })));
  $("problem-fields").append(element("label", { "data-field": "problem" }, "problem", chooser,
    element("small", { id: "problem-doc" }), element("span", { class: "field-error" })),
  element("span", { id: "problem-parameters" }));
  problemChanged();
  const spec = openapi.components.schemas.JobSubmission.properties;
  for (const [name, schema] of Object.entries(spec)) {
    if (name === "problem") continue;
    const plain = schema.anyOf ? { ...schema, ...schema.anyOf[0] } : schema;
    $("spec-fields").append(fieldInput(name, plain, schema.default));
  }
}

function problemChanged() {
  const problem = state.problems[$("problem-fields").querySelector("select").value];
  $("problem-doc").textContent = problem.doc;
  $("problem-parameters").replaceChildren(...Object.entries(problem.parameters)
    .map(([name, info]) => fieldInput(`parameter:${name}`, info, info.default)));
}

async function submitJob(event) {
  event.preventDefault();
  const form = $("submit-form");
  form.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
  $("submit-error").textContent = "";
  const parameters = [];
  const spec = {};
  for (const input of form.querySelectorAll("input, select")) {
    if (input.value === "" || input.name === "problem-name") continue;
    const numeric = input.type === "number";
    if (input.name.startsWith("parameter:")) {
      parameters.push(`${input.name.slice(10)}=${input.value}`);
    } else {
      const value = numeric ? Number(input.value) : input.value;
      spec[input.name] = input.value === "true" ? true : input.value === "false" ? false : value;
    }
  }
  const name = form.querySelector("select[name=problem-name]").value;
  spec.problem = parameters.length ? `${name}:${parameters.join(",")}` : name;
  try {
    const job = await api("/jobs", { method: "POST", json: spec });
    form.hidden = true;
    await refreshJobs();
    openJob(job.id);
  } catch (error) {
    showFieldErrors(error);
  }
}

function showFieldErrors(error) {
  const errors = (error.body && error.body.errors) || [];
  let placed = 0;
  for (const item of errors) {
    const field = String(item.field || "").split(".").pop();
    const label = $("submit-form").querySelector(`[data-field="${CSS.escape(field)}"] .field-error`);
    if (label) { label.textContent = item.message; placed += 1; }
  }
  if (placed < errors.length || !errors.length) $("submit-error").textContent = error.message;
}

// One job: the live tree.

async function openJob(jobId) {
  if (state.stream) state.stream.abort();
  Object.assign(state, { job: jobId, sort: "id", cursors: [null], page: 0, picked: new Set(),
    chosen: null, graph: null, tree: null, selected: null, folded: null, following: true });
  $("job-section").hidden = false;
  $("job-title").textContent = `Job ${jobId}`;
  $("filter").value = "";
  $("filter-error").textContent = "";
  $("node-details").replaceChildren();
  const [job] = await Promise.all([api(`/jobs/${jobId}`), drawTree(), loadSolutions()]);
  if (state.job === jobId && !ENDED.includes(job.status)) follow(jobId);  // ended: no changes
}

async function follow(jobId) {
  // Server-sent events through fetch (EventSource cannot send the key in a header).
  if (state.stream) state.stream.abort();  // one stream at a time: each holds one of the key's
  const controller = new AbortController();
  state.stream = controller;
  try {
    const response = await api(`/jobs/${jobId}/events`, { raw: true, signal: controller.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const blocks = buffer.split("\n\n");
      buffer = blocks.pop();
      for (const block of blocks) {
        const event = (block.match(/^event: (.*)$/m) || [])[1];
        if (!event) continue;
        if (["node", "ride", "minimum"].includes(event)) scheduleRedraw();
        if (event === "finished") {
          await Promise.all([drawTree(), loadSolutions(), refreshJobs()]);
          return;
        }
        if (event === "expired") return follow(jobId);
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") $("tree-summary").textContent = `events: ${error.message}`;
  }
}

function scheduleRedraw() {
  if (state.redraw) return;
  state.redraw = setTimeout(async () => {
    state.redraw = 0;
    await drawTree().catch(() => {});
    refreshJobs().catch(() => {});
  }, 500);
}

async function drawTree() {
  // The whole DAG is fetched and laid out, so only where it is shown and not too large to draw.
  const jobId = state.job;
  if ($("tab-tree").hidden) return;
  const points = (await api(`/jobs/${jobId}`)).progress.nodes;
  if (points > MAX_DRAWN) {
    $("tree-summary").textContent = `${points} critical points: too many to draw here; `
      + "GET /jobs/{id}/graph gives the DAG (GraphML for Gephi or yEd)";
    $("tree-view").replaceChildren();
    state.tree = null;
    return;
  }
  const graph = await api(`/jobs/${jobId}/graph`);
  if (jobId !== state.job) return;
  state.graph = graph;
  state.tree = treeOf(graph);
  if (state.folded === null) {  // the job's first drawing: a large tree opens folded
    state.folded = new Set(graph.nodes.length > FOLD_ABOVE ? foldable() : []);
  }
  renderTree();
}

function stepOf(fingerprint) {
  // The last ride of a path as [eigen index, sign]: "0+.8-" gives [8, -1]; a climb retaken
  // with short steps has its sign doubled, "0+.8--" gives [8, -2].
  const [, index, sign, doubled] = fingerprint.match(/(\d+)([+-])(\2?)$/);
  return [Number(index), (sign === "+" ? 1 : -1) * (doubled ? 2 : 1)];
}

const signText = (sign) => (sign > 0 ? "+" : "-").repeat(Math.abs(sign));

const rideName = (ride) => `${ride.eigen_index}${signText(ride.sign)} λ=${
  number(ride.eigenvalue)}`;

function treeOf(graph) {
  // The tree the paths name (each point under the point its path's last ride left), the rides
  // along it by the point they reached, the other rides (to a point first reached elsewhere),
  // and the size of each subtree.
  const byPath = new Map(graph.nodes.map((n) => [n.fingerprint, n]));
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const children = new Map(graph.nodes.map((n) => [n.id, []]));
  const parent = new Map();
  for (const node of graph.nodes) {
    if (!node.fingerprint) continue;
    const cut = node.fingerprint.lastIndexOf(".");
    const above = byPath.get(cut < 0 ? "" : node.fingerprint.slice(0, cut));
    if (above) {
      parent.set(node.id, above.id);
      children.get(above.id).push(node);
    }
  }
  const order = (node) => {  // by ridge, + before -, a ridge's climbs before their retakes
    const [index, sign] = stepOf(node.fingerprint);
    return 4 * index + 2 * (Math.abs(sign) - 1) + (sign > 0 ? 0 : 1);
  };
  children.forEach((kids) => kids.sort((a, b) => order(a) - order(b)));
  const into = new Map();
  const cross = [];
  for (const edge of graph.edges) {
    if (parent.get(edge.target) !== edge.source) cross.push(edge);
    else into.set(edge.target, [...(into.get(edge.target) || []), edge]);
  }
  const size = new Map();
  for (const node of [...graph.nodes].sort((a, b) => b.depth - a.depth)) {
    size.set(node.id, children.get(node.id).reduce((sum, kid) => sum + size.get(kid.id), 1));
  }
  const roots = graph.nodes.filter((n) => !parent.has(n.id));
  return { byId, children, parent, into, cross, size, roots };
}

function rideLabel(node, rides) {
  // The rides that reached a point from its parent: "0+ λ=-0.2405", or "0± λ=-0.2405" where
  // both directions of the ridge reached it ("0±± λ=0.41": both retaken climbs).
  if (!rides) return node.fingerprint.split(".").pop();
  const byRidge = new Map();
  rides.forEach((r) => {
    const ridge = `${r.eigen_index}${"±".repeat(Math.abs(r.sign))}`;
    byRidge.set(ridge, [...(byRidge.get(ridge) || []), r]);
  });
  return [...byRidge].map(([ridge, pair]) => (pair.length > 1
    ? `${ridge} λ=${number(pair[0].eigenvalue)}` : rideName(pair[0]))).join(", ");
}

function unfolded(node, out = []) {
  // The point and the points under it that are drawn (none under a folded point), in order.
  out.push(node);
  if (!state.folded.has(node.id)) {
    state.tree.children.get(node.id).forEach((kid) => unfolded(kid, out));
  }
  return out;
}

function renderTree() {
  // Lay the unfolded tree out (each leaf a slot as wide as the widest label, a parent centred
  // over its children, so no two labels of a row meet) and draw it.
  const { graph, tree, folded } = state;
  const shown = tree.roots.flatMap((root) => unfolded(root));
  const drawn = new Set(shown.map((n) => n.id));
  const groups = shown.map((node) => {
    const name = node.kind === "minimum" ? "min" : `${node.kind} ${node.index}`;
    const group = element("svg:g", { class: `node ${node.kind}`, "data-node": node.id,
      "data-depth": node.depth, onclick: () => showNode(node),
      ondblclick: () => zoomToSubtree(node.id) },
    element("svg:circle", { r: 8 }), element("svg:text", { x: 10, y: 4, text: name }));
    if (tree.children.get(node.id).length) {
      const hidden = tree.size.get(node.id) - 1;
      const text = folded.has(node.id) ? `+${hidden}` : "−";
      group.append(element("svg:g", { class: "toggle", "data-toggle": node.id,
        transform: "translate(0,21)",
        onclick: (event) => { event.stopPropagation(); toggle(node.id); } },
      element("svg:rect", { x: -4 - 3 * text.length, y: -7, width: 8 + 6 * text.length,
        height: 13, rx: 3 }),
      element("svg:text", { y: 3, "text-anchor": "middle", text }),
      element("svg:title", { text: folded.has(node.id) ? `unfold: ${hidden} points below`
        : "fold the points below" })));
    }
    return group;
  });
  const inTree = shown.filter((node) => tree.parent.has(node.id));
  const lines = inTree.map((node) => element("svg:line", { class: "edge",
    "data-edge": `${tree.parent.get(node.id)}-${node.id}` }));
  const labels = inTree.map((node) => element("svg:text", { class: "edge-label",
    "data-ride-to": node.id, "text-anchor": "middle",
    text: rideLabel(node, tree.into.get(node.id)) }));
  const cross = tree.cross.filter((e) => drawn.has(e.source) && drawn.has(e.target));
  const crossLines = cross.map((edge) => element("svg:line", { class: "edge cross",
    "data-edge": `${edge.source}-${edge.target}` }, element("svg:title", { text: rideName(edge) })));
  const view = $("tree-view");
  view.replaceChildren(...crossLines, ...lines, ...labels, ...groups);
  $("tree").classList.remove("small");  // measured while drawn; applyView hides them again
  const widest = (texts) => Math.max(0, ...texts.map((t) => t.getComputedTextLength()));
  const names = widest(groups.map((g) => g.children[1]));
  const slot = Math.max(SLOT, widest(labels) + 12, names + 26);
  const place = new Map();
  let leaves = 0;
  const layout = (node) => {
    const kids = folded.has(node.id) ? [] : tree.children.get(node.id);
    kids.forEach(layout);
    const x = kids.length ? (place.get(kids[0].id).x + place.get(kids[kids.length - 1].id).x) / 2
      : (leaves++ + 0.5) * slot;
    place.set(node.id, { x, y: 40 + node.depth * ROW });
  };
  tree.roots.forEach(layout);
  shown.forEach((node, i) => {
    const at = place.get(node.id);
    groups[i].setAttribute("transform", `translate(${at.x},${at.y})`);
  });
  const join = (line, a, b) => Object.entries({ x1: a.x, y1: a.y, x2: b.x, y2: b.y })
    .forEach(([k, v]) => line.setAttribute(k, v));
  inTree.forEach((node, i) => {
    const at = place.get(node.id);
    join(lines[i], place.get(tree.parent.get(node.id)), at);
    labels[i].setAttribute("x", at.x);
    labels[i].setAttribute("y", at.y - 13);
  });
  cross.forEach((edge, i) => join(crossLines[i], place.get(edge.source), place.get(edge.target)));
  Object.assign(state, { place, slot, reach: Math.max(slot / 2, names + 14) });

  const kinds = graph.nodes.reduce((c, n) => ({ ...c, [n.kind]: (c[n.kind] || 0) + 1 }), {});
  $("tree-summary").textContent = `${graph.nodes.length} critical points (`
    + Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(", ")
    + `), ${graph.edges.length} rides`
    + (shown.length < graph.nodes.length
      ? `; ${shown.length} drawn, the rest folded (+ unfolds)` : "");
  $("tree-summary").dataset.nodes = graph.nodes.length;
  $("tree-summary").dataset.drawn = shown.length;
  const selected = tree.byId.get(state.selected);
  if (selected) highlight(selected);
  if (state.following) fitView(shown.map((n) => n.id), 1.5);
  else applyView();
}

function toggle(id) {
  // Fold or unfold the points below `id`.
  if (!state.folded.delete(id)) state.folded.add(id);
  redrawKeeping(id);
}

function foldable() {
  // The points below the start with points below them: folding them all leaves the start's rides.
  return state.graph.nodes.filter((n) => state.tree.parent.has(n.id)
    && state.tree.children.get(n.id).length).map((n) => n.id);
}

function foldAll(fold) {
  state.folded = new Set(fold ? foldable() : []);
  redrawKeeping(state.selected);
}

function redrawKeeping(id) {
  // Draw the tree again after a fold, keeping point `id` where it was on the screen (unless the
  // frame follows the whole tree, as it does until the user zooms or pans).
  const before = state.place.get(id);
  renderTree();
  const after = state.place.get(id);
  if (!state.following && before && after) {
    state.view.x += (before.x - after.x) * state.view.zoom;
    state.view.y += (before.y - after.y) * state.view.zoom;
    applyView();
  }
}

function zoomToSubtree(id) {
  // Unfold point `id` and fit the frame to it and the points drawn below it.
  state.folded.delete(id);
  state.following = false;
  renderTree();
  fitView(unfolded(state.tree.byId.get(id)).map((n) => n.id), 2);
}

function applyView() {
  // Labels and names too small to read (the overview of a wide tree) are not drawn.
  const { x, y, zoom } = state.view;
  $("tree-view").setAttribute("transform", `translate(${x},${y}) scale(${zoom})`);
  $("tree").classList.toggle("small", zoom < LEGIBLE);
}

function fitView(ids, largest) {
  // Centre the points `ids` with their labels in the tree's frame, whole, zoomed in at most
  // to `largest`.
  const frame = $("tree").getBoundingClientRect();
  const at = ids.map((id) => state.place.get(id));
  if (!at.length || !frame.width) {
    applyView();
    return;
  }
  const xs = at.map((p) => p.x);
  const ys = at.map((p) => p.y);
  const [left, right] = [Math.min(...xs) - state.slot / 2, Math.max(...xs) + state.reach];
  const [top, bottom] = [Math.min(...ys) - 30, Math.max(...ys) + 36];
  const zoom = Math.min(largest, frame.width / (right - left), frame.height / (bottom - top));
  state.view = { zoom, x: (frame.width - (right + left) * zoom) / 2,
    y: (frame.height - (bottom + top) * zoom) / 2 };
  applyView();
}

function pathTo(node) {
  // The points from the start to `node`: those its fingerprint's prefixes name.
  const byPath = new Map(state.graph.nodes.map((n) => [n.fingerprint, n.id]));
  const steps = node.fingerprint.split(".").filter(Boolean);
  return ["", ...steps.map((_, i) => steps.slice(0, i + 1).join("."))]
    .map((path) => byPath.get(path)).filter((id) => id !== undefined);
}

function highlight(node) {
  const path = pathTo(node);
  document.querySelectorAll("#tree .path").forEach((e) => e.classList.remove("path"));
  path.forEach((id, i) => {
    document.querySelector(`#tree .node[data-node="${id}"]`)?.classList.add("path");
    if (i) document.querySelector(`#tree .edge[data-edge="${path[i - 1]}-${id}"]`)
      ?.classList.add("path");
  });
}

async function showNode(node) {
  state.selected = node.id;
  highlight(node);
  const rows = [["kind", node.kind], ["index", node.index], ["loss", number(node.loss)],
    ["gradient norm", number(node.grad_norm)], ["depth", node.depth],
    ["fingerprint", node.fingerprint || "(the start)"], ["state", node.state]];
  if (node.solution_id >= 0) {
    const solution = await api(`/solutions/${node.solution_id}`);
    rows.push(["solution", solution.id], ...Object.entries(solution.metrics)
      .map(([k, v]) => [k, number(v)]));
  }
  const rides = state.graph.edges.filter((e) => e.source === node.id).map((edge) => {
    const to = state.tree.byId.get(edge.target);
    const first = state.tree.parent.get(to.id) === node.id ? "" : ", first reached from elsewhere";
    return element("li", { text: `${rideName(edge)} → ${to.kind} (point ${to.id}${first})` });
  });
  $("node-details").replaceChildren(element("table", {}, ...rows.map(([k, v]) =>
    element("tr", {}, element("th", { class: "text", text: k }), element("td", { text: v })))),
  element("p", {}, element("button", { id: "zoom-subtree", text: "Zoom to its subtree",
    onclick: () => zoomToSubtree(node.id) })),
  ...(rides.length ? [element("h3", { text: `Rides from here (${rides.length})` }),
    element("ul", { class: "rides" }, ...rides)] : []));
}

function enablePanZoom(svg) {
  // Wheel to zoom about the pointer, drag to pan; either stops the frame following the tree.
  let drag = null;
  svg.addEventListener("wheel", (event) => {
    event.preventDefault();
    const factor = event.deltaY < 0 ? 1.15 : 1 / 1.15;
    const box = svg.getBoundingClientRect();
    const px = event.clientX - box.left;
    const py = event.clientY - box.top;
    const { x, y, zoom } = state.view;
    state.view = { x: px - (px - x) * factor, y: py - (py - y) * factor, zoom: zoom * factor };
    state.following = false;
    applyView();
  });
  svg.addEventListener("mousedown", (event) => {
    drag = [event.clientX - state.view.x, event.clientY - state.view.y];
  });
  window.addEventListener("mouseup", () => { drag = null; });
  window.addEventListener("mousemove", (event) => {
    if (!drag) return;
    const [x, y] = [event.clientX - drag[0], event.clientY - drag[1]];
    const jitter = Math.abs(x - state.view.x) + Math.abs(y - state.view.y) < 3;
    if (jitter && state.following) return;  // a click, not a drag: the frame still follows
    Object.assign(state.view, { x, y });
    state.following = false;
    applyView();
  });
}

// Solutions: a page at a time from the API.

async function loadSolutions() {
  const query = new URLSearchParams({ sort: state.sort, limit: PAGE });
  const where = $("filter").value.trim();
  if (where) query.set("filter", where);
  const cursor = state.cursors[state.page];
  if (cursor) query.set("cursor", cursor);
  const asked = [state.job, state.page, state.sort, where].join("|");
  let page;
  try {
    page = await api(`/jobs/${state.job}/solutions?${query}`);
    if (asked !== [state.job, state.page, state.sort, $("filter").value.trim()].join("|")) return;
  } catch (error) {
    const item = (error.body && error.body.errors || [])[0];
    $("filter-error").textContent = item && item.position !== undefined
      ? `${item.message}\n  ${where}\n  ${" ".repeat(item.position)}^` : error.message;
    return;
  }
  $("filter-error").textContent = "";
  state.rows = page.solutions;
  state.cursors[state.page + 1] = page.next_cursor;
  $("next-page").disabled = !page.next_cursor;
  $("prev-page").disabled = state.page === 0;
  $("page-info").textContent = `page ${state.page + 1}, ${page.solutions.length} solutions`;
  renderSolutions();
}

function metricNames(rows) {
  const names = new Set();
  rows.forEach((row) => Object.keys(row.metrics).forEach((k) => names.add(k)));
  return [...names].filter((n) => !/^class_\d+_accuracy$/.test(n)).sort();
}

function solutionsTable(table, rows, pickable) {
  const names = metricNames(rows);
  const sorted = state.sort.replace(/^-/, "");
  const heading = (name, sortable = true) => element("th", {
    class: `${sortable ? "sortable" : ""} ${name === sorted ? "sorted" : ""} ${
      state.sort.startsWith("-") && name === sorted ? "descending" : ""}`,
    text: name,
    onclick: sortable && pickable ? () => sortBy(name) : () => {},
  });
  table.tHead.replaceChildren(element("tr", {}, ...(pickable ? [element("th", { text: "✓" })] : []),
    heading("id"), heading("depth"), heading("fingerprint", false), ...names.map((n) => heading(n)),
    element("th", { text: "weights" })));
  table.tBodies[0].replaceChildren(...rows.map((row) => element("tr",
    { "data-solution": row.id, class: state.picked.has(row.id) ? "picked" : "",
      onclick: () => drawClasses(row) },
    ...(pickable ? [element("td", {}, element("input", { type: "checkbox",
      ...(state.picked.has(row.id) ? { checked: "" } : {}),
      onchange: (event) => pick(row.id, event.target.checked) }))] : []),
    element("td", { text: row.id }), element("td", { text: row.depth }),
    element("td", { class: "text", text: row.fingerprint }),
    ...names.map((n) => element("td", { text: number(row.metrics[n]) })),
    element("td", {}, element("button", { text: "download",
      onclick: (event) => { event.stopPropagation(); downloadWeights(row); } })))));
}

function renderSolutions() {
  solutionsTable($("solutions"), state.rows, true);
  const names = metricNames(state.rows);
  for (const [id, fallback] of [["x-metric", "test_accuracy"], ["y-metric", "sharpness"]]) {
    const select = $(id);
    const current = select.value || (names.includes(fallback) ? fallback : names[0]);
    select.replaceChildren(...names.map((n) => element("option", { text: n })));
    select.value = current;
  }
  drawScatter();
  if (state.rows.length) drawClasses(state.rows[0]);
}

function sortBy(name) {
  state.sort = state.sort === name ? `-${name}` : name;
  state.cursors = [null];
  state.page = 0;
  loadSolutions();
}

function pick(id, on) {
  if (on) state.picked.add(id); else state.picked.delete(id);
  document.querySelector(`#solutions [data-solution="${id}"]`).classList.toggle("picked", on);
}

function paretoFront(points) {
  // Indices of the points no other point beats in both coordinates (larger is better).
  return points.map((p, i) => (points.some((q) => q.x >= p.x && q.y >= p.y
    && (q.x > p.x || q.y > p.y)) ? -1 : i)).filter((i) => i >= 0);
}

function drawScatter() {
  const svg = $("scatter");
  const xName = $("x-metric").value;
  const yName = $("y-metric").value;
  const rows = state.rows.filter((r) => Number.isFinite(r.metrics[xName])
    && Number.isFinite(r.metrics[yName]));
  const signs = [$("x-direction").value, $("y-direction").value].map((d) => (d === "max" ? 1 : -1));
  const front = new Set(paretoFront(rows.map((r) => ({ x: signs[0] * r.metrics[xName],
    y: signs[1] * r.metrics[yName] }))));
  const [w, h, m] = [460, 360, 40];
  const range = (name) => {
    const values = rows.map((r) => r.metrics[name]);
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    return [lo, hi > lo ? hi : lo + 1];
  };
  const [x0, x1] = range(xName);
  const [y0, y1] = range(yName);
  const sx = (v) => m + ((v - x0) / (x1 - x0)) * (w - 2 * m);
  const sy = (v) => h - m - ((v - y0) / (y1 - y0)) * (h - 2 * m);
  const frontPoints = rows.filter((_, i) => front.has(i))
    .sort((a, b) => a.metrics[xName] - b.metrics[xName])
    .map((r) => `${sx(r.metrics[xName])},${sy(r.metrics[yName])}`).join(" ");
  svg.replaceChildren(
    element("svg:line", { class: "axis", x1: m, y1: h - m, x2: w - m, y2: h - m }),
    element("svg:line", { class: "axis", x1: m, y1: m, x2: m, y2: h - m }),
    element("svg:text", { class: "tick", x: w / 2, y: h - 8, text: `${xName} (${number(x0)} … ${number(x1)})` }),
    element("svg:text", { class: "tick", x: 4, y: 14, text: `${yName} (${number(y0)} … ${number(y1)})` }),
    element("svg:polyline", { class: "front-line", points: frontPoints }),
    ...rows.map((r, i) => element("svg:circle", { class: `dot ${front.has(i) ? "front" : ""}`,
      cx: sx(r.metrics[xName]), cy: sy(r.metrics[yName]), r: 4 },
    element("svg:title", { text: `solution ${r.id}: ${xName} ${number(r.metrics[xName])}, ${yName} ${number(r.metrics[yName])}` }))));
}

function drawClasses(row) {
  const classes = Object.keys(row.metrics).filter((k) => /^class_\d+_accuracy$/.test(k))
    .sort((a, b) => parseInt(a.slice(6), 10) - parseInt(b.slice(6), 10));
  const extra = ["test_accuracy", "ood_accuracy"].filter((k) => k in row.metrics);
  const bars = [...classes, ...extra];
  $("classes-panel").hidden = !classes.length;
  $("classes-title").textContent = `Per-class accuracy of solution ${row.id}`
    + ("ood_accuracy" in row.metrics ? ` (out of distribution: ${number(row.metrics.ood_accuracy)})` : "");
  const width = 360 / Math.max(bars.length, 1);
  $("classes").replaceChildren(...bars.map((name, i) => {
    const value = row.metrics[name];
    const label = name.replace(/^class_(\d+)_accuracy$/, "$1").replace("_accuracy", "");
    return element("svg:g", {},
      element("svg:rect", { x: i * width + 2, y: 230 - value * 210, width: width - 4,
        height: value * 210, fill: name.startsWith("class") ? "#1d5fd0" : "#2e9d57" },
      element("svg:title", { text: `${name}: ${number(value)}` })),
      element("svg:text", { class: "tick", x: i * width + 2, y: 248, text: label }));
  }));
}

// Choosing a set, its ensemble metrics, downloads.

function choice() {
  const mode = document.querySelector("input[name=mode]:checked").value;
  const where = $("filter").value.trim() || null;
  if (mode === "pareto") {
    return { pareto: [["x-metric", "x-direction"], ["y-metric", "y-direction"]]
      .map(([m, d]) => ({ name: $(m).value, direction: $(d).value })), filter: where };
  }
  if (mode === "diverse") return { diverse: Number($("diverse-k").value), filter: where };
  return { ids: [...state.picked] };
}

async function choose(event) {
  event.preventDefault();
  $("choose-error").textContent = "";
  const asked = choice();
  try {
    let chosen;
    if (asked.ids) {
      if (!asked.ids.length) throw new Error("tick solutions in the Solutions tab first");
      const rows = await Promise.all(asked.ids.map((id) => api(`/solutions/${id}`)));
      chosen = { selection: `${rows.length} solutions chosen by hand`, solutions: rows };
    } else {
      chosen = await api(`/jobs/${state.job}/select`, { method: "POST", json: asked });
    }
    state.chosen = { asked, chosen };
    $("chosen-how").textContent = chosen.selection;
    solutionsTable($("chosen"), chosen.solutions, false);
    const ids = chosen.solutions.map((s) => s.id).slice(0, ENSEMBLE);
    if (!ids.length) throw new Error("the choice holds no solution");
    const first = ids.length < chosen.solutions.length ? ` (of the first ${ENSEMBLE})` : "";
    $("set-metrics").tBodies[0].replaceChildren(element("tr", {},
      element("td", { class: "text", text: `computing the set's ensemble metrics${first}…` })));
    const ensemble = await api(`/jobs/${state.job}/ensemble`, { method: "POST", json: { ids } });
    $("set-metrics").tBodies[0].replaceChildren(...Object.entries(ensemble.set_metrics)
      .map(([k, v]) => element("tr", {}, element("th", { class: "text", text: k.replaceAll("_", " ") }),
        element("td", { text: number(v) }))));
    drawHeatmap(ids, ensemble.disagreement);
  } catch (error) {
    $("choose-error").textContent = error.message;
  }
}

function drawHeatmap(ids, matrix) {
  const n = ids.length;
  const cell = Math.min(300 / Math.max(n, 1), 40);
  const most = Math.max(...matrix.flat(), 1e-9);  // the most disagreeing pair is darkest
  const shade = (v) => `rgb(${255 - (v / most) * 200},${255 - (v / most) * 160},255)`;
  const cells = [];
  matrix.forEach((row, i) => row.forEach((v, j) => cells.push(element("svg:rect",
    { x: 40 + j * cell, y: 40 + i * cell, width: cell, height: cell, fill: shade(v) },
    element("svg:title", { text: `${ids[i]} vs ${ids[j]}: ${number(v)}` })))));
  const labels = ids.flatMap((id, i) => [
    element("svg:text", { class: "tick", x: 40 + i * cell, y: 34, text: id }),
    element("svg:text", { class: "tick", x: 4, y: 40 + (i + 0.6) * cell, text: id })]);
  $("heatmap").replaceChildren(...cells, ...labels);
}

async function download(path, name) {
  const response = await api(path, { raw: true });
  const href = URL.createObjectURL(await response.blob());
  const link = element("a", { href, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60000);
}

async function downloadArchive() {
  $("choose-error").textContent = "";
  const asked = state.chosen ? state.chosen.asked : choice();
  if (asked.ids) {
    $("choose-error").textContent = "an archive takes a Pareto front, a diverse top-k or a filter";
    return;
  }
  const query = new URLSearchParams();
  if (asked.pareto) query.set("pareto", asked.pareto.map((o) => `${o.name}:${o.direction}`).join(","));
  if (asked.diverse) query.set("diverse", asked.diverse);
  if (asked.filter) query.set("filter", asked.filter);
  try {
    await download(`/jobs/${state.job}/export?${query}`, `ridgerider-job-${state.job}.tar.gz`);
  } catch (error) {
    $("choose-error").textContent = error.message;
  }
}

function downloadWeights(row) {
  download(`/solutions/${row.id}/weights`, `solution-${row.id}.safetensors`).catch(notice);
}

function switchTab(name) {
  document.querySelectorAll("#tabs button").forEach((b) => b.classList
    .toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((t) => { t.hidden = t.id !== `tab-${name}`; });
  if (name === "tree") drawTree().catch(notice);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", () => signOut());
  $("new-job").addEventListener("click", () => { $("submit-form").hidden = !$("submit-form").hidden; });
  $("submit-form").addEventListener("submit", submitJob);
  $("filter-form").addEventListener("submit", (event) => {
    event.preventDefault();
    Object.assign(state, { cursors: [null], page: 0 });
    loadSolutions();
  });
  $("next-page").addEventListener("click", () => { state.page += 1; loadSolutions(); });
  $("prev-page").addEventListener("click", () => { state.page -= 1; loadSolutions(); });
  for (const id of ["x-metric", "y-metric", "x-direction", "y-direction"]) {
    $(id).addEventListener("change", drawScatter);
  }
  $("choose-form").addEventListener("submit", choose);
  $("download").addEventListener("click", downloadArchive);
  document.querySelectorAll("#tabs button").forEach((b) => b
    .addEventListener("click", () => switchTab(b.dataset.tab)));
  enablePanZoom($("tree"));
  $("tree-fit").addEventListener("click", () => {
    state.following = true;
    if (state.tree) renderTree();
  });
  $("tree-unfold").addEventListener("click", () => { if (state.tree) foldAll(false); });
  $("tree-fold").addEventListener("click", () => { if (state.tree) foldAll(true); });
  if (sessionStorage.getItem(KEY)) show().catch(() => signOut());
});
