// The TV wallboard: the overview and agents views of one tenant, big and readable across a room.
//
// The token comes from the URL fragment (`#token=…`), which browsers never send to the
// server; `#queues=a,b` optionally limits the board to some queues. Durations that move
// with the clock (longest wait, time in state) tick here every second from
// `oldest_queued_at` / `since`, corrected by the server clock's offset from `as_of`.

import { LiveClient, ServerClock, fragmentParams, jwtPayload, takeToken } from "./live.js";
import { duration } from "./format.js";
import { clockTime, number, percent, t, translatePage, useLanguage } from "./i18n.js";
import { boardsFromFragment, fetchBoard, level, longestWait, makeTile, tileFigure } from "./board-layout.js";
import { createAlertBanner } from "./board-alerts.js";
import { createCallsPanel } from "./board-calls.js";
import { renderStaffing } from "./board-staffing.js";

// Tiles and cells are coloured from the `thresholds` each overview queue carries (the tenant's
// settings `alerts`), so a change an admin makes in Settings reaches the wall with the next update.
const STATE_ORDER = ["available", "on_call", "wrap_up", "break", "other"];

const $ = (id) => document.getElementById(id);

const board = {
  overview: null,
  agents: null,
  clock: new ServerClock(), // the server's clock, from the overviews' as_of
  layout: null,             // the board shown (#board=…), null for the default layout
  alerts: null,             // the alert banner
};

// -- formatting ---------------------------------------------------------------

export { duration, percent } from "./format.js";

function count(n) {
  return n == null ? "–" : number(n);
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

/** Shrink a tile's label that would be cut off (a long word in German or French) down to 70% of its size. */
function fitLabel(el) {
  el.style.fontSize = "";
  const base = parseFloat(getComputedStyle(el).fontSize);
  for (let size = base; size > base * 0.7 && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1; size *= 0.94) {
    el.style.fontSize = `${Math.floor(size * 0.94)}px`;
  }
}

function fitLabels() {
  document.querySelectorAll(".tile .label").forEach(fitLabel);
}

function setTile(tile, value, text, { lvl = null, sub = null } = {}) {
  tile.dataset.value = value == null ? "" : String(value);
  if (lvl) tile.dataset.level = lvl;
  const v = tile.querySelector(".value");
  if (v.textContent !== text) {
    v.textContent = text;
    fitText(v);
  }
  const subEl = tile.querySelector(".sub");
  if (sub !== null && subEl) subEl.textContent = sub;
}

function serverNow() {
  return board.clock.now();
}

function waitOf(queue) {
  if (!queue.waiting || !queue.oldest_queued_at) return 0;
  return Math.max(0, (serverNow() - Date.parse(queue.oldest_queued_at)) / 1000);
}

/** Every tile on the page (the default layout's or the board's) from the overview, each over its own queues. */
function renderTiles({ onlyTicking = false } = {}) {
  const doc = board.overview;
  if (!doc) return;
  for (const el of document.querySelectorAll(".tile[data-metric]")) {
    if (onlyTicking && el.dataset.metric !== "longest_wait") continue;
    const queueIds = el.dataset.queues ? el.dataset.queues.split(",") : [];
    const f = tileFigure(el.dataset.metric, doc, { queueIds, nowMs: serverNow(), agents: board.agents });
    const state = el.classList.contains("state"); // coloured by the agent state, never by a threshold
    setTile(el, f.value, f.text, { lvl: state ? null : f.level, sub: f.sub });
  }
}

function renderOverview() {
  const doc = board.overview;
  if (!doc) return;
  renderTiles();
  renderQueues();
  const empty = !doc.queues.length && !(doc.agents?.logged_in) && !(doc.today?.offered) && !board.layout;
  $("feed-help").hidden = !empty;
  document.body.classList.toggle("no-events", empty);
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
    cell("waiting", q.waiting, count(q.waiting), level("waiting", q.waiting, q.thresholds));
    cell("service_level", d.service_level, percent(d.service_level), level("service_level", d.service_level, q.thresholds));
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
    const name = t(`common.state.${a.state}`);
    const label = a.state === "on_call" && a.queue_id ? `${name} · ${a.queue_id}` : name;
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
  $("clock").textContent = clockTime(now);
  if (board.overview) {
    for (const q of board.overview.queues) {
      const w = waitOf(q);
      const td = document.querySelector(`tr[data-queue-id="${CSS.escape(q.queue_id)}"] [data-metric="longest_wait"]`);
      if (td) {
        td.dataset.value = w.toFixed(1);
        td.dataset.level = level("longest_wait_s", w, q.thresholds);
        td.textContent = q.waiting ? duration(w) : "–";
      }
    }
    renderTiles({ onlyTicking: true });
  }
  for (const card of document.querySelectorAll(".agent")) {
    const since = Date.parse(card.dataset.since);
    const el = card.querySelector(".agent-time");
    const seconds = Number.isFinite(since) ? Math.max(0, (now - since) / 1000) : null;
    el.dataset.value = seconds == null ? "" : seconds.toFixed(1);
    el.textContent = duration(seconds);
  }
  const thresholds = new Map((board.overview?.queues || []).map((q) => [q.queue_id, q.thresholds]));
  board.calls?.tick((seconds, queueId) => level("longest_wait_s", seconds, thresholds.get(queueId)));
  updateBadge();
}

// -- connection state --------------------------------------------------------------

let client = null;

function updateBadge() {
  const badge = $("badge");
  const state = client ? client.state : "connecting";
  const age = client ? client.secondsSinceUpdate() : null;
  badge.dataset.state = state;
  $("badge-label").textContent = t(`common.badge.${state}`);
  $("badge-age").textContent = age == null ? "" : age < 2 ? ` · ${t("common.age.just_now")}` : ` · ${t("common.age.seconds", { n: number(Math.floor(age)) })}`;
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
    showOverlay(t("common.refused"), t("board.refused", { reason: detail.reason }));
  }
  if (state === "live" || state === "polling") board.alerts?.reconcile(); // alerts pushed while away
  updateBadge();
}

