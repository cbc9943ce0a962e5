// The TV wallboard: the overview and agents views of one tenant, big and readable across a room.
//
// The token comes from the URL fragment (`#token=…`), which browsers never send to the
// server; `#queues=a,b` optionally limits the board to some queues. Durations that move
// with the clock (longest wait, time in state) tick here every second from
// `oldest_queued_at` / `since`, corrected by the server clock's offset from `as_of`.

import { LiveClient, ServerClock, fragmentParams, jwtPayload, takeToken } from "./live.js";
import { duration, percent } from "./format.js";
import { createCallsPanel } from "./board-calls.js";
import { translatePanels } from "./i18n-load.js";
import { renderStaffing } from "./board-staffing.js";

// Alert thresholds: tenant_settings.DEFAULT_ALERTS; a `thresholds` (or `alerts`) block in the
// overview document, when the server sends one, wins.
const DEFAULT_THRESHOLDS = {
  longest_wait_s: { amber: 30, red: 60 },
  service_level: { amber: 0.85, red: 0.8 },
  abandon_rate: { amber: 0.05, red: 0.1 },
  waiting: { amber: 5, red: 10 },
};
const STATE_ORDER = ["available", "on_call", "wrap_up", "break", "other"];
const STATE_LABEL = { available: "Available", on_call: "On call", wrap_up: "Wrap-up", break: "Break", other: "Other", logged_out: "Logged out" };

const $ = (id) => document.getElementById(id);

const board = {
  overview: null,
  agents: null,
  clock: new ServerClock(), // the server's clock, from the overviews' as_of
  thresholds: DEFAULT_THRESHOLDS,
};

// -- formatting ---------------------------------------------------------------

export { duration, percent } from "./format.js";

function count(n) {
  return n == null ? "–" : String(n);
}

/** ok / amber / red for a metric. SL: lower is worse (< amber, < red); abandon rate: > ; waits and counts: ≥. */
function level(metric, value) {
  const t = board.thresholds[metric];
  if (!t || value == null) return "none";
  if (metric === "service_level") return value < t.red ? "red" : value < t.amber ? "amber" : "ok";
  if (metric === "abandon_rate") return value > t.red ? "red" : value > t.amber ? "amber" : "ok";
  return value >= t.red ? "red" : value >= t.amber ? "amber" : "ok";
}

// -- rendering ----------------------------------------------------------------

/** Shrink a value that would not fit its tile (a long duration, 100.0%) instead of cutting it off. */
function fitText(el) {
  el.style.fontSize = "";
  const tile = el.closest(".tile");
  const over = () => el.scrollWidth > el.clientWidth + 1 || tile.scrollWidth > tile.clientWidth + 1;
  for (let i = 0; i < 12 && tile.clientWidth > 0 && over(); i++) {
    el.style.fontSize = `${Math.floor(parseFloat(getComputedStyle(el).fontSize) * 0.92)}px`;
  }
}

function setTile(metric, value, text, { lvl = null, sub = null } = {}) {
  const tile = document.querySelector(`.tile[data-metric="${metric}"]`);
  if (!tile) return;
  tile.dataset.value = value == null ? "" : String(value);
  if (lvl) tile.dataset.level = lvl;
  const v = tile.querySelector(".value");
  if (v.textContent !== text) {
    v.textContent = text;
    fitText(v);
  }
  if (sub !== null) tile.querySelector(".sub").textContent = sub;
}

function serverNow() {
  return board.clock.now();
}

function waitOf(queue) {
  if (!queue.waiting || !queue.oldest_queued_at) return 0;
  return Math.max(0, (serverNow() - Date.parse(queue.oldest_queued_at)) / 1000);
}

function renderOverview() {
  const doc = board.overview;
  if (!doc) return;
  const t = doc.today || {};
  const waiting = doc.queues.reduce((n, q) => n + q.waiting, 0);
  setTile("waiting", waiting, count(waiting), { lvl: level("waiting", waiting), sub: `${doc.queues.length} queue${doc.queues.length === 1 ? "" : "s"}` });
  setTile("service_level", t.service_level, percent(t.service_level), {
    lvl: level("service_level", t.service_level), sub: `answered ${count(t.answered)}`,
  });
  setTile("abandon_rate", t.abandon_rate, percent(t.abandon_rate, 1), {
    lvl: level("abandon_rate", t.abandon_rate), sub: `abandoned ${count(t.abandoned)}`,
  });
  setTile("asa", t.asa_s, duration(t.asa_s), { lvl: "none", sub: "avg speed of answer" });
  setTile("offered", t.offered, count(t.offered), { lvl: "none" });
  const byState = doc.agents?.by_state || {};
  for (const state of ["available", "on_call", "wrap_up", "break"]) {
    setTile(`agents_${state}`, byState[state] ?? 0, count(byState[state] ?? 0));
  }
  renderQueues();
  tick();
}

