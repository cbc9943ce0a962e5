// History sections over the chosen period: queue charts, sectors (queues and teams),
// satisfaction (CSAT/NPS) and costs. Each has a load() that the page calls when the section
// is shown or the period changes; an answer to an older request is dropped.

import { $, cell, duration, explain, h, money, num, percent, show, status, when } from "./supervisor-api.js";
import { destroyChart, drawChart } from "./supervisor-charts.js";
import { currentLanguage, t } from "./i18n.js";

const GRANULARITY = { "15m": "console.15_minutes", hour: "console.hour", day: "console.day", week: "console.week", month: "console.month" };

const pctAxis = (v) => `${Math.round(v * 100)}%`;

/** A section's loader: one request generation at a time, errors on the status line. */
function loader(statusEl, fetchAll, render, onError = () => {}) {
  let generation = 0;
  return async function load() {
    const mine = ++generation;
    status(statusEl, t("common.loading"));
    try {
      const docs = await fetchAll();
      if (mine !== generation) return;
      status(statusEl, "");
      render(docs);
      statusEl.closest(".tabpanel").dataset.loaded = String(mine); // "this section shows an answer" (tests wait on it)
    } catch (err) {
      if (mine !== generation) return;
      status(statusEl, explain(err), "error");
      onError(err);
    }
  };
}

function tiles(container, values) {
  for (const [metric, value, text] of values) show(container.querySelector(`[data-metric="${metric}"] dd`), value, text);
}

function bucketLabel(d, granularity, timeZone) {
  if (granularity === "day" || granularity === "week") return when(d.start, timeZone, "date");
  if (granularity === "month") return when(d.start, timeZone, "month");
  return when(d.start, timeZone, "datetime");
}

// -- queues -------------------------------------------------------------------------

export function createQueues(ctx) {
  const queueSelect = $("chart-queue");
  const granularity = $("chart-granularity");
  queueSelect.addEventListener("change", () => load());
  granularity.addEventListener("change", () => load());

  const load = loader($("queues-status"), () => {
    const { from, to } = ctx.period();
    fillQueues(queueSelect, ctx.queues());
    return ctx.api.get("api/analytics/performance/trends", { from, to, granularity: granularity.value, queue_id: queueSelect.value });
  }, render, () => {
    destroyChart($("chart-calls"));
    destroyChart($("chart-sl"));
  });

  function render(doc) {
    const s = doc.statistics || {};
    const panel = $("panel-queues");
    Object.assign(panel.dataset, { from: s.from || "", to: s.to || "", granularity: s.granularity || "", queue: queueSelect.value, buckets: doc.data.length });
    tiles($("queue-totals"), [
      ["offered", s.offered, num(s.offered)], ["answered", s.answered, num(s.answered)],
      ["abandoned", s.abandoned, num(s.abandoned)], ["service_level", s.service_level, percent(s.service_level)],
      ["abandon_rate", s.abandon_rate, percent(s.abandon_rate, 1)], ["asa_s", s.asa_s, duration(s.asa_s)],
      ["aht_s", s.aht_s, duration(s.aht_s)], ["handled", s.handled, num(s.handled)],
    ]);
    const tz = ctx.timeZone();
    $("queue-buckets").replaceChildren(...doc.data.map((d) => h("tr", { dataset: { start: d.start, end: d.end } },
      h("td", {}, bucketLabel(d, s.granularity, tz)),
      cell("offered", d.offered, num(d.offered), { class: "num" }),
      cell("answered", d.answered, num(d.answered), { class: "num" }),
      cell("abandoned", d.abandoned, num(d.abandoned), { class: "num" }),
      cell("service_level", d.service_level, percent(d.service_level), { class: "num" }),
      cell("abandon_rate", d.abandon_rate, percent(d.abandon_rate, 1), { class: "num" }),
      cell("asa_s", d.asa_s, duration(d.asa_s), { class: "num" }),
      cell("aht_s", d.aht_s, duration(d.aht_s), { class: "num" }),
    )));
    const pick = (key) => doc.data.map((d) => d[key] ?? null);
    const frame = { buckets: doc.data, timeZone: tz, nowMs: ctx.serverNow(), label: (d) => bucketLabel(d, s.granularity, tz) };
    drawChart($("chart-calls"), {
      ...frame,
      series: [
        { label: t("console.offered"), key: "offered", values: pick("offered"), kind: "bars" },
        { label: t("console.answered"), key: "answered", values: pick("answered") },
        { label: t("console.abandoned"), key: "abandoned", values: pick("abandoned") },
      ],
    });
    drawChart($("chart-sl"), {
      ...frame,
      scales: { y: { range: [0, 1], format: pctAxis } },
      series: [
        { label: t("console.service_level"), key: "service_level", values: pick("service_level") },
        { label: t("console.abandon_rate"), key: "abandon_rate", values: pick("abandon_rate") },
      ],
    });
    $("chart-note").textContent = t(doc.data.length === 1 ? "console.chart_note_one" : "console.chart_note_other",
      { n: doc.data.length, granularity: currentLanguage() === "en" ? s.granularity : t(GRANULARITY[s.granularity] || s.granularity), zone: tz || Intl.DateTimeFormat().resolvedOptions().timeZone });
  }

  return {
    load,
    /** Choose the granularity that suits a period of `days` days (the user may change it after). */
    suit(days) {
      granularity.value = days <= 2 ? "hour" : days <= 62 ? "day" : days <= 366 ? "week" : "month";
    },
    showQueue(queueId) {
      fillQueues(queueSelect, [...ctx.queues(), queueId]);
      queueSelect.value = queueId;
    },
  };
}