/** Put a board's title and tiles on the page (null: the default layout). */
function applyLayout(layout) {
  board.layout = layout;
  const kpis = $("kpis");
  if (!layout) return;
  kpis.replaceChildren(...layout.tiles.map(makeTile));
  kpis.style.setProperty("--tiles", String(Math.min(layout.tiles.length, 6)));
  kpis.classList.add("board-tiles");
  $("agents-kpis").hidden = true;
  $("board-title").textContent = layout.title;
  $("board-title").removeAttribute("data-i18n");
  document.title = layout.title;
  document.body.dataset.board = layout.name;
}

/** Show one board: its language, tiles, sound, and a client subscribed to its queues. */
async function showBoard(layout, token, fragmentQueues) {
  await useLanguage(fragmentParams().get("lang") || layout?.locale || undefined);
  translatePage();
  applyLayout(layout);
  board.calls?.refresh(); // its strings in the board's language
  document.body.classList.remove("board-loading");
  fitLabels();
  const queues = layout?.queues?.length ? layout.queues : fragmentQueues;
  board.alerts.setSound(Boolean(layout?.sound));
  board.alerts.setQueues(queues);
  board.alerts.render();
  if (queues.length) {
    $("filter").hidden = false;
    $("filter").textContent = t("board.filter", { queues: queues.join(", ") });
  }
  client?.stop();
  board.overview = null;
  board.agents = null;
  $("queue-rows").replaceChildren();
  $("agent-grid").replaceChildren();
  // Before expiry the client looks for a fresher token in the fragment (a kiosk manager may have replaced it).
  const refreshToken = () => takeToken();
  client = new LiveClient({ token: client?.token || token, views: ["overview", "agents", "calls"], queues, onData, onState,
    refreshToken, onAlert: (msg) => board.alerts.onAlert(msg) });
  window.wallboard = client; // for the console and for tests
  client.start();
}

async function main() {
  const params = fragmentParams();
  const token = takeToken();
  const queues = (params.get("queues") || "").split(",").map((q) => q.trim()).filter(Boolean);
  if (!token) {
    await useLanguage(params.get("lang") || undefined);
    translatePage();
    document.body.dataset.state = "unauthorized";
    $("badge").dataset.state = "unauthorized";
    $("badge-label").textContent = t("common.badge.no_token");
    showOverlay(t("common.no_token"), t("board.no_token"));
    return;
  }
  const claims = jwtPayload(token);
  if (claims?.client_id) $("tenant").textContent = claims.client_id;
  for (const el of document.querySelectorAll("#feed-help .origin")) el.textContent = location.origin;
  for (const el of document.querySelectorAll("#feed-help .tenant-id")) el.textContent = claims?.client_id || "T";
  for (const el of document.querySelectorAll("#feed-help .now")) el.textContent = new Date().toISOString().slice(0, 19) + "Z";
  const api = async (path) => {
    const response = await fetch(new URL(path, document.baseURI), {
      headers: { Authorization: `Bearer ${client?.token || token}`, Accept: "application/json" }, cache: "no-store", credentials: "omit",
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return (await response.json()).data;
  };
  board.alerts = createAlertBanner({ root: $("alerts"), fetchAlerts: () => api("api/alerts"), serverNow });
  // A board's own tiles replace the default ones: do not show the default ones meanwhile.
  if (params.get("board") || params.get("boards")) document.body.classList.add("board-loading");
  let layouts;
  try {
    layouts = await boardsFromFragment(params, (name) => fetchBoard(name, token));
  } catch (err) {
    await useLanguage(params.get("lang") || undefined);
    translatePage();
    showOverlay(t("board.board_missing"), String(err.message || err));
    return;
  }
  board.calls = createCallsPanel({ root: $("calls-panel"), now: serverNow, top: Number(params.get("top")) || undefined });
  let index = 0;
  await showBoard(layouts.boards[0] || null, token, queues);
  if (layouts.rotateS) {
    // One board after another; each switch subscribes to that board's queues.
    setInterval(() => {
      index = (index + 1) % layouts.boards.length;
      showBoard(layouts.boards[index], token, queues);
    }, layouts.rotateS * 1000);
  }
  // A kiosk can be handed a fresh token by changing the fragment: taken without a reload.
  window.addEventListener("hashchange", () => {
    if (fragmentParams().has("token")) client.setToken(takeToken());
  });
  window.addEventListener("resize", () => {
    fitAgentGrid(document.querySelectorAll(".agent").length);
    document.querySelectorAll(".tile .value").forEach(fitText);
    fitLabels();
  });
  // The agents panel changes size when alerts come and go: refit the cards to it.
  new ResizeObserver(() => fitAgentGrid(document.querySelectorAll(".agent").length)).observe($("agent-grid"));
  // Tick on the second boundary so every clock on the board turns together.
  const align = () => setTimeout(() => { tick(); align(); }, 1000 - (serverNow() % 1000) + 5);
  align();
  tick();
}

main();
