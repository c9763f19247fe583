// The event-flow page: topology (every 2 s), one order's saga, the latest
// dead letters. Everything comes from this server's /api; text from the
// services is only ever set as text.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const LANES = ["order-service", "inventory-service", "payment-service", "shipping-service", "notification-service"];

function el(tag, attrs = {}, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// The operator token lives in this tab's sessionStorage only; every /api
// call carries it (the page shows nothing without one).
const tokenField = document.getElementById("operator-token");
tokenField.value = sessionStorage.getItem("operatorToken") || "";
const operatorToken = () => tokenField.value.trim();

class NoToken extends Error {}

async function getJson(url) {
  const token = operatorToken();
  if (!token) throw new NoToken("paste an operator's token above to see it");
  const r = await fetch(url, { headers: { Accept: "application/json", Authorization: `Bearer ${token}` } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`HTTP ${r.status}: ${body.error || url}`);
  return body;
}

const fmt = (n, digits = 1) => (n === null || n === undefined ? "–" : Number(n).toFixed(digits).replace(/\.0+$/, ""));

// ---------------------------------------------------------------- topology
function edgeText(e) {
  const name = e.kind === "produce" ? `${e.service} → ${e.topic}` : `${e.topic} → ${e.service}`;
  let text = `${name}: ${fmt(e.rate)} events/s`;
  if (e.kind === "consume") text += `, lag ${fmt(e.lag, 0)}, dead-lettered ${fmt(e.deadLettered, 0)}`;
  return text;
}

function layout(items, y, width) {
  const step = width / items.length;
  return new Map(items.map((name, i) => [name, { x: step * (i + 0.5), y }]));
}

function renderTopology(t) {
  const svg = document.getElementById("topology");
  svg.replaceChildren();
  const width = 1100;
  const services = layout(t.services.map((s) => s.name), 60, width);
  const topics = layout(t.topics.map((s) => s.name), 400, width);
  const edgeLayer = el("svg:g");
  svg.append(edgeLayer);
  for (const e of t.edges) {
    const s = services.get(e.service);
    const p = topics.get(e.topic);
    if (!s || !p) continue;
    const [from, to] = e.kind === "produce" ? [{ x: s.x, y: s.y + 22 }, { x: p.x, y: p.y - 22 }] : [{ x: p.x, y: p.y - 22 }, { x: s.x, y: s.y + 22 }];
    // Writing edges bend one way, reading edges the other, so a pair
    // between the same two boxes stays apart; busier edges are thicker.
    const bend = e.kind === "produce" ? -40 : 40;
    const mx = (from.x + to.x) / 2 + bend;
    const my = (from.y + to.y) / 2;
    const path = el("svg:path", {
      d: `M ${from.x} ${from.y} Q ${mx} ${my} ${to.x} ${to.y}`,
      class: `${e.kind}${(e.rate || 0) > 0 ? " hot" : ""}`,
      "data-edge": `${e.kind}:${e.service}:${e.topic}`,
      "stroke-width": (1.2 + Math.min((e.rate || 0) / 25, 4)).toFixed(2),
    });
    path.append(el("svg:title", {}, edgeText(e)));
    edgeLayer.append(path);
  }
  for (const s of t.services) {
    const { x, y } = services.get(s.name);
    const g = el("svg:g", { class: `node service${s.up ? "" : " down"}`, "data-service": s.name });
    g.append(el("svg:rect", { x: x - 88, y: y - 22, width: 176, height: 44, rx: 8 }));
    g.append(el("svg:text", { x, y: y - 5 }, s.name));
    g.append(el("svg:text", { x, y: y + 12, class: "sub" }, s.up ? "up" : "not answering"));
    if (s.error) g.append(el("svg:title", {}, s.error));
    svg.append(g);
  }
  for (const tp of t.topics) {
    const { x, y } = topics.get(tp.name);
    const g = el("svg:g", { class: "node topic", "data-topic": tp.name });
    g.append(el("svg:rect", { x: x - 80, y: y - 22, width: 160, height: 44, rx: 4 }));
    g.append(el("svg:text", { x, y: y - 5 }, tp.name));
    const dlq = tp.deadLetters === null || tp.deadLetters === undefined ? "dead letters: not counted" : `dead letters: ${fmt(tp.deadLetters, 0)}`;
    g.append(el("svg:text", { x, y: y + 12, class: "sub" }, dlq));
    svg.append(g);
  }

  const body = document.querySelector("#edges tbody");
  body.replaceChildren(
    ...t.edges.map((e) => {
      const tr = el("tr", { "data-edge": `${e.kind}:${e.service}:${e.topic}` });
      tr.append(
        el("td", {}, e.kind === "produce" ? `${e.service} → ${e.topic}` : `${e.topic} → ${e.service}`),
        el("td", { class: "num" }, fmt(e.rate)),
        el("td", { class: "num" }, e.kind === "consume" ? fmt(e.lag, 0) : ""),
        el("td", { class: "num" }, e.kind === "consume" ? fmt(e.deadLettered, 0) : ""),
      );
      return tr;
    }),
  );
  document.getElementById("scraped").textContent = t.scrapedAt ? `services scraped at ${t.scrapedAt}` : "waiting for the first scrape…";
}

async function refreshTopology() {
  try {
    renderTopology(await getJson("/api/topology"));
  } catch (e) {
    document.getElementById("scraped").textContent = `topology: ${e.message}`;
  }
}

// -------------------------------------------------------------------- saga
function renderSaga(saga) {
  const lanes = [...LANES];
  for (const s of saga.steps) if (!lanes.includes(s.lane)) lanes.push(s.lane);
  const head = document.querySelector("#swimlane thead tr");
  head.replaceChildren(el("th", { class: "when" }, "+ms"), ...lanes.map((l) => el("th", { class: "lane" }, l)));
  const body = document.querySelector("#swimlane tbody");
  body.replaceChildren(
    ...saga.steps.map((s) => {
      const tr = el("tr", {
        class: "saga-step",
        "data-event-type": s.eventType,
        "data-event-id": s.eventId,
        "data-caused-by": s.causedBy || "",
        "data-lane": s.lane,
      });
      tr.append(el("td", { class: "num when" }, fmt(s.atMs)));
      for (const lane of lanes) {
        if (lane !== s.lane) {
          tr.append(el("td"));
          continue;
        }
        const td = el("td", { class: "step", title: `${s.eventId} at ${s.position}` });
        td.append(el("div", {}, s.eventType));
        const hop = s.hopMs === null || s.hopMs === undefined ? "start" : `+${fmt(s.hopMs)} ms after ${s.causedByType}`;
        td.append(el("div", { class: "hop" }, hop));
        tr.append(td);
      }
      return tr;
    }),
  );
  document.getElementById("saga-status").textContent = `${saga.steps.length} events of order ${saga.orderId}, in causal order`;
}

async function showSaga(id) {
  const status = document.getElementById("saga-status");
  status.classList.remove("bad");
  status.textContent = "loading…";
  try {
    renderSaga(await getJson(`/api/orders/${encodeURIComponent(id)}/saga`));
  } catch (e) {
    document.querySelector("#swimlane tbody").replaceChildren();
    status.classList.add("bad");
    status.textContent = e.message;
  }
}

document.getElementById("saga-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = document.getElementById("order-id").value.trim();
  if (!id) return;
  history.replaceState(null, "", `#order=${encodeURIComponent(id)}`);
  showSaga(id);
});

// ------------------------------------------------------------- dead letters
// What the list shows now: it is redrawn only when that changes, so a
// button does not vanish under the pointer.
let shownLetters = "";

async function refreshDeadLetters() {
  const status = document.getElementById("dlq-status");
  try {
    const d = await getJson("/api/dead-letters");
    status.classList.remove("bad");
    status.textContent = `${d.total} on the dead-letter topics; the latest ${d.latest.length}:`;
    const now = JSON.stringify(d.latest);
    if (now === shownLetters) return;
    shownLetters = now;
    document.querySelector("#dead-letters tbody").replaceChildren(
      ...d.latest.map((l) => {
        const tr = el("tr", { "data-event-id": l.eventId || "" });
        tr.append(
          el("td", {}, l.timestamp || ""),
          el("td", {}, `${l.originalTopic}[${l.originalPartition}]@${l.originalOffset}`),
          el("td", {}, `${l.eventType || "?"} ${l.eventId || ""}`),
          el("td", {}, l.group),
          el("td", {}, l.reason),
          el("td", {}, l.error),
        );
        const cell = el("td");
        if (l.eventId) {
          const button = el("button", { type: "button", class: "redrive", "data-event-id": l.eventId }, "Send back");
          button.addEventListener("click", () => sendBack(l.eventId));
          cell.append(button);
        }
        tr.append(cell);
        return tr;
      }),
    );
  } catch (e) {
    status.classList.add("bad");
    status.textContent = `dead letters: ${e.message}`;
  }
}

// A new token shows what it may see at once.
tokenField.addEventListener("input", () => {
  sessionStorage.setItem("operatorToken", operatorToken());
  if (!operatorToken()) return;
  refreshTopology();
  refreshDeadLetters();
});
document.getElementById("token-form").addEventListener("submit", (ev) => ev.preventDefault());

async function sendBack(eventId) {
  const status = document.getElementById("dlq-action");
  status.classList.remove("bad");
  status.textContent = `sending ${eventId} back…`;
  const headers = { "Content-Type": "application/json" };
  const token = operatorToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    const r = await fetch("/api/dead-letters/redrive", { method: "POST", headers, body: JSON.stringify({ eventId }) });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      status.classList.add("bad");
      status.textContent = `not sent back (HTTP ${r.status}): ${body.error || "no reason given"}`;
      return;
    }
    const where = body.sentBack.map((x) => `${x.topic}[${x.partition}]@${x.offset}`).join(", ");
    status.textContent = `sent ${eventId} back to ${where}`;
  } catch (e) {
    status.classList.add("bad");
    status.textContent = `not sent back: ${e.message}`;
  }
}

refreshTopology();
setInterval(refreshTopology, 2000);
refreshDeadLetters();
setInterval(refreshDeadLetters, 15000);
const fromHash = new URLSearchParams(location.hash.slice(1)).get("order");
if (fromHash) {
  document.getElementById("order-id").value = fromHash;
  showSaga(fromHash);
}
