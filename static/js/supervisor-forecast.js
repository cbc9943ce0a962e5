// The console's Forecast tab (today's stored forecast of offered calls per 15 minutes against the
// calls actually offered, on uPlot, with the model's backtest accuracy) and Anomalies tab (the
// flagged intervals and threshold alerts of the chosen period, newest first).

import { $, cell, h, num, percent, status, when } from "./supervisor-api.js";
import { destroyChart, drawChart } from "./supervisor-charts.js";
import { t } from "./i18n.js";

/** One request generation at a time; errors on the section's status line. */
function latest(statusEl, run) {
  let generation = 0;
  return async function load() {
    const mine = ++generation;
    status(statusEl, t("console.forecast.loading"));
    try {
      const done = await run(() => mine === generation);
      if (mine !== generation || done === false) return;
      status(statusEl, "");
      statusEl.closest(".tabpanel").dataset.loaded = String(mine);
    } catch (err) {
      if (mine !== generation) return;
      status(statusEl, err.message || String(err), "error");
    }
  };
}

export function createForecast(ctx) {
  const select = $("forecast-queue");

  function fillQueues() {
    const chosen = select.value;
    const options = [h("option", { value: "" }, t("console.forecast.all_queues"))];
    for (const q of ctx.queues().sort()) options.push(h("option", { value: q }, q));
    select.replaceChildren(...options);
    select.value = ctx.queues().includes(chosen) ? chosen : "";
  }

  const load = latest($("forecast-status"), async (current) => {
    fillQueues();
    const day = ctx.today();
    const params = { from: day, to: day, granularity: "15m", queue_id: select.value };
    const [predicted, actual] = await Promise.all([
      ctx.api.get("api/analytics/predictions", params),
      ctx.api.get("api/analytics/performance/trends", params),
    ]);
    if (!current()) return false;
    render(predicted, actual);
    return true;
  });

  function render(predicted, actual) {
    const buckets = new Map(); // start → {start, end, forecast, actual, required}
    const at = (b) => {
      if (!buckets.has(b.start)) buckets.set(b.start, { start: b.start, end: b.end, forecast: null, actual: null, required: null });
      return buckets.get(b.start);
    };
    for (const row of predicted.data) {
      const b = at(row);
      b.forecast = (b.forecast ?? 0) + row.offered;
      if (row.required_agents != null) b.required = (b.required ?? 0) + row.required_agents;
    }
    for (const row of actual.data) at(row).actual = row.offered ?? 0;
    const rows = [...buckets.values()].sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
    const s = predicted.statistics || {};
    const meta = select.value ? (s.queues || []).find((q) => q.queue_id === select.value) : null;
    const accuracy = meta ? meta.accuracy : s.accuracy;
    const accuracyEl = $("forecast-accuracy");
    accuracyEl.dataset.value = accuracy == null ? "" : String(accuracy);
    accuracyEl.textContent = accuracy == null ? t("console.forecast.no_accuracy")
      : t("console.forecast.accuracy", { value: percent(accuracy, 1) });
    const models = [...new Set((s.queues || []).filter((q) => !meta || q === meta).map((q) => q.model))].join(", ");
    $("forecast-model").textContent = models ? t("console.forecast.model", { model: models }) : "";
    const none = predicted.data.length === 0;
    $("forecast-none").hidden = !none;
    const tz = ctx.timeZone();
    if (rows.length) {
      drawChart($("forecast-chart"), {
        buckets: rows, timeZone: tz, nowMs: Number.MAX_SAFE_INTEGER, label: (b) => when(b.start, tz, "time"),
        series: [
          { label: t("console.forecast.actual"), key: "offered", kind: "bars", values: rows.map((b) => (Date.parse(b.start) <= ctx.serverNow() ? b.actual : null)) },
          { label: t("console.forecast.forecast"), key: "forecast", values: rows.map((b) => (b.forecast == null ? null : round(b.forecast))) },
        ],
      });
    } else {
      destroyChart($("forecast-chart"));
    }
    $("forecast-chart").dataset.forecast = rows.map((b) => (b.forecast == null ? "" : round(b.forecast))).join(",");
    $("forecast-rows").replaceChildren(...rows.map((b) => h("tr", { dataset: { start: b.start } },
      cell("start", b.start, when(b.start, tz, "time")),
      cell("forecast", b.forecast == null ? null : round(b.forecast), num(b.forecast, 1), { class: "num" }),
      cell("actual", b.actual, num(b.actual), { class: "num" }),
      cell("required_agents", b.required, num(b.required), { class: "num" }))));
  }

  select.addEventListener("change", () => load());
  return { load };
}

function round(value) {
  return Math.round(value * 100) / 100;
}

export function createAnomalies(ctx) {
  const kind = $("anomalies-kind");
  const load = latest($("anomalies-status"), async (current) => {
    const doc = await ctx.api.get("api/analytics/anomalies", { ...ctx.period(), kind: kind.value });
    if (!current()) return false;
    const tz = ctx.timeZone();
    const rows = doc.data.map((a) => h("tr", { dataset: { anomalyId: String(a.anomaly_id), kind: a.kind } },
      cell("raised_at", a.raised_at, when(a.raised_at, tz)),
      cell("kind", a.kind, t(`console.anomalies.kind_${a.kind}`)),
      cell("queue_id", a.queue_id, a.queue_id ?? "–"),
      cell("metric", a.metric, a.metric),
      cell("interval_start", a.interval_start, when(a.interval_start, tz)),
      cell("observed", a.observed, num(a.observed, 2), { class: "num" }),
      cell("expected", a.expected ?? a.threshold, num(a.expected ?? a.threshold, 2), { class: "num" }),
      cell("score", a.score ?? a.level, a.level ? t(`console.anomalies.level_${a.level}`) : num(a.score, 2), { class: "num" }),
      cell("cleared_at", a.cleared_at, a.cleared_at ? when(a.cleared_at, tz) : t("console.anomalies.open"))));
    $("anomalies-rows").replaceChildren(...rows);
    $("anomalies-none").hidden = rows.length > 0;
    const st = doc.statistics || {};
    $("anomalies-summary").textContent = t("console.anomalies.summary", { count: doc.data.length, open: st.open ?? 0 });
    return true;
  });
  kind.addEventListener("change", () => load());
  return { load };
}
