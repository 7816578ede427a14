// The enoki gateway page: lists routes and services (GET /api/info), calls
// methods and shows events over the WebSocket protocol (PROTOCOL.md).
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_EVENTS = 200;
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

function showEvent(frame) {
  const list = $("events");
  const item = el("li", { class: "event", "data-source": `${frame.service}.${frame.event_type}` },
    el("span", { class: "src" }, `${frame.service}.${frame.event_type} `),
    JSON.stringify(frame.payload));
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

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
  $("transport").textContent = `${info.transport} transport · v${info.version}`;
  const tbody = $("routes").querySelector("tbody");
  tbody.replaceChildren(...info.routes.map((r) => el("tr", {},
    el("td", { class: "method" }, r.method),
    el("td", {}, r.method === "GET" && r.params.length === 0 ? el("a", { href: r.path }, r.path) : el("code", {}, r.path)),
    el("td", {}, el("code", {}, r.rpc)),
    el("td", {}, r.summary || ""))));
  $("service-names").replaceChildren(...info.services.map((s) => el("option", { value: s.name })));
  $("services").replaceChildren(...info.services.map((s) => el("li", {},
    el("strong", {}, s.name), s.embedded ? el("span", { class: "muted" }, " (embedded) ") : " ",
    ...s.methods.map((m) => el("a", { class: "method-link", onclick: () => pick(s.name, m) }, m)))));
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
  $("call-args").focus();
}

renderSubscriptions();
connect();
loadInfo().catch((err) => notice(`could not load /api/info: ${err}`));
