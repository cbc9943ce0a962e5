// The wallboard's alert banner: threshold alerts shown at once, in the order they were raised,
// each removed when it is cleared; optionally a short tone when one is raised (a board's `sound`).
//
// Alerts arrive as WebSocket `alert` messages (API.md) and are keyed by queue, metric and level,
// the identity the server raises and clears them by. Pub/sub is at most once, so the banner also
// reads `GET /api/alerts` at start, on every reconnection and every minute: it adds an open alert
// it missed and drops one the server has closed (but never one raised moments ago, which may not
// be stored yet: the server pushes an alert before it records it).

import { duration } from "./format.js";
import { number, percent, t, clockTime } from "./i18n.js";

const RECONCILE_MS = 60_000;
const YOUNG_MS = 15_000;
const MAX_LINES = 3; // banner lines at most: the board stays readable under an alert storm // a shown alert this young is kept even when the stored list lacks it

const keyOf = (a) => `${a.queue_id ?? ""}|${a.metric}|${a.level}`;

/** A metric's value as the banner says it: waits as durations, rates as percentages, counts as numbers. */
export function alertValue(metric, value) {
  if (value == null) return "–";
  if (metric === "longest_wait_s") return duration(value);
  if (metric === "service_level" || metric === "abandon_rate") return percent(value, 1);
  return number(value, { maximumFractionDigits: 1 });
}

export function createAlertBanner({ root, fetchAlerts, serverNow = () => Date.now() }) {
  const shown = new Map(); // key → {alert, el, since, shownAt}
  let sound = false;
  let only = null; // the board's queues (null: all)
  const follows = (a) => !only || a.queue_id == null || only.has(a.queue_id);
  let audio = null;

  function beep() {
    if (!sound) return;
    try {
      audio = audio || new AudioContext();
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.2, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.6);
      osc.connect(gain).connect(audio.destination);
      osc.start();
      osc.stop(audio.currentTime + 0.6);
    } catch { /* no audio on this device: the banner still shows */ }
  }

  function text(a, since) {
    return t("board.alert.text", {
      rule: t(`board.alert.metric.${a.metric}`), level: t(`board.alert.level.${a.level}`),
      queue: a.queue_id ?? t("board.alert.all_queues"), value: alertValue(a.metric, a.value ?? a.observed),
      threshold: alertValue(a.metric, a.threshold), since: clockTime(since),
    });
  }

  /** A red alert stands for the amber one of the same queue and rule; past MAX_LINES, one line counts the rest. */
  function render() {
    const red = new Set([...shown.values()].filter((i) => i.alert.level === "red").map((i) => `${i.alert.queue_id}|${i.alert.metric}`));
    let lines = 0;
    let more = 0;
    for (const item of shown.values()) {
      item.el.querySelector(".alert-text").textContent = text(item.alert, item.since);
      const superseded = item.alert.level === "amber" && red.has(`${item.alert.queue_id}|${item.alert.metric}`);
      const over = !superseded && lines >= MAX_LINES;
      if (!superseded && !over) lines += 1;
      if (over) more += 1;
      item.el.hidden = superseded || over;
    }
    let extra = root.querySelector(".alert-more");
    if (more && !extra) extra = root.appendChild(Object.assign(document.createElement("div"), { className: "alert-more" }));
    if (extra) {
      root.appendChild(extra); // always last
      extra.textContent = more ? t("board.alert.more", { n: number(more) }) : "";
      extra.hidden = !more;
    }
    root.hidden = shown.size === 0;
    document.body.classList.toggle("has-alerts", shown.size > 0);
  }

  function add(a, since, { quiet = false } = {}) {
    const key = keyOf(a);
    if (shown.has(key) || !follows(a)) return;
    const el = document.createElement("div");
    el.className = "alert-item";
    el.dataset.key = key;
    el.dataset.level = a.level;
    el.dataset.metric = a.metric;
    el.dataset.queueId = a.queue_id ?? "";
    el.innerHTML = '<span class="alert-dot" aria-hidden="true"></span><span class="alert-text"></span>';
    root.appendChild(el); // arrival order: the oldest first
    shown.set(key, { alert: a, el, since, shownAt: Date.now() });
    render();
    if (!quiet) beep();
  }

  function remove(key) {
    const item = shown.get(key);
    if (!item) return;
    item.el.remove();
    shown.delete(key);
    render();
  }

  /** One `alert` message from the WebSocket. */
  function onAlert(msg) {
    if (msg.kind !== "threshold") return;
    if (msg.state === "raised") add(msg, msg.at || new Date(serverNow()).toISOString());
    else if (msg.state === "cleared") remove(keyOf(msg));
  }

  /** Agree with the stored alerts: add the open ones not shown, drop the shown ones closed (unless very new). */
  async function reconcile() {
    let rows;
    try {
      rows = await fetchAlerts();
    } catch {
      return; // the next round, or the WebSocket, brings them
    }
    const open = rows.filter((a) => a.active).sort((a, b) => Date.parse(a.raised_at) - Date.parse(b.raised_at));
    const openKeys = new Set(open.map(keyOf));
    for (const a of open) add(a, a.raised_at, { quiet: true });
    for (const [key, item] of [...shown]) {
      if (!openKeys.has(key) && Date.now() - item.shownAt > YOUNG_MS) remove(key);
    }
  }

  root.hidden = true;
  setInterval(reconcile, RECONCILE_MS);
  return {
    onAlert,
    reconcile,
    render,
    setSound(on) { sound = Boolean(on); },
    /** Show only the alerts of these queues (a board's); empty: all. */
    setQueues(queues) {
      only = queues?.length ? new Set(queues) : null;
      for (const [key, item] of [...shown]) if (!follows(item.alert)) remove(key);
    },
    count: () => shown.size,
  };
}
