// The enoki gateway console: the services with their methods (GET /api/info,
// schemas from GET /asyncapi.json) and their load (GET /metrics, every two
// seconds), a try-it form built from each method's parameters, live events
// with a rate per type and a pause button, and the routes. Calls and events
// go over the WebSocket protocol (PROTOCOL.md).
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_EVENTS = 200;
const RATE_WINDOW_MS = 10000;       // events per second over the last 10 s
const LOAD_EVERY_MS = 2000;         // how often /metrics is read
let socket = null;
let nextId = 1;
const pending = new Map();          // call id -> {resolve, reject}
const subscriptions = new Set(["clock.tick", "greeter.*"]);

function token() { return localStorage.getItem("enoki.token") || ""; }

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

// ----- the WebSocket -----

function connect() {
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (token()) url.searchParams.set("token", token());
  socket = new WebSocket(url);
  socket.onopen = () => {
    setStatus(true);
    if (subscriptions.size) send({ type: "subscribe", id: nextId++, events: [...subscriptions] });
  };
  socket.onclose = (e) => {
    setStatus(false, e.reason);
    for (const { reject } of pending.values()) reject({ type: "Disconnected", message: "the connection closed" });
    pending.clear();
    setTimeout(connect, 1000);
  };
  socket.onmessage = (e) => onFrame(JSON.parse(e.data));
}

function send(frame) { socket.send(JSON.stringify(frame)); }

function setStatus(on, why) {
  const s = $("ws-status");
  s.textContent = on ? "connected" : "disconnected" + (why ? ` (${why})` : "");
  s.className = "status " + (on ? "on" : "off");
}

function onFrame(frame) {
  switch (frame.type) {
    case "event": return showEvent(frame);
    case "result": case "error": {
      const call = pending.get(frame.id);
      if (call) {
        pending.delete(frame.id);
        frame.type === "result" ? call.resolve(frame.result) : call.reject(frame.error);
      } else if (frame.type === "error") {
        notice(`error: ${frame.error.type}: ${frame.error.message}`);
      }
      return;
    }
    case "subscribed": case "unsubscribed": return renderSubscriptions();
    case "dropped": return notice(`${frame.count} events dropped (this page was too slow)`);
    default: return;
  }
}

function call(service, method, args, kwargs) {
  return new Promise((resolve, reject) => {
    if (!socket || socket.readyState !== WebSocket.OPEN) return reject({ type: "Disconnected", message: "not connected" });
    const id = `c${nextId++}`;
    pending.set(id, { resolve, reject });
    send({ type: "call", id, service, method, args, kwargs });
  });
}

// ----- events -----

const rates = new Map();            // "service.type" -> {seen, times: [ms]}
let paused = false;
let held = [];                      // events that came while paused

function showEvent(frame) {
  const source = `${frame.service}.${frame.event_type}`;
  const rate = rates.get(source) || { seen: 0, times: [] };
  rate.seen += 1;
  rate.times.push(Date.now());
  rates.set(source, rate);
  if (paused) {
    held.push(frame);
    if (held.length > MAX_EVENTS) held.shift();
    $("events-paused").textContent = `${held.length} new`;
    return;
  }
  listEvent(frame);
}

function listEvent(frame) {
  const list = $("events");
  const item = el("li", { class: "event", "data-source": `${frame.service}.${frame.event_type}` },
    el("span", { class: "src" }, `${frame.service}.${frame.event_type} `),
    JSON.stringify(frame.payload));
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

function renderRates() {
  const now = Date.now();
  const rows = [...rates.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([source, rate]) => {
    while (rate.times.length && rate.times[0] < now - RATE_WINDOW_MS) rate.times.shift();
    const perSecond = rate.times.length / (RATE_WINDOW_MS / 1000);
    return el("tr", { "data-source": source },
      el("td", {}, el("code", {}, source)),
      el("td", { class: "num" }, perSecond.toFixed(1)),
      el("td", { class: "num" }, String(rate.seen)));
  });
  $("event-rates").querySelector("tbody").replaceChildren(...rows);
}

$("events-pause").addEventListener("click", () => {
  paused = !paused;
  const button = $("events-pause");
  button.textContent = paused ? "Resume" : "Pause";
  button.setAttribute("aria-pressed", String(paused));
  if (!paused) {
    for (const frame of held) listEvent(frame);
    held = [];
    $("events-paused").textContent = "";
  }
});

function notice(text) {
  $("events").prepend(el("li", { class: "notice" }, text));
}

function renderSubscriptions() {
  const list = $("subscriptions");
  list.replaceChildren(...[...subscriptions].map((p) => el("li", {}, el("code", {}, p), " ",
    el("button", { class: "small", type: "button", title: "unsubscribe", onclick: () => {
      subscriptions.delete(p);
      send({ type: "unsubscribe", id: nextId++, events: [p] });
      renderSubscriptions();
    } }, "×"))));
}

$("sub-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const p = $("sub-pattern").value.trim();
  if (!p) return;
  subscriptions.add(p);
  send({ type: "subscribe", id: nextId++, events: [p] });
  renderSubscriptions();
});

