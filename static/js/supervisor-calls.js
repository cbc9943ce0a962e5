// The console's Calls tab: every waiting call by queue (the live `calls` view, waits ticking
// from `queued_at` on the server's clock) and the pending callbacks.

import { $, cell, duration, h, when } from "./supervisor-api.js";
import { t } from "./i18n.js";

export function createCalls(ctx) {
  let doc = null;

  function update(data) {
    doc = data;
    const byQueue = new Map();
    for (const call of data.waiting || []) {
      if (!byQueue.has(call.queue_id)) byQueue.set(call.queue_id, []);
      byQueue.get(call.queue_id).push(call);
    }
    const rows = [];
    for (const queueId of [...byQueue.keys()].sort()) {
      const calls = byQueue.get(queueId).sort((a, b) => a.position - b.position);
      rows.push(h("tr", { class: "group" }, h("th", { colspan: 4, scope: "rowgroup" },
        t("console.calls.queue_count", { queue: queueId, count: calls.length }))));
      for (const call of calls) {
        rows.push(h("tr", { dataset: { callId: call.call_id, queueId, queuedAt: call.queued_at } },
          cell("position", call.position, String(call.position), { class: "num" }),
          cell("call_id", call.call_id, call.call_id),
          cell("queued_at", call.queued_at, when(call.queued_at, ctx.timeZone(), "time")),
          cell("wait", "", "–", { class: "num" })));
      }
    }
    $("calls-rows").replaceChildren(...rows);
    $("calls-none").hidden = rows.length > 0;
    const callbacks = (data.callbacks || []).map((cb) => h("tr", { dataset: { callbackId: cb.callback_id } },
      cell("callback_id", cb.callback_id, cb.callback_id),
      cell("queue_id", cb.queue_id, cb.queue_id ?? "–"),
      cell("requested_at", cb.requested_at, stamp(cb.requested_at, ctx)),
      cell("due_ts", cb.due_ts, stamp(cb.due_ts, ctx))));
    $("callbacks-rows").replaceChildren(...callbacks);
    $("callbacks-none").hidden = callbacks.length > 0;
    $("tab-calls").dataset.count = String((data.waiting || []).length);
    tick();
  }

  function tick() {
    if (!doc) return;
    const now = ctx.serverNow();
    for (const tr of $("calls-rows").querySelectorAll("tr[data-queued-at]")) {
      const seconds = Math.max(0, (now - Date.parse(tr.dataset.queuedAt)) / 1000);
      const td = tr.querySelector('[data-metric="wait"]');
      td.dataset.value = seconds.toFixed(1);
      td.textContent = duration(seconds);
    }
  }

  setInterval(tick, 1000);
  return { load() {}, update, tick };
}

/** A callback time: an ISO string or epoch ms, as a local date/time. */
function stamp(value, ctx) {
  if (value == null) return "–";
  const iso = typeof value === "number" ? new Date(value).toISOString() : String(value);
  return when(iso, ctx.timeZone(), "datetime");
}
