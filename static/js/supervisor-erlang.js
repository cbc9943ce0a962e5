// The console's Erlang C calculator: calls per interval, AHT and a service-level target → the
// agents required, asked of `/api/analytics/staffing/erlang-c` (so the answer is the server's),
// with the curve of service level against agents around it (the same endpoint with `agents=N`).

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { $, duration, explain, num, percent, show, status } from "./supervisor-api.js";
import { t } from "./i18n.js";

const AXIS = { stroke: "#9fb0c3", grid: { stroke: "#263241", width: 1 }, ticks: { stroke: "#263241", width: 1 } };
const CURVE_BELOW = 3; // agents shown below the answer
const CURVE_ABOVE = 5; // and above it

export function createErlang(ctx) {
  const form = $("erlang-form");
  let plot = null;
  let generation = 0;

  function params() {
    const value = (id) => $(id).value.trim();
    return {
      calls: value("erlang-calls"), aht_s: value("erlang-aht"), interval_s: value("erlang-interval"),
      sl_threshold_s: value("erlang-threshold"), target_sl: String(Number(value("erlang-target")) / 100),
    };
  }

  async function compute(ev) {
    ev?.preventDefault();
    const mine = ++generation;
    const asked = params();
    status($("erlang-status"), t("console.erlang.computing"));
    try {
      const answer = (await ctx.api.get("api/analytics/staffing/erlang-c", asked)).data;
      const { target_sl: _, ...base } = asked;
      const low = Math.max(1, answer.required_agents - CURVE_BELOW);
      const agents = Array.from({ length: answer.required_agents + CURVE_ABOVE - low + 1 }, (_, i) => low + i);
      const points = await Promise.all(agents.map((n) => ctx.api.get("api/analytics/staffing/erlang-c", { ...base, agents: n })));
      if (mine !== generation) return;
      status($("erlang-status"), "");
      show($("erlang-required"), answer.required_agents, num(answer.required_agents));
      show($("erlang-sl"), answer.service_level, percent(answer.service_level, 1));
      show($("erlang-asa"), answer.asa_s, duration(answer.asa_s));
      show($("erlang-occupancy"), answer.occupancy, percent(answer.occupancy, 1));
      show($("erlang-wait"), answer.wait_probability, percent(answer.wait_probability, 1));
      $("erlang-result").hidden = false;
      draw(agents, points.map((p) => p.data.service_level), Number(asked.target_sl));
      $("panel-erlang").dataset.loaded = String(mine);
    } catch (err) {
      if (mine !== generation) return;
      status($("erlang-status"), explain(err), "error");
    }
  }

  function draw(agents, levels, target) {
    const box = $("erlang-chart");
    plot?.destroy();
    box.replaceChildren();
    box.dataset.points = String(agents.length);
    box.dataset.agents = agents.join(",");
    box.dataset.levels = levels.map((v) => (v == null ? "" : v.toFixed(4))).join(",");
    const width = Math.max(240, Math.floor(box.getBoundingClientRect().width));
    plot = new uPlot({
      width, height: 220,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false }, y: { range: () => [0, 1] } },
      axes: [{ ...AXIS, label: t("console.erlang.agents_axis") },
        { ...AXIS, size: 54, values: (u, splits) => splits.map((v) => `${Math.round(v * 100)}%`) }],
      series: [
        { label: t("console.erlang.agents_axis") },
        { label: t("console.erlang.service_level"), stroke: "#4c9dff", width: 2.5, points: { show: true, size: 7 },
          value: (u, v) => (v == null ? "–" : `${(v * 100).toFixed(1)}%`) },
        { label: t("console.erlang.target"), stroke: "#ffb21e", width: 1.5, dash: [6, 4], points: { show: false },
          value: (u, v) => (v == null ? "–" : `${(v * 100).toFixed(0)}%`) },
      ],
    }, [agents, levels, agents.map(() => target)], box);
  }

  form.addEventListener("submit", compute);
  return { load() {}, compute };
}
