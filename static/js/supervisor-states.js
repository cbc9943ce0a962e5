// Agent states over the chosen period (GET /api/analytics/agents/states): for one day, a timeline
// per agent (one cell per 15 minutes, coloured by the state it spent most of that time in, the
// seconds per state in its title); for any period, a table per agent: time logged in and per state,
// break reasons, occupancy, utilization, first login, last logout and missed calls.
// Strings go through t() (keys console.states.* in static/i18n/*.json).

import { $, cell, duration, explain, h, num, percent, show, status, when } from "./supervisor-api.js";
import { t, useLanguage } from "./i18n.js";

const STATES = ["available", "on_call", "wrap_up", "break", "other"];

function busiest(states) {
  let best = null;
  for (const state of STATES) if ((states[state] || 0) > (best ? states[best] : 0)) best = state;
  return best;
}

/** Per agent: the day's (or period's) rows summed; first login the earliest, last logout the latest. */
function totals(rows) {
  const out = new Map();
  for (const r of rows) {
    const a = out.get(r.agent_id) || { agent_id: r.agent_id, states: {}, reasons: {}, logged_in_s: 0, missed: 0,
                                       first_login: null, last_logout: null };
    for (const [k, v] of Object.entries(r.states)) a.states[k] = (a.states[k] || 0) + v;
    for (const [k, v] of Object.entries(r.reasons)) a.reasons[k] = (a.reasons[k] || 0) + v;
    a.logged_in_s += r.logged_in_s;
    a.missed += r.missed;
    if (r.first_login && (!a.first_login || r.first_login < a.first_login)) a.first_login = r.first_login;
    if (r.last_logout && (!a.last_logout || r.last_logout > a.last_logout)) a.last_logout = r.last_logout;
    out.set(r.agent_id, a);
  }
  for (const a of out.values()) {
    const busy = (a.states.on_call || 0) + (a.states.wrap_up || 0);
    const ready = busy + (a.states.available || 0);
    a.occupancy = ready ? busy / ready : null;
    a.utilization = a.logged_in_s ? busy / a.logged_in_s : null;
  }
  return [...out.values()].sort((x, y) => (x.agent_id < y.agent_id ? -1 : 1));
}

export function createStates(ctx) {
  const panel = $("panel-states");
  const statusEl = $("states-status");
  let generation = 0;
  let translated = false;

  async function load() {
    const mine = ++generation;
    if (!translated) {
      translated = true;
      try {
        if (t("console.states.title") === "console.states.title") await useLanguage();
      } catch (err) {
        console.warn("supervisor-states: strings not loaded", err);
      }
      for (const el of panel.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    }
    const { from, to } = ctx.period();
    const oneDay = from === to;
    status(statusEl, t("console.states.loading"));
    try {
      const [table, timeline] = await Promise.all([
        ctx.api.get("api/analytics/agents/states", { from, to, granularity: "day" }),
        oneDay ? ctx.api.get("api/analytics/agents/states", { from, to, granularity: "15m" }) : null,
      ]);
      if (mine !== generation) return;
      status(statusEl, "");
      renderTable(totals(table.data));
      renderTimeline(oneDay ? timeline : null);
      Object.assign(panel.dataset, { from, to, rows: table.data.length, loaded: String(mine) });
    } catch (err) {
      if (mine !== generation) return;
      status(statusEl, explain(err), "error");
    }
  }

  function renderTable(agents) {
    const body = $("states-rows");
    body.replaceChildren(...agents.map((a) => h("tr", { dataset: { agent: a.agent_id } },
      h("th", { scope: "row" }, a.agent_id),
      cell("logged_in_s", a.logged_in_s, duration(a.logged_in_s), { class: "num" }),
      ...STATES.map((s) => cell(s, a.states[s] || 0, duration(a.states[s] || 0), { class: "num" })),
      h("td", { class: "reasons" }, Object.entries(a.reasons).map(([k, v]) => `${k} ${duration(v)}`).join(", ")),
      cell("occupancy", a.occupancy, percent(a.occupancy), { class: "num" }),
      cell("utilization", a.utilization, percent(a.utilization), { class: "num" }),
      cell("first_login", a.first_login, a.first_login ? when(a.first_login, ctx.timeZone(), "datetime") : "–"),
      cell("last_logout", a.last_logout, a.last_logout ? when(a.last_logout, ctx.timeZone(), "datetime") : "–"),
      cell("missed", a.missed, num(a.missed), { class: "num" }))));
    $("states-empty").hidden = agents.length > 0;
  }

  function renderTimeline(doc) {
    const wrap = $("states-timeline");
    wrap.hidden = !doc;
    if (!doc) return;
    const s = doc.statistics || {};
    const start = Date.parse(s.from);
    const slots = Math.max(1, Math.round((Date.parse(s.to) - start) / 900_000));
    const byAgent = new Map();
    for (const r of doc.data) {
      if (!byAgent.has(r.agent_id)) byAgent.set(r.agent_id, new Map());
      byAgent.get(r.agent_id).set(Math.floor((Date.parse(r.start) - start) / 900_000), r);
    }
    const rows = [...byAgent.keys()].sort().map((agent) => {
      const cells = [];
      for (let i = 0; i < slots; i++) {
        const r = byAgent.get(agent).get(i);
        const state = r ? busiest(r.states) : null;
        const title = r ? `${when(r.start, ctx.timeZone(), "time")} ${STATES.filter((k) => r.states[k])
          .map((k) => `${t(`console.states.${k}`)} ${duration(r.states[k])}`).join(", ")}` : "";
        cells.push(h("span", { class: `slot ${state ? `st-${state}` : "st-none"}`, title: title || null,
                               dataset: { state: state || "" } }));
      }
      return h("div", { class: "timeline-row", dataset: { agent } }, h("span", { class: "timeline-agent" }, agent),
        h("span", { class: "timeline-slots" }, cells));
    });
    $("states-timeline-rows").replaceChildren(...rows);
    show($("states-timeline-count"), rows.length, t("console.states.agents", { n: rows.length }));
  }

  return { load };
}
