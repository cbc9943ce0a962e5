// Boards: named wallboard layouts (`GET /api/boards/{name}`), their tiles' figures and colours.
//
// `wallboard.html#board=sales` shows one board: its title, its tiles (each a metric over the
// board's queues or over the tile's own `queue_ids`), its queues in the table, in its language,
// with its alert sound. `#boards=sales,support&rotate=30` shows several in turn (`rotate` wins
// over the first board's `rotate_s`). The supervisor console's board editor draws its preview
// with the same functions.

import { filterOverview } from "./live.js";
import { duration } from "./format.js";
import { number, percent, t } from "./i18n.js";

/** The metrics a tile can show, as server/core/boards.py TILE_METRICS. */
export const TILE_METRICS = ["waiting", "longest_wait", "service_level", "abandon_rate", "asa", "aht", "offered",
  "answered", "abandoned", "agents_available", "agents_on_call", "agents_wrap_up", "agents_break", "agents_logged_in"];
// A tile's metric → the threshold (settings `alerts`) that colours it.
const LEVEL_OF = { waiting: "waiting", longest_wait: "longest_wait_s", service_level: "service_level", abandon_rate: "abandon_rate" };
const STATE_CLASS = { agents_available: "available", agents_on_call: "on_call", agents_wrap_up: "wrap_up", agents_break: "break" };

/** The thresholds of a queue list: those the first queue carries (the tenant's, from its settings), else none. */
export function thresholdsOf(queues) {
  for (const q of queues || []) if (q.thresholds) return q.thresholds;
  return null;
}

/** ok / amber / red for a value against a {amber, red} pair. SL: lower is worse; abandon rate: above; waits and counts: at or above. */
export function level(metric, value, thresholds) {
  const pair = thresholds?.[metric];
  if (!pair || value == null || pair.amber == null || pair.red == null) return "none";
  if (metric === "service_level") return value < pair.red ? "red" : value < pair.amber ? "amber" : "ok";
  if (metric === "abandon_rate") return value > pair.red ? "red" : value > pair.amber ? "amber" : "ok";
  return value >= pair.red ? "red" : value >= pair.amber ? "amber" : "ok";
}

/** The longest wait now (seconds) over some queues, ticking from `oldest_queued_at` with the server's clock. */
export function longestWait(queues, nowMs) {
  let longest = 0;
  for (const q of queues) {
    if (q.waiting && q.oldest_queued_at) longest = Math.max(longest, (nowMs - Date.parse(q.oldest_queued_at)) / 1000);
  }
  return Math.max(0, longest);
}

/**
 * What a tile shows: {value (raw, for data-value), text, level, sub}. `queueIds` narrows the
 * overview to those queues (empty: the whole document, already cut to the board's queues).
 */
export function tileFigure(metric, doc, { queueIds = [], nowMs = Date.now(), agents = null } = {}) {
  const scoped = queueIds.length ? filterOverview(doc, new Set(queueIds), agents) : doc;
  const queues = scoped.queues || [];
  const today = scoped.today || {};
  const thresholds = thresholdsOf(doc.queues);
  const byState = scoped.agents?.by_state || {};
  const count = (n) => number(n ?? 0);
  const out = (value, text, sub = "") => ({
    value, text, sub, level: LEVEL_OF[metric] ? level(LEVEL_OF[metric], value, thresholds) : "none",
  });
  switch (metric) {
    case "waiting": {
      const n = queues.reduce((sum, q) => sum + q.waiting, 0);
      return out(n, count(n), t(queues.length === 1 ? "board.sub.queues_one" : "board.sub.queues_other", { n: number(queues.length) }));
    }
    case "longest_wait": {
      const w = longestWait(queues, nowMs);
      const lw = thresholds?.longest_wait_s;
      const sub = lw ? t("board.sub.thresholds", { amber: duration(lw.amber), red: duration(lw.red) }) : "";
      return { ...out(Number(w.toFixed(1)), duration(w), sub), value: w.toFixed(1) };
    }
    case "service_level": return out(today.service_level, percent(today.service_level), t("board.sub.answered", { n: count(today.answered) }));
    case "abandon_rate": return out(today.abandon_rate, percent(today.abandon_rate, 1), t("board.sub.abandoned", { n: count(today.abandoned) }));
    case "asa": return out(today.asa_s, duration(today.asa_s), t("board.sub.asa"));
    case "aht": return out(today.aht_s, duration(today.aht_s), t("board.sub.aht"));
    case "offered": case "answered": case "abandoned": return out(today[metric] ?? 0, count(today[metric]));
    case "agents_logged_in": return out(scoped.agents?.logged_in ?? 0, count(scoped.agents?.logged_in));
    default: {
      const state = STATE_CLASS[metric];
      return out(byState[state] ?? 0, count(byState[state]));
    }
  }
}

/** A tile element for a board's tile: `data-metric`, and `data-queues` when it covers some queues only. */
export function makeTile(tile) {
  const el = document.createElement("div");
  const state = STATE_CLASS[tile.metric];
  el.className = `tile big board-tile${state ? ` state ${state}` : ""}`;
  el.dataset.metric = tile.metric;
  if (tile.queue_ids?.length) el.dataset.queues = tile.queue_ids.join(",");
  el.innerHTML = '<div class="label"></div><div class="value">–</div><div class="sub"></div>';
  const label = el.querySelector(".label");
  if (!tile.label) label.dataset.i18n = `board.tile.${tile.metric}`; // follows a language change
  label.textContent = tile.label || t(`board.tile.${tile.metric}`);
  return el;
}

/** The boards the fragment asks for: [{name, …board}] and the rotation in seconds (null: none). */
export async function boardsFromFragment(params, fetchBoard) {
  const names = (params.get("boards") || params.get("board") || "").split(",").map((n) => n.trim()).filter(Boolean);
  if (!names.length) return { boards: [], rotateS: null };
  const boards = [];
  for (const name of names) boards.push(await fetchBoard(name));
  const rotate = Number(params.get("rotate"));
  const rotateS = boards.length > 1 ? (rotate >= 5 ? rotate : boards[0].rotate_s || 30) : null;
  return { boards, rotateS };
}

/** GET one board with a bearer token; an Error with the server's message when refused or unknown. */
export async function fetchBoard(name, token, base = document.baseURI) {
  const response = await fetch(new URL(`api/boards/${encodeURIComponent(name)}`, base), {
    headers: { Authorization: `Bearer ${token}`, Accept: "application/json" }, cache: "no-store", credentials: "omit",
  });
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) throw new Error(body?.error?.message || `HTTP ${response.status}`);
  return body.data;
}
