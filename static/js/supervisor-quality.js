// Quality: the scoring form (POST /api/analytics/calls/quality), the period's reviews and the
// mean score per agent. The server validates; its 400 names the field, shown next to it.

import { $, ApiError, cell, explain, h, num, status, when } from "./supervisor-api.js";
import { t } from "./i18n.js";

export function createQuality(ctx) {
  const form = $("quality-form");
  let generation = 0;

  $("q-add-criterion").addEventListener("click", () => addCriterion());
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    submit();
  });
  for (const name of ["Greeting", "Resolution"]) addCriterion(name);

  function addCriterion(name = "") {
    const row = h("div", { class: "criterion" },
      h("input", { type: "text", class: "c-name", placeholder: t("console.criterion"), value: name, maxlength: 64, "aria-label": t("console.criterion_name") }),
      h("input", { type: "number", class: "c-score", min: 0, max: 5, step: 0.5, placeholder: "0-5", "aria-label": t("console.score_for", { name: name || t("console.criterion") }) }),
      h("button", { type: "button", class: "icon", title: t("console.remove"), "aria-label": t("console.remove_criterion"), onclick: () => row.remove() }, "×"),
      h("span", { class: "field-error", role: "alert", hidden: true }));
    $("q-criteria").append(row);
    return row;
  }

  function clearErrors() {
    for (const el of form.querySelectorAll(".field-error")) status(el, "");
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    status($("q-result"), "");
  }

  /** The 400's field → the message beside its input (a criterion's own row for `criteria.<name>`). */
  function showFieldError(err) {
    const field = err.field || "";
    let target = form.querySelector(`.field-error[data-for="${CSS.escape(field)}"]`);
    let input = form.querySelector(`[name="${CSS.escape(field)}"]`);
    if (!target && field.startsWith("criteria.")) {
      const name = field.slice("criteria.".length);
      const row = [...form.querySelectorAll(".criterion")].find((r) => r.querySelector(".c-name").value.trim() === name);
      if (row) {
        target = row.querySelector(".field-error");
        input = row.querySelector(".c-score");
      } else {
        target = form.querySelector('.field-error[data-for="criteria"]');
      }
    }
    if (!target) {
      status($("q-result"), err.message, "error");
      return;
    }
    status(target, err.message, "error");
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }

  function body() {
    const value = (id) => $(id).value.trim();
    const out = { call_id: value("q-call"), agent_id: value("q-agent") };
    const score = value("q-score");
    if (score !== "") out.score = Number(score);
    const criteria = {};
    for (const row of form.querySelectorAll(".criterion")) {
      const name = row.querySelector(".c-name").value.trim();
      const raw = row.querySelector(".c-score").value.trim();
      if (raw === "") continue; // criteria are optional: a named row left blank is not scored
      criteria[name] = Number(raw);
    }
    if (Object.keys(criteria).length) out.criteria = criteria;
    return out;
  }

  async function submit() {
    clearErrors();
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const doc = await ctx.api.post("api/analytics/calls/quality", body());
      const d = doc.data;
      status($("q-result"), t("console.score_saved", { score: num(d.score, 2), call: d.call_id, agent: d.agent_id }), "ok");
      $("q-call").value = "";
      $("q-score").value = "";
      for (const input of form.querySelectorAll(".c-score")) input.value = "";
      await load();
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) showFieldError(err);
      else status($("q-result"), explain(err), "error");
    } finally {
      button.disabled = false;
    }
  }

  async function load() {
    const mine = ++generation;
    const period = ctx.period();
    fillAgents();
    status($("quality-status"), t("common.loading"));
    try {
      const [list, summary] = await Promise.all([
        ctx.api.get("api/analytics/calls/quality", period),
        ctx.api.get("api/analytics/calls/quality/summary", period),
      ]);
      if (mine !== generation) return;
      status($("quality-status"), "");
      render(list, summary);
      $("panel-quality").dataset.loaded = String(mine);
    } catch (err) {
      if (mine === generation) status($("quality-status"), explain(err), "error");
    }
  }

  function nameOf(agentId) {
    const a = ctx.agents().find((x) => x.agent_id === agentId);
    return a?.name ? `${a.name} (${agentId})` : agentId;
  }

  function render(list, summary) {
    const s = summary.statistics || {};
    const mean = document.querySelector('#quality-totals [data-metric="quality_score"] dd');
    const reviews = document.querySelector('#quality-totals [data-metric="reviews"] dd');
    mean.dataset.value = s.quality_score ?? "";
    mean.textContent = num(s.quality_score, 2);
    reviews.dataset.value = s.reviews ?? "";
    reviews.textContent = num(s.reviews);
    $("quality-agents").replaceChildren(...summary.data.map((r) => h("tr", { dataset: { agentId: r.agent_id } },
      h("td", { class: "name" }, nameOf(r.agent_id)),
      cell("quality_score", r.quality_score, num(r.quality_score, 2), { class: "num" }),
      cell("reviews", r.reviews, num(r.reviews), { class: "num" }))));
    $("quality-rows").replaceChildren(...list.data.map((r) => h("tr", { dataset: { scoreId: r.score_id, callId: r.call_id, agentId: r.agent_id } },
      h("td", {}, when(r.scored_at, ctx.timeZone(), "datetime")),
      cell("call_id", r.call_id, r.call_id),
      cell("agent_id", r.agent_id, nameOf(r.agent_id)),
      cell("score", r.score, num(r.score, 2), { class: "num score" }),
      h("td", { class: "criteria" }, Object.entries(r.criteria || {}).map(([k, v]) => `${k} ${num(v, 1)}`).join(" · ") || "–"),
      cell("reviewer", r.reviewer, r.reviewer || "–"))));
    $("quality-empty").hidden = list.data.length > 0;
    $("quality-agents-empty").hidden = summary.data.length > 0;
  }

  function fillAgents() {
    $("q-agents").replaceChildren(...ctx.agents().map((a) => h("option", { value: a.agent_id }, a.name || a.agent_id)));
  }

  return {
    load,
    /** Prefill the form for an agent's current call (from the drill-down). */
    prefill(agent) {
      clearErrors();
      $("q-agent").value = agent.agent_id;
      $("q-call").value = agent.call_id || "";
      $("q-score").focus();
    },
  };
}