function fillQueues(select, queues) {
  const current = select.value;
  const wanted = ["", ...[...new Set(queues)].filter(Boolean).sort()];
  if (current && !wanted.includes(current)) wanted.push(current);
  if ([...select.options].map((o) => o.value).join("\u0000") === wanted.join("\u0000")) return;
  select.replaceChildren(...wanted.map((q) => h("option", { value: q }, q || t("console.all_queues"))));
  select.value = current;
}

// -- sectors ----------------------------------------------------------------------------

export function createSectors(ctx) {
  const load = loader($("sectors-status"), () => ctx.api.get("api/analytics/performance/sectors", ctx.period()), render, () => {
    $("sector-queues").replaceChildren();
    $("sector-teams").replaceChildren();
  });

  function render(doc) {
    const queues = doc.data.filter((d) => d.kind === "queue");
    const teams = doc.data.filter((d) => d.kind === "team");
    ctx.addQueues(queues.map((q) => q.id));
    $("sector-queues").replaceChildren(...queues.map((q) => h("tr", {
      dataset: { kind: "queue", id: q.id }, tabindex: 0, title: "Show this queue's history",
      onclick: () => ctx.openQueue(q.id),
      onkeydown: (ev) => { if (ev.key === "Enter") ctx.openQueue(q.id); },
    },
    h("td", { class: "name" }, q.id),
    cell("offered", q.offered, num(q.offered), { class: "num" }),
    cell("answered", q.answered, num(q.answered), { class: "num" }),
    cell("abandoned", q.abandoned, num(q.abandoned), { class: "num" }),
    cell("service_level", q.service_level, percent(q.service_level), { class: "num" }),
    cell("abandon_rate", q.abandon_rate, percent(q.abandon_rate, 1), { class: "num" }),
    cell("asa_s", q.asa_s, duration(q.asa_s), { class: "num" }),
    cell("aht_s", q.aht_s, duration(q.aht_s), { class: "num" }),
    cell("handled", q.handled, num(q.handled), { class: "num" }))));
    $("sector-teams").replaceChildren(...teams.map((t) => h("tr", { dataset: { kind: "team", id: t.id } },
      h("td", { class: "name" }, t.id),
      cell("answered", t.answered, num(t.answered), { class: "num" }),
      cell("handled", t.handled, num(t.handled), { class: "num" }),
      cell("aht_s", t.aht_s, duration(t.aht_s), { class: "num" }),
      cell("fcr", t.fcr, percent(t.fcr), { class: "num" }),
      cell("transfer_rate", t.transfer_rate, percent(t.transfer_rate), { class: "num" }),
      cell("csat", t.csat, num(t.csat, 2), { class: "num" }),
      cell("nps", t.nps, num(t.nps, 0), { class: "num" }),
      cell("quality_score", t.quality_score, num(t.quality_score, 2), { class: "num" }))));
    $("sector-queues-empty").hidden = queues.length > 0;
    $("sector-teams-empty").hidden = teams.length > 0;
  }

  return { load };
}

// -- satisfaction --------------------------------------------------------------------------