function renderQueues() {
  const rows = $("queue-rows");
  const queues = board.overview.queues;
  $("queues-empty").hidden = queues.length > 0;
  const seen = new Set();
  for (const q of queues) {
    seen.add(q.queue_id);
    let tr = rows.querySelector(`tr[data-queue-id="${CSS.escape(q.queue_id)}"]`);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.queueId = q.queue_id;
      tr.innerHTML = `<td class="q" data-metric="queue_id"></td><td data-metric="waiting"></td><td data-metric="longest_wait"></td>
        <td data-metric="service_level"></td><td data-metric="offered"></td><td data-metric="answered"></td>
        <td data-metric="abandoned"></td><td data-metric="agents_available"></td>`;
      tr.querySelector(".q").textContent = q.queue_id;
      tr.querySelector(".q").title = q.queue_id;
    }
    rows.appendChild(tr); // keeps the document's order (sorted by queue id)
    const cell = (metric, value, text, lvl = "none") => {
      const td = tr.querySelector(`[data-metric="${metric}"]`);
      td.dataset.value = value == null ? "" : String(value);
      td.dataset.level = lvl;
      td.textContent = text;
    };
    const d = q.today || {};
    cell("waiting", q.waiting, count(q.waiting), level("waiting", q.waiting));
    cell("service_level", d.service_level, percent(d.service_level), level("service_level", d.service_level));
    cell("offered", d.offered, count(d.offered));
    cell("answered", d.answered, count(d.answered));
    cell("abandoned", d.abandoned, count(d.abandoned));
    cell("agents_available", q.agents_available, count(q.agents_available));
  }
  for (const tr of [...rows.children]) if (!seen.has(tr.dataset.queueId)) tr.remove();
}

function renderAgents() {
  const grid = $("agent-grid");
  const agents = (board.agents || []).filter((a) => a.state && a.state !== "logged_out");
  agents.sort((a, b) => (STATE_ORDER.indexOf(a.state) - STATE_ORDER.indexOf(b.state))
    || (Date.parse(a.since) - Date.parse(b.since)) || String(a.name || a.agent_id).localeCompare(String(b.name || b.agent_id)));
  $("agents-empty").hidden = agents.length > 0;
  const seen = new Set();
  for (const a of agents) {
    seen.add(a.agent_id);
    let card = grid.querySelector(`[data-agent-id="${CSS.escape(a.agent_id)}"]`);
    if (!card) {
      card = document.createElement("div");
      card.className = "agent";
      card.dataset.agentId = a.agent_id;
      card.innerHTML = `<div class="who"><span class="agent-name" data-metric="name"></span></div>
        <div class="what"><span class="agent-state" data-metric="state"></span><span class="agent-reason" data-metric="reason"></span></div>
        <div class="agent-time" data-metric="time_in_state"></div>`;
    }
    grid.appendChild(card);
    card.dataset.state = a.state;
    card.dataset.since = a.since || "";
    card.querySelector(".agent-name").textContent = a.name || a.agent_id;
    // The colour says the state; a pause reason ("Lunch") says more than "Break", so it takes the place.
    const label = a.state === "on_call" && a.queue_id ? `${STATE_LABEL.on_call} · ${a.queue_id}` : (STATE_LABEL[a.state] || a.state);
    card.querySelector(".agent-state").textContent = a.reason ? "" : label;
    card.querySelector(".agent-state").title = label;
    card.querySelector(".agent-reason").textContent = a.reason ? a.reason : "";
  }
  for (const card of [...grid.children]) if (!seen.has(card.dataset.agentId)) card.remove();
  fitAgentGrid(agents.length);
  tick();
}

/** Choose the column count that gives n cards (about 3.1:1 wide) the largest size in the panel. */
function fitAgentGrid(n) {
  const grid = $("agent-grid");
  const box = grid.getBoundingClientRect();
  if (!n || !box.width || !box.height) return;
  const gap = box.width * 0.006;
  let best = { cols: 1, scale: 0 };
  for (let cols = 1; cols <= Math.min(n, 12); cols++) {
    const rows = Math.ceil(n / cols);
    const w = (box.width - gap * (cols - 1)) / cols;
    const h = (box.height - gap * (rows - 1)) / rows;
    const scale = Math.min(w / 3.1, h); // card height that fits both ways
    if (scale > best.scale) best = { cols, scale, rows };
  }
  const cardH = Math.min(best.scale, box.height / 2.2);
  grid.style.setProperty("--cols", best.cols);
  grid.style.setProperty("--card-h", `${cardH}px`);
  grid.style.setProperty("--gap", `${gap}px`);
}

// -- the clock -----------------------------------------------------------------