// ----- calls -----

let asyncapi = null;                // the services' AsyncAPI document

// An AsyncAPI id, as the gateway makes them: [A-Za-z0-9_-], parts joined by "_".
function apiId(...parts) { return parts.map((p) => p.replace(/[^A-Za-z0-9_-]/g, "_")).join("_"); }

// A method's parameters (name, required, schema) and summary, as far as known.
function signature(service, method) {
  const message = asyncapi?.components?.messages?.[apiId(service, method, "request")];
  const payload = message?.payload?.properties;
  if (!payload?.kwargs?.properties) return null;
  const required = new Set(payload.kwargs.required || []);
  const order = (payload.args?.prefixItems || []).map((item) => item.title).filter(Boolean);
  const names = order.length ? order : Object.keys(payload.kwargs.properties);
  const operation = asyncapi.operations?.[apiId(service, method)] || {};
  return {
    params: names.map((name) => ({ name, required: required.has(name), schema: payload.kwargs.properties[name] || {} })),
    summary: operation.summary || "",
    description: operation.description || operation.summary || "",
  };
}

function typeOf(schema) {
  const types = [].concat(schema.type || []).filter((t) => t !== "null");
  return types.length === 1 ? types[0] : "";
}

// A starting value for a parameter, from its schema.
function example(schema) {
  if (schema.default !== undefined) return schema.default;
  if (schema.examples?.length) return schema.examples[0];
  if (schema.enum?.length) return schema.enum[0];
  switch (typeOf(schema)) {
    case "string": return "";
    case "integer": case "number": return 0;
    case "boolean": return false;
    case "array": return [];
    case "object": return {};
    default: return null;
  }
}

// The fields of the try-it form for the method now chosen.
function renderParams() {
  const service = $("call-service").value.trim();
  const method = $("call-method").value.trim();
  const sig = signature(service, method);
  const box = $("call-params");
  $("call-doc").textContent = sig?.description || "";
  if (!sig) { box.replaceChildren(); return; }
  box.replaceChildren(...sig.params.map((param) => {
    const type = typeOf(param.schema);
    const start = example(param.schema);
    const input = el("input", { "data-param": param.name, "data-type": type || "json" });
    input.value = type === "string" ? start : JSON.stringify(start);
    if (!param.required) input.placeholder = "optional";
    input.addEventListener("input", syncRaw);
    return el("label", {}, el("span", {}, param.name, param.required ? "" : " ?", " ",
      el("span", { class: "type" }, type || "JSON")), input);
  }));
  syncRaw();
}

// The JSON fields follow the parameter fields: keyword arguments only.
function syncRaw() {
  const kwargs = {};
  for (const input of $("call-params").querySelectorAll("input[data-param]")) {
    const name = input.dataset.param;
    if (input.dataset.type === "string") { kwargs[name] = input.value; continue; }
    if (input.value.trim() === "" && input.placeholder === "optional") continue;
    try { kwargs[name] = JSON.parse(input.value); } catch { kwargs[name] = input.value; }
  }
  $("call-args").value = "[]";
  $("call-kwargs").value = JSON.stringify(kwargs);
}

$("call-service").addEventListener("change", renderParams);
$("call-method").addEventListener("change", renderParams);

$("call-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("call-result");
  let args, kwargs;
  try {
    args = JSON.parse($("call-args").value || "[]");
    kwargs = JSON.parse($("call-kwargs").value || "{}");
    if (!Array.isArray(args)) args = [args];
  } catch (err) {
    out.className = "result error";
    out.textContent = `Arguments are not JSON: ${err.message}`;
    return;
  }
  out.className = "result";
  out.textContent = "…";
  try {
    const result = await call($("call-service").value.trim(), $("call-method").value.trim(), args, kwargs);
    out.className = "result ok";
    out.textContent = JSON.stringify(result, null, 2);
  } catch (err) {
    out.className = "result error";
    out.textContent = `${err.type}: ${err.message}`;
  }
});

