// Agents now: the live agents list with team / queue / state filters and time in state ticking
// each second; a click opens the agent's drill-down (today live, and the period's history).

import { $, cell, duration, explain, h, num, percent, show, status, when } from "./supervisor-api.js";
import { t } from "./i18n.js";

export const STATE_ORDER = ["available", "on_call", "wrap_up", "break", "other", "logged_out"];
/** A state's name in the page's language (`STATE_LABEL.on_call`); undefined for anything else. */
export const STATE_LABEL = new Proxy({}, { get: (_, state) => (STATE_ORDER.includes(state) ? t(`common.state.${state}`) : undefined) });

/**
 * @param {object} ctx the page context: api, period(), serverNow(), timeZone(), onScore(agent)
 */
export function createAgents(ctx) {
  let agents = [];
  let selected = null; // agent_id of the drill-down
  let drillGeneration = 0;
  const filters = { team: $("filter-team"), queue: $("filter-queue"), state: $("filter-state") };

  for (const select of Object.values(filters)) select.addEventListener("change", render);
  $("drill-close").addEventListener("click", () => select(null));
  $("drill-score").addEventListener("click", () => {
    const agent = agents.find((a) => a.agent_id === selected);
    if (agent) ctx.onScore(agent);
  });

  function fillOptions(select, values, label) {
    const current = select.value;
    const wanted = ["", ...values];
    const have = [...select.options].map((o) => o.value);
    if (wanted.join("\u0000") === have.join("\u0000")) return;
    select.replaceChildren(...wanted.map((v) => h("option", { value: v }, v === "" ? label : (STATE_LABEL[v] || v))));
    // A filter whose value left the list stays chosen (its agents may come back) rather than jumping to "all".
    if (current && !values.includes(current)) select.append(h("option", { value: current }, current));
    select.value = current;
  }

  function matches(a) {
    const { team, queue, state } = filters;
    if (team.value && a.team !== team.value) return false;
    if (queue.value && a.queue_id !== queue.value && !(a.queues || []).includes(queue.value)) return false;
    if (state.value && a.state !== state.value) return false;
    return true;
  }

  function render() {
    const teams = [...new Set(agents.map((a) => a.team).filter(Boolean))].sort();
    const queues = [...new Set(agents.flatMap((a) => [...(a.queues || []), a.queue_id]).filter(Boolean))].sort();
    fillOptions(filters.team, teams, t("console.all_teams"));
    fillOptions(filters.queue, queues, t("console.all_queues"));
    fillOptions(filters.state, STATE_ORDER, t("console.all_states"));

    const shown = agents.filter(matches).sort((a, b) =>
      (STATE_ORDER.indexOf(a.state) - STATE_ORDER.indexOf(b.state))
      || String(a.name || a.agent_id).localeCompare(String(b.name || b.agent_id)));
    const body = $("agent-rows");
    const focused = body.contains(document.activeElement) ? document.activeElement.dataset.agentId : null;
    body.replaceChildren(...shown.map((a) => row(a)));
    if (focused) body.querySelector(`tr[data-agent-id="${CSS.escape(focused)}"]`)?.focus({ preventScroll: true });
    $("agents-empty").hidden = shown.length > 0;
    $("agents-empty").textContent = agents.length ? t("console.no_agent_matches") : t("console.no_agents_yet_for_this_tenant");
    const counts = Object.fromEntries(STATE_ORDER.map((s) => [s, 0]));
    for (const a of shown) counts[a.state] = (counts[a.state] || 0) + 1;
    $("agent-counts").replaceChildren(...STATE_ORDER.filter((s) => counts[s]).map((s) =>
      h("span", { class: "chip", dataset: { state: s, count: counts[s] } }, `${STATE_LABEL[s]} ${counts[s]}`)));
    $("agents-shown").textContent = t("console.agents_shown", { shown: num(shown.length), all: num(agents.length) });
    tick();
    if (selected) renderDrillLive();
  }

  function row(a) {
    const tr = h("tr", {
      tabindex: 0, class: a.agent_id === selected ? "selected" : null,
      dataset: { agentId: a.agent_id, state: a.state, since: a.since || "" },
      onclick: () => select(a.agent_id),
      onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(a.agent_id); } },
    });
    const label = STATE_LABEL[a.state] || a.state;
    tr.append(
      h("td", { class: "who" }, h("span", { class: "agent-name" }, a.name || a.agent_id),
        a.name ? h("span", { class: "agent-id" }, a.agent_id) : null),
      cell("team", a.team, a.team || "–"),
      h("td", { dataset: { metric: "state", value: a.state } },
        h("span", { class: "state-chip", dataset: { state: a.state } }, label),
        a.reason ? h("span", { class: "reason" }, a.reason) : null),
      cell("time_in_state", a.state_duration_s, duration(a.state_duration_s), { class: "num time" }),
      cell("queue", a.queue_id, a.queue_id || (a.queues || []).join(", ") || "–", { class: a.queue_id ? "on-queue" : "served" }),
      cell("handled", a.today?.handled, num(a.today?.handled), { class: "num" }),
      cell("aht", a.today?.aht_s, duration(a.today?.aht_s), { class: "num" }),
      cell("occupancy", a.today?.occupancy, percent(a.today?.occupancy), { class: "num" }),
    );
    return tr;
  }

  /** Time in state from `since` and the server clock, every second. */
  function tick() {
    const now = ctx.serverNow();
    for (const tr of $("agent-rows").children) {
      const since = Date.parse(tr.dataset.since);
      if (!Number.isFinite(since)) continue;
      const seconds = Math.max(0, (now - since) / 1000);
      show(tr.querySelector('[data-metric="time_in_state"]'), seconds.toFixed(1), duration(seconds));
    }
    const a = selected && agents.find((x) => x.agent_id === selected);
    if (a && Number.isFinite(Date.parse(a.since))) {
      const seconds = Math.max(0, (now - Date.parse(a.since)) / 1000);
      show($("drill-time"), seconds.toFixed(1), duration(seconds));
    }
  }

  // -- drill-down --------------------------------------------------------------

  function select(agentId) {
    selected = agentId;
    for (const tr of $("agent-rows").children) tr.classList.toggle("selected", tr.dataset.agentId === agentId);
    $("drill").hidden = !agentId;
    document.querySelector(".agents-split").classList.toggle("with-drill", Boolean(agentId));
    if (agentId) {
      renderDrillLive();
      tick();
      loadHistory();
    }
  }

  function renderDrillLive() {
    const a = agents.find((x) => x.agent_id === selected);
    $("drill").dataset.agentId = selected || "";
    if (!a) {
      $("drill-name").textContent = selected;
      $("drill-state").textContent = t("console.not_live");
      return;
    }
    $("drill-name").textContent = a.name || a.agent_id;
    $("drill-meta").textContent = [a.agent_id, a.team && t("console.drill_team", { team: a.team }),
      (a.queues || []).length && t("console.drill_queues", { queues: a.queues.join(", ") })]
      .filter(Boolean).join(" · ");
    const chip = $("drill-state");
    chip.dataset.state = a.state;
    chip.textContent = `${STATE_LABEL[a.state] || a.state}${a.reason ? ` · ${a.reason}` : ""}${a.queue_id ? ` · ${a.queue_id}` : ""}`;
    $("drill-score").hidden = !a.call_id;
    const today = a.today || {};
    const tiles = [
      ["handled", today.handled, num(today.handled)], ["aht_s", today.aht_s, duration(today.aht_s)],
      ["occupancy", today.occupancy, percent(today.occupancy)], ["utilization", today.utilization, percent(today.utilization)],
      ["csat", today.csat, num(today.csat, 2)], ["quality_score", today.quality_score, num(today.quality_score, 2)],
    ];
    for (const [metric, value, text] of tiles) show(document.querySelector(`#drill-today [data-metric="${metric}"] dd`), value, text);
    const times = today.time_in_state_s || {};
    const total = Object.values(times).reduce((x, y) => x + y, 0);
    $("drill-states").replaceChildren(...STATE_ORDER.filter((s) => times[s]).map((s) =>
      h("span", { class: "bar-seg", dataset: { state: s }, style: `flex-grow:${times[s]}`, title: `${STATE_LABEL[s]} ${duration(times[s])}` })));
    $("drill-states-legend").replaceChildren(...STATE_ORDER.filter((s) => times[s]).map((s) =>
      h("span", { class: "legend-item", dataset: { state: s } }, `${STATE_LABEL[s]} ${duration(times[s])} (${percent(times[s] / total)})`)));
  }

  async function loadHistory() {
    const agentId = selected;
    if (!agentId) return;
    const generation = ++drillGeneration;
    delete $("drill").dataset.loaded;
    const { from, to } = ctx.period();
    $("drill-period").textContent = from === to ? from : t("console.from_to", { from, to });
    status($("drill-status"), t("common.loading"));
    try {
      const [summary, trends] = await Promise.all([
        ctx.api.get("api/analytics/performance/summary", { agent_id: agentId, from, to }),
        ctx.api.get("api/analytics/performance/trends", { agent_id: agentId, from, to, granularity: "day" }),
      ]);
      if (generation !== drillGeneration) return;
      const s = summary.data;
      const figures = [
        ["answered", s.answered, num(s.answered)], ["handled", s.handled, num(s.handled)],
        ["aht_s", s.aht_s, duration(s.aht_s)], ["fcr", s.fcr, percent(s.fcr)],
        ["csat", s.csat, num(s.csat, 2)], ["quality_score", s.quality_score, num(s.quality_score, 2)],
      ];
      for (const [metric, value, text] of figures) show(document.querySelector(`#drill-summary [data-metric="${metric}"] dd`), value, text);
      $("drill-days").replaceChildren(...trends.data.map((d) => h("tr", { dataset: { start: d.start } },
        h("td", {}, when(d.start, ctx.timeZone(), "date")),
        cell("answered", d.answered, num(d.answered), { class: "num" }),
        cell("handled", d.handled, num(d.handled), { class: "num" }),
        cell("aht_s", d.aht_s, duration(d.aht_s), { class: "num" }),
        cell("fcr", d.fcr, percent(d.fcr), { class: "num" }),
        cell("csat", d.csat, num(d.csat, 2), { class: "num" }),
        cell("quality_score", d.quality_score, num(d.quality_score, 2), { class: "num" }),
      )));
      status($("drill-status"), "");
      $("drill").dataset.loaded = `${agentId}|${from}|${to}`;
    } catch (err) {
      if (generation === drillGeneration) status($("drill-status"), explain(err), "error");
    }
  }

  return {
    /** New live list (the `agents` view or a poll). */
    update(list) {
      agents = Array.isArray(list) ? list : [];
      render();
    },
    tick,
    /** The period changed: the drill-down's history follows it. */
    load: () => loadHistory(),
    list: () => agents,
  };
}