export function createSatisfaction(ctx) {
  const granularity = $("csat-granularity");
  granularity.addEventListener("change", () => load());

  const load = loader($("csat-status"), () => ctx.api.get("api/analytics/satisfaction", { ...ctx.period(), granularity: granularity.value }),
    render, () => destroyChart($("chart-csat")));

  function render(doc) {
    const s = doc.statistics || {};
    tiles($("csat-totals"), [
      ["csat", s.csat, num(s.csat, 2)], ["csat_satisfied", s.csat_satisfied, percent(s.csat_satisfied)],
      ["csat_responses", s.csat_responses, num(s.csat_responses)], ["nps", s.nps, num(s.nps, 1)],
      ["nps_responses", s.nps_responses, num(s.nps_responses)],
    ]);
    const tz = ctx.timeZone();
    $("csat-buckets").replaceChildren(...doc.data.map((d) => h("tr", { dataset: { start: d.start } },
      h("td", {}, bucketLabel(d, s.granularity, tz)),
      cell("csat", d.csat, num(d.csat, 2), { class: "num" }),
      cell("csat_satisfied", d.csat_satisfied, percent(d.csat_satisfied), { class: "num" }),
      cell("csat_responses", d.csat_responses, num(d.csat_responses), { class: "num" }),
      cell("nps", d.nps, num(d.nps, 1), { class: "num" }),
      cell("nps_responses", d.nps_responses, num(d.nps_responses), { class: "num" }))));
    drawChart($("chart-csat"), {
      buckets: doc.data, timeZone: tz, nowMs: ctx.serverNow(), label: (d) => bucketLabel(d, s.granularity, tz),
      scales: { csat: { range: [1, 5], format: (v) => v.toFixed(1) }, nps: { range: [-100, 100], format: (v) => String(Math.round(v)) } },
      series: [
        { label: "CSAT (1-5)", key: "csat", scale: "csat", values: doc.data.map((d) => d.csat ?? null) },
        { label: "NPS", key: "nps", scale: "nps", values: doc.data.map((d) => d.nps ?? null) },
      ],
    });
  }

  return { load };
}

// -- costs ----------------------------------------------------------------------------------

export function createCosts(ctx) {
  const load = loader($("costs-status"), () => ctx.api.get("api/analytics/costs", ctx.period()), render, (err) => {
    $("costs-body").hidden = true;
    // Not served (yet) by this server: a quiet note, not an error.
    if (err.status === 404 || err.status === 501 || err.status === 405) {
      status($("costs-status"), t("console.costs_unavailable"), "note");
    }
    $("panel-costs").dataset.loaded = "unavailable";
  });

  function render(doc) {
    const s = doc.statistics || {};
    const currency = s.currency || "USD";
    $("costs-body").hidden = false;
    $("costs-body").dataset.currency = currency;
    tiles($("costs-totals"), [
      ["handled", s.handled, num(s.handled)], ["agent_cost", s.agent_cost, money(s.agent_cost, currency)],
      ["telephony_cost", s.telephony_cost, money(s.telephony_cost, currency)],
      ["total_cost", s.total_cost, money(s.total_cost, currency)], ["cost_per_call", s.cost_per_call, money(s.cost_per_call, currency)],
    ]);
    const figures = (d) => [
      cell("handled", d.handled, num(d.handled), { class: "num" }),
      cell("agent_cost", d.agent_cost, money(d.agent_cost, currency), { class: "num" }),
      cell("telephony_cost", d.telephony_cost, money(d.telephony_cost, currency), { class: "num" }),
      cell("total_cost", d.total_cost, money(d.total_cost, currency), { class: "num" }),
      cell("cost_per_call", d.cost_per_call, money(d.cost_per_call, currency), { class: "num" }),
    ];
    const rows = Array.isArray(doc.data) ? doc.data : [];
    const tz = ctx.timeZone();
    $("costs-rows").replaceChildren(...rows.map((d) => h("tr", { dataset: { start: d.start || d.day || "", queue: d.queue_id || "" } },
      h("td", {}, d.day || (d.start ? when(d.start, tz, "date") : "–")), h("td", { class: "name" }, d.queue_id || "–"), ...figures(d))));
    $("costs-empty").hidden = rows.length > 0;
    const names = Object.fromEntries(ctx.agents().map((a) => [a.agent_id, a.name]));
    $("costs-agents").replaceChildren(...(s.by_agent || []).map((d) => h("tr", { dataset: { agentId: d.agent_id } },
      h("td", { class: "name" }, names[d.agent_id] ? `${names[d.agent_id]} (${d.agent_id})` : d.agent_id), ...figures(d))));
    const rates = s.agent_cost_per_hour != null
      ? t("console.priced_at", { hour: money(s.agent_cost_per_hour, currency), minute: money(s.telephony_cost_per_minute, currency, 4) })
      : "";
    $("costs-rates").textContent = !s.agent_cost_per_hour && !s.telephony_cost_per_minute && s.agent_cost_per_hour != null
      ? t("console.no_cost_rates")
      : rates;
  }

  return { load };
}
