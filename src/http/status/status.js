// The status page's script: polls status.json every few seconds and
// draws the overview and the charts (SVG, drawn here); lists the queue a
// page at a time from status/queue (paged and searched by the relay);
// acts on a message with a POST carrying the page's token. Text from
// messages is only ever set as text, never as HTML.
"use strict";

const POLL_MS = 5000;
const PAGE_SIZE = 50;
const KINDS = ["received", "forwarded", "deferred", "failed"];
const SVG = "http://www.w3.org/2000/svg";
const token = document.querySelector('meta[name="status-token"]').content;

const view = { failed: false, search: "", cursors: [""], next: null, busy: false };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

function clock(unix) {
  if (!unix) return "";
  const d = new Date(unix * 1000);
  const same = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  return same ? time : d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "none";
  if (seconds < 90) return seconds + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  if (seconds < 172800) return Math.round(seconds / 3600) + " h";
  return Math.round(seconds / 86400) + " days";
}

function size(bytes) {
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1048576) return (bytes / 1024).toFixed(1) + " KB";
  return (bytes / 1048576).toFixed(1) + " MB";
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store", credentials: "same-origin" });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  return { status: response.status, body };
}

// The overview.

async function poll() {
  try {
    const { status, body } = await getJson("status.json");
    if (status !== 200 || !body) throw new Error("status " + status);
    overview(body);
  } catch (e) {
    const verdict = $("verdict");
    verdict.className = "verdict bad";
    verdict.textContent = "The relay does not answer (" + e.message + "): is it running?";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function overview(s) {
  $("instance").textContent = s.instance ? "(" + s.instance + ")" : "";
  $("about").textContent = "Version " + s.version + ", up " + age(s.uptime_seconds) +
    ", process " + s.pid + (s.listening.length ? ", listening on " + s.listening.join(", ") : "") +
    (s.forward_to ? ", sending to " + s.forward_to : ", not forwarding (no --forward-to)") + ".";
  $("queued").textContent = s.queued;
  $("failed").textContent = s.failed;
  $("oldest").textContent = s.queued ? age(s.oldest_seconds) : "none";
  $("received").textContent = s.received;
  verdict(s);
  routes(s);
  chart($("chart-hour"), s.hour, 10);
  chart($("chart-day"), s.day, 12);
}

function verdict(s) {
  const node = $("verdict");
  const paused = s.routes.filter((r) => r.state === "paused");
  const waiting = s.routes.filter((r) => r.state === "waiting" || r.state === "deferring");
  if (paused.length) {
    node.className = "verdict bad";
    node.textContent = "Mail is held: " + paused.map((r) => r.problem).join("; ") + ". See below for what to do.";
  } else if (waiting.length) {
    node.className = "verdict warn";
    node.textContent = "Mail is delayed: " + waiting.map((r) => r.problem).join("; ") + ". It is kept and sent later.";
  } else if (s.failed) {
    node.className = "verdict warn";
    node.textContent = "Mail is flowing, but " + s.failed + " message(s) failed: see Failed below.";
  } else if (!s.smtp_enabled) {
    node.className = "verdict warn";
    node.textContent = "The relay takes no new mail: SMTP is disabled from the admin port.";
  } else {
    node.className = "verdict ok";
    node.textContent = "All is well: mail is flowing.";
  }
}

function routes(s) {
  const list = $("routes");
  list.replaceChildren();
  if (!s.routes.length) {
    list.append(el("li", {}, s.forward_to ? "No mail sent yet." : "This relay does not forward mail."));
  }
  for (const r of s.routes) {
    const item = el("li", { class: r.state, "data-route": r.route, "data-state": r.state });
    item.append(el("div", { class: "name" }, (r.provider ? r.provider + ": " : "") + r.route));
    if (r.state === "sending") {
      item.append(el("div", { class: "state" }, "Sending: " + r.sent_last_hour + " message(s) in the last hour."));
    } else {
      const label = { paused: "Paused", waiting: "Waiting", deferring: "Not delivering" }[r.state] || r.state;
      item.append(el("div", { class: "state" },
        label + ": " + r.problem + (r.since ? " since " + clock(r.since) : "") + "." +
        (r.next_attempt ? " Next attempt at " + clock(r.next_attempt) + "." : "")));
      item.append(el("div", { class: "advice" }, r.advice));
    }
    if (r.reply) item.append(el("div", { class: "reply" }, "Last answer: " + r.reply));
    item.append(el("div", { class: "note" },
      "Since start: " + r.forwarded + " sent, " + r.deferred + " put off, " + r.failed + " failed" +
      (r.auth_failures ? ", " + r.auth_failures + " refused sign-in(s)" : "") + "."));
    list.append(item);
  }
  const tokens = $("tokens");
  tokens.replaceChildren();
  for (const t of s.tokens) {
    const soon = t.expires && t.expires - s.now < 600;
    tokens.append(el("li", { class: t.expires ? (soon ? "waiting" : "") : "paused" },
      el("div", { class: "name" }, "OAuth account " + t.account),
      el("div", { class: "state" }, t.expires ? "Token valid until " + clock(t.expires) + "." :
        "No token held yet: one is fetched when mail is sent; if sending fails, check the account's client id and secret.")));
  }
}

// A stacked bar chart of one series, drawn as SVG.
function chart(box, series, labelEvery) {
  const tick = (unix) => new Date(unix * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  const n = series.received.length;
  const width = 600, height = 160, left = 28, bottom = 16, top = 6;
  const totals = [];
  for (let i = 0; i < n; i++) totals.push(KINDS.reduce((sum, k) => sum + series[k][i], 0));
  const max = Math.max(1, ...totals);
  const scale = (height - bottom - top) / max;
  const step = (width - left) / n;
  const svg = el("svg:svg", { viewBox: "0 0 " + width + " " + height, preserveAspectRatio: "none", role: "img" });
  const sums = {};
  for (const k of KINDS) sums[k] = series[k].reduce((a, b) => a + b, 0);
  svg.setAttribute("aria-label", KINDS.map((k) => k + " " + sums[k]).join(", "));
  for (const k of KINDS) box.setAttribute("data-" + k, sums[k]);
  for (const f of [0, 0.5, 1]) {
    const y = height - bottom - f * max * scale;
    svg.append(el("svg:line", { class: "grid", x1: left, x2: width, y1: y, y2: y }));
    svg.append(el("svg:text", { x: 0, y: y + 3 }, f === 0.5 && max < 2 ? "" : String(Math.round(f * max))));
  }
  for (let i = 0; i < n; i++) {
    let y = height - bottom;
    for (const k of KINDS) {
      const value = series[k][i];
      if (!value) continue;
      const h = value * scale;
      y -= h;
      const bar = el("svg:rect", { class: k, x: left + i * step + 0.5, y, width: Math.max(1, step - 1), height: h });
      bar.append(el("svg:title", {}, k + ": " + value + " at " + clock(series.start + i * series.step)));
      svg.append(bar);
    }
    if (i % labelEvery === 0) {
      svg.append(el("svg:text", { x: left + i * step, y: height - 3 }, tick(series.start + i * series.step)));
    }
  }
  box.replaceChildren(svg);
}

// The queue.

async function loadQueue() {
  const after = view.cursors[view.cursors.length - 1];
  const params = new URLSearchParams({ state: view.failed ? "failed" : "queued", size: PAGE_SIZE });
  if (after) params.set("after", after);
  if (view.search) params.set("q", view.search);
  const note = $("queue-note");
  note.textContent = "Loading…";
  const { status, body } = await getJson("status/queue?" + params);
  const box = $("queue");
  box.replaceChildren();
  if (status === 403) {
    note.textContent = "The message list is shown to local addresses only (or start the relay with --remote-clients).";
    $("next").disabled = $("prev").disabled = $("first").disabled = true;
    return;
  }
  if (status !== 200 || !body) {
    note.textContent = "Cannot list messages: " + (body && body.error ? body.error : "status " + status);
    return;
  }
  view.next = body.next;
  const page = view.cursors.length;
  let words = body.messages.length ? "Page " + page + ": " + body.messages.length + " message(s)" :
    (page > 1 ? "No more messages" : (view.failed ? "No failed messages" : "Nothing waiting"));
  if (view.search) words += " matching “" + view.search + "”";
  if (body.partial) words += " (the search stopped after " + body.scanned + " messages to keep the relay fast: press Next to go on)";
  note.textContent = words + ".";
  $("next").disabled = !body.next;
  $("prev").disabled = $("first").disabled = page === 1;
  if (body.messages.length) box.append(table(body.messages));
}

function table(messages) {
  const head = el("tr", {}, ...["Received", "From", "To", "Subject", "Size", "Tries", view.failed ? "Reason" : "Last answer", ""].map((h) => el("th", {}, h)));
  const rows = messages.map((m) => {
    const actions = el("td", { class: "actions" });
    const button = (label, action, danger) => {
      const b = el("button", { type: "button", "data-action": action, class: danger ? "danger" : null }, label);
      b.addEventListener("click", () => act(m.id, action, b));
      actions.append(b);
    };
    if (m.state === "failed") button("Unfail", "unfail");
    if (m.state !== "busy") button(m.state === "failed" ? "Retry now" : "Retry now", "retry");
    if (m.state !== "busy") button("Delete", "delete", true);
    const show = el("button", { type: "button", "data-action": "headers" }, "Headers");
    show.addEventListener("click", () => headers(m.id));
    actions.append(show);
    const cell = (label, text) => el("td", { "data-label": label }, text);
    return el("tr", { "data-id": m.id, "data-state": m.state },
      cell("Received", age(m.age_seconds) + " ago" + (m.state === "busy" ? " (being sent)" : "")),
      cell("From", m.from || "<>"),
      cell("To", m.to.concat(m.to_local).join(", ")),
      cell("Subject", m.subject === null ? "(none)" : m.subject),
      cell("Size", size(m.size)),
      cell("Tries", String(m.attempts)),
      cell(view.failed ? "Reason" : "Last answer", m.reason || ""),
      actions);
  });
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
}

async function act(id, action, button) {
  if (action === "delete" && !confirm("Delete this message for good?\n" + id)) return;
  button.disabled = true;
  const response = await fetch("status/message/" + encodeURIComponent(id) + "/" + action, {
    method: "POST", credentials: "same-origin", headers: { "X-Status-Token": token },
  });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  const note = $("queue-note");
  if (response.ok) {
    await loadQueue();
    note.textContent = id + ": " + body.result + ". " + note.textContent;
  } else {
    note.textContent = id + ": " + (body && body.error ? body.error : "refused (" + response.status + ")");
    button.disabled = false;
  }
}

async function headers(id) {
  const { status, body } = await getJson("status/message/" + encodeURIComponent(id));
  $("headers-title").textContent = "Headers of " + id;
  $("headers-text").textContent = status === 200 ? body.headers + (body.cut ? "\n[cut: more headers follow]" : "") :
    (body && body.error ? body.error : "status " + status);
  $("headers-box").hidden = false;
}

function tab(failed) {
  view.failed = failed;
  view.cursors = [""];
  $("tab-queued").setAttribute("aria-selected", String(!failed));
  $("tab-failed").setAttribute("aria-selected", String(failed));
  loadQueue();
}

document.addEventListener("DOMContentLoaded", () => {
  $("tab-queued").addEventListener("click", () => tab(false));
  $("tab-failed").addEventListener("click", () => tab(true));
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    view.search = $("search").value.trim();
    view.cursors = [""];
    loadQueue();
  });
  $("next").addEventListener("click", () => { if (view.next) { view.cursors.push(view.next); loadQueue(); } });
  $("prev").addEventListener("click", () => { if (view.cursors.length > 1) { view.cursors.pop(); loadQueue(); } });
  $("first").addEventListener("click", () => { view.cursors = [""]; loadQueue(); });
  $("refresh").addEventListener("click", () => loadQueue());
  $("headers-close").addEventListener("click", () => { $("headers-box").hidden = true; });
  poll();
  loadQueue();
});