function tick() {
  const now = serverNow();
  $("clock").textContent = new Date(now).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (board.overview) {
    let longest = 0;
    for (const q of board.overview.queues) {
      const w = waitOf(q);
      longest = Math.max(longest, w);
      const td = document.querySelector(`tr[data-queue-id="${CSS.escape(q.queue_id)}"] [data-metric="longest_wait"]`);
      if (td) {
        td.dataset.value = w.toFixed(1);
        td.dataset.level = level("longest_wait_s", w);
        td.textContent = q.waiting ? duration(w) : "–";
      }
    }
    setTile("longest_wait", longest.toFixed(1), duration(longest), {
      lvl: level("longest_wait_s", longest), sub: `amber ${duration(board.thresholds.longest_wait_s.amber)} · red ${duration(board.thresholds.longest_wait_s.red)}`,
    });
  }
  for (const card of document.querySelectorAll(".agent")) {
    const since = Date.parse(card.dataset.since);
    const el = card.querySelector(".agent-time");
    const seconds = Number.isFinite(since) ? Math.max(0, (now - since) / 1000) : null;
    el.dataset.value = seconds == null ? "" : seconds.toFixed(1);
    el.textContent = duration(seconds);
  }
  board.calls?.tick((seconds) => level("longest_wait_s", seconds));
  updateBadge();
}

// -- connection state --------------------------------------------------------------

const BADGE = { connecting: "Connecting", live: "Live", reconnecting: "Reconnecting", polling: "Polling", stale: "Stale", unauthorized: "Refused" };
let client = null;

function updateBadge() {
  const badge = $("badge");
  const state = client ? client.state : "connecting";
  const age = client ? client.secondsSinceUpdate() : null;
  badge.dataset.state = state;
  $("badge-label").textContent = BADGE[state] || state;
  $("badge-age").textContent = age == null ? "" : age < 2 ? " · just now" : ` · ${Math.floor(age)} s ago`;
  // Numbers older than 20 s are dimmed: a TV must not look live when it is not.
  document.body.classList.toggle("old-data", age != null && age > 20);
  document.body.dataset.state = state;
}

function showOverlay(title, text) {
  $("overlay-title").textContent = title;
  $("overlay-text").textContent = text;
  $("overlay").hidden = false;
}

// -- start ---------------------------------------------------------------------------

function onData(view, data) {
  if (view === "overview") {
    board.overview = data;
    board.clock.learn(data.as_of);
    const t = data.thresholds || data.alerts;
    if (t) board.thresholds = { ...DEFAULT_THRESHOLDS, ...t };
    renderOverview();
    renderStaffing($("staffing-rows"), $("staffing-empty"), data);
  } else if (view === "calls") {
    board.calls.render(data);
  } else if (view === "agents") {
    board.agents = data;
    renderAgents();
  }
  $("overlay").hidden = true;
}

function onState(state, detail) {
  if (state === "unauthorized") {
    showOverlay("Access refused", `This wallboard's token was refused: ${detail.reason}.`);
  }
  updateBadge();
}

function main() {
  const params = fragmentParams();
  const token = takeToken();
  const queues = (params.get("queues") || "").split(",").map((q) => q.trim()).filter(Boolean);
  if (queues.length) {
    $("filter").hidden = false;
    $("filter").textContent = `Queues: ${queues.join(", ")}`;
  }
  if (!token) {
    document.body.dataset.state = "unauthorized";
    $("badge").dataset.state = "unauthorized";
    $("badge-label").textContent = "No token";
    showOverlay("No token", "This wallboard's token was refused: the page address carries no #token=… fragment.");
    return;
  }
  const claims = jwtPayload(token);
  if (claims?.client_id) $("tenant").textContent = claims.client_id;
  // Before expiry the client looks for a fresher token in the fragment (a kiosk manager may have replaced it).
  const refreshToken = () => takeToken();
  board.calls = createCallsPanel({ root: $("calls-panel"), now: serverNow, top: Number(params.get("top")) || undefined });
  translatePanels($("calls-panel"), params.get("lang")).then(() => board.calls.refresh());
  client = new LiveClient({ token, views: ["overview", "agents", "calls"], queues, onData, onState, refreshToken });
  window.wallboard = client; // for the console and for tests
  // A kiosk can be handed a fresh token by changing the fragment: taken without a reload.
  window.addEventListener("hashchange", () => {
    if (fragmentParams().has("token")) client.setToken(takeToken());
  });
  window.addEventListener("resize", () => {
    fitAgentGrid(document.querySelectorAll(".agent").length);
    document.querySelectorAll(".tile .value").forEach(fitText);
  });
  client.start();
  // Tick on the second boundary so every clock on the board turns together.
  const align = () => setTimeout(() => { tick(); align(); }, 1000 - (serverNow() % 1000) + 5);
  align();
  tick();
}

main();