// ----- what the gateway knows -----

async function loadInfo() {
  const info = await (await fetch("/api/info")).json();
  asyncapi = await fetch("/asyncapi.json").then((r) => r.ok ? r.json() : null).catch(() => null);
  $("transport").textContent = `${info.transport} transport · v${info.version}`;
  const tbody = $("routes").querySelector("tbody");
  tbody.replaceChildren(...info.routes.map((r) => el("tr", {},
    el("td", { class: "method" }, r.method),
    el("td", {}, r.method === "GET" && r.params.length === 0 ? el("a", { href: r.path }, r.path) : el("code", {}, r.path)),
    el("td", {}, el("code", {}, r.rpc)),
    el("td", {}, r.summary || ""))));
  $("service-names").replaceChildren(...info.services.map((s) => el("option", { value: s.name })));
  $("services").replaceChildren(...info.services.map((s) => el("div", { class: "service", "data-service": s.name },
    el("h3", {}, s.name, s.embedded ? el("span", { class: "muted" }, " embedded") : ""),
    el("div", { class: "load" }, s.embedded ? "load: …" : "load: not measured here (it runs elsewhere)"),
    el("div", { class: "bar" }, el("span", {})),
    el("ul", {}, ...s.methods.map((m) => {
      const summary = signature(s.name, m)?.summary || "";
      return el("li", {}, el("button", { class: "method-link", type: "button", "data-method": m, onclick: () => pick(s.name, m) }, m),
        summary ? el("span", { class: "summary" }, ` ${summary}`) : "");
    })))));
  const methods = new Set(info.services.flatMap((s) => s.methods));
  $("method-names").replaceChildren(...[...methods].map((m) => el("option", { value: m })));
  if (info.auth) {
    $("auth-section").hidden = false;
    $("token").value = token();
    $("token").addEventListener("change", () => { localStorage.setItem("enoki.token", $("token").value); socket && socket.close(); });
  }
}

function pick(service, method) {
  $("call-service").value = service;
  $("call-method").value = method;
  renderParams();
  ($("call-params").querySelector("input") || $("call-submit")).focus();
}

// ----- load, from the services' metrics -----

let lastLoad = null;                // {at, handled: {service: {ok, error}}}

// Prometheus' text format: "name{a="b",c="d"} value" lines.
function parseMetrics(text) {
  const series = [];
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)\{([^}]*)\} ([0-9.eE+-]+)$/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const pair of m[2].matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    series.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return series;
}

async function loadLoad() {
  const response = await fetch("/metrics");
  if (!response.ok) return;
  const series = parseMetrics(await response.text());
  const now = Date.now();
  const by = {};
  const of = (service) => (by[service] ||= { running: 0, max: 0, ok: 0, error: 0 });
  for (const { name, labels, value } of series) {
    if (!labels.service) continue;
    if (name === "enoki_workers_running") of(labels.service).running = value;
    else if (name === "enoki_max_workers") of(labels.service).max = value;
    else if (name === "enoki_entrypoint_handled_total") of(labels.service)[labels.outcome === "ok" ? "ok" : "error"] += value;
  }
  for (const card of document.querySelectorAll(".service[data-service]")) {
    const load = by[card.dataset.service];
    if (!load) continue;
    const before = lastLoad?.by[card.dataset.service];
    const seconds = lastLoad ? (now - lastLoad.at) / 1000 : 0;
    const perSecond = before && seconds > 0 ? (load.ok + load.error - before.ok - before.error) / seconds : 0;
    const text = card.querySelector(".load");
    text.replaceChildren(`workers ${load.running}/${load.max} · ${perSecond.toFixed(1)} calls/s · ${load.ok + load.error} handled · `,
      el("span", { class: load.error ? "errors" : "" }, `${load.error} errors`));
    text.dataset.handled = String(load.ok + load.error);
    text.dataset.errors = String(load.error);
    card.querySelector(".bar span").style.width = load.max ? `${Math.min(100, 100 * load.running / load.max)}%` : "0";
  }
  $("load-note").textContent = Object.keys(by).length ? "· load from /metrics, every 2 s" : "";
  lastLoad = { at: now, by };
}

renderSubscriptions();
connect();
loadInfo().then(renderParams).catch((err) => notice(`could not load /api/info: ${err}`));
setInterval(renderRates, 1000);
setInterval(() => loadLoad().catch(() => {}), LOAD_EVERY_MS);
loadLoad().catch(() => {});
