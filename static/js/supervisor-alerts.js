// The console's alerts: active and recent threshold alerts (GET /api/alerts), each with who
// acknowledged it and when, and an Acknowledge button (POST /api/alerts/{id}/ack).
//
// The list is read again on every `alert` message of the WebSocket (raised, cleared, or
// acknowledged by another supervisor) and every POLL_MS besides while the tab is shown, so another
// console's acknowledgement shows here within seconds even when a message was missed.

import { $, ApiError, explain, h, status } from "./supervisor-api.js";
import { alertValue } from "./board-alerts.js";
import { dateTime, number, t } from "./i18n.js";

const POLL_MS = 4000;
const IDLE_MS = 30_000;

export function createAlerts(ctx) {
  // The recent alerts' table has the same columns as the active ones'.
  $("alerts-recent-table").tHead.replaceWith($("alerts-active-table").tHead.cloneNode(true));
  let loading = null;
  let again = false;

  function row(a) {
    const ack = a.acked_at
      ? h("span", { class: "acked", dataset: { by: a.acked_by || "" } },
        t("console.alerts.acked_by", { who: a.acked_by || "?", when: dateTime(a.acked_at, { timeStyle: "medium", timeZone: ctx.timeZone() }) }))
      : h("button", { type: "button", class: "ack", dataset: { alertId: String(a.alert_id) }, onclick: () => acknowledge(a.alert_id) },
        t("console.alerts.ack"));
    return h("tr", { dataset: { alertId: String(a.alert_id), level: a.level, active: String(a.active) } },
      h("td", { class: "level" }, h("span", { class: `level-chip ${a.level}` }, t(`board.alert.level.${a.level}`))),
      h("td", {}, t(`board.alert.metric.${a.metric}`)),
      h("td", {}, a.queue_id ?? "–"),
      h("td", { class: "num" }, alertValue(a.metric, a.observed)),
      h("td", { class: "num" }, alertValue(a.metric, a.threshold)),
      h("td", {}, dateTime(a.raised_at, { dateStyle: "short", timeStyle: "medium", timeZone: ctx.timeZone() })),
      h("td", {}, a.active ? t("console.alerts.active") : dateTime(a.cleared_at, { timeStyle: "medium", timeZone: ctx.timeZone() })),
      h("td", { class: "ack-cell" }, ack));
  }

  function render(list) {
    const active = list.filter((a) => a.active);
    const recent = list.filter((a) => !a.active);
    $("alerts-active").replaceChildren(...active.map(row));
    $("alerts-recent").replaceChildren(...recent.map(row));
    $("alerts-active-empty").hidden = active.length > 0;
    $("alerts-recent-empty").hidden = recent.length > 0;
    const open = active.filter((a) => !a.acked_at).length;
    const counter = $("alerts-count");
    counter.textContent = open ? number(open) : "";
    counter.hidden = !open;
  }

  async function load() {
    if (loading) {
      again = true; // one more read after this one: it may have begun before the change
      return loading;
    }
    loading = (async () => {
      try {
        render((await ctx.api.get("api/alerts")).data);
        status($("alerts-status"), "");
      } catch (err) {
        status($("alerts-status"), explain(err), "error");
      }
    })();
    try {
      await loading;
    } finally {
      loading = null;
    }
    if (again) {
      again = false;
      await load();
    }
  }

  async function acknowledge(id) {
    try {
      await ctx.api.post(`api/alerts/${encodeURIComponent(id)}/ack`);
    } catch (err) {
      status($("alerts-status"), err instanceof ApiError ? explain(err) : String(err), "error");
    }
    await load();
  }

  // Every POLL_MS while the Alerts tab is shown, else every IDLE_MS (the tab's count; messages reload at once).
  let last = 0;
  setInterval(() => {
    if (document.hidden || (document.body.dataset.tab !== "alerts" && Date.now() - last < IDLE_MS)) return;
    last = Date.now();
    load();
  }, POLL_MS);
  return { load, onAlert: () => load() };
}
