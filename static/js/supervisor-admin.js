// Settings (role admin: GET|PUT /api/settings) and CSV exports (GET /api/reports/{name}).
//
// Settings inputs are named by the setting's path (`alerts.waiting.amber`), the same path a
// 400 names in `details.field`, so the message lands beside the input. Rates show as percent.
// Exports are fetched with the Authorization header and saved from a Blob: no URL has the token.

import { $, ApiError, explain, num, saveResponse, status } from "./supervisor-api.js";
import { t } from "./i18n.js";

const ALERTS = ["longest_wait_s", "service_level", "abandon_rate", "waiting"];
const PERCENT = new Set(["service_level", "abandon_rate"]);

export function createSettings(ctx) {
  const form = $("settings-form");
  let loaded = null;

  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  $("s-zones").replaceChildren(...["UTC", ...zones].map((z) => Object.assign(document.createElement("option"), { value: z })));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    save();
  });
  $("settings-reset").addEventListener("click", () => loaded && fill(loaded));

  const input = (path) => form.querySelector(`[name="${CSS.escape(path)}"]`);

  function fill(s) {
    loaded = s;
    for (const key of ["timezone", "day_starts_at", "sl_threshold_s", "short_abandon_s", "sl_formula"]) input(key).value = s[key] ?? "";
    for (const metric of ALERTS) {
      for (const level of ["amber", "red"]) {
        const v = s.alerts?.[metric]?.[level];
        input(`alerts.${metric}.${level}`).value = v == null ? "" : PERCENT.has(metric) ? String(Math.round(v * 10000) / 100) : String(v);
      }
    }
    for (const key of ["agent_cost_per_hour", "telephony_cost_per_minute", "currency"]) input(`costs.${key}`).value = s.costs?.[key] ?? "";
    const overrides = Object.keys(s.queues || {}).length;
    $("settings-queues").textContent = overrides
      ? t(overrides === 1 ? "console.overrides_one" : "console.overrides_other", { n: overrides, queues: Object.keys(s.queues).join(", ") })
      : "";
  }

  /** The form as a settings patch; an empty number resets that setting to its default (null). */
  function patch() {
    const number = (path, scale = 1) => {
      const raw = input(path).value.trim();
      return raw === "" ? null : Number(raw) / scale;
    };
    const alerts = {};
    for (const metric of ALERTS) {
      const scale = PERCENT.has(metric) ? 100 : 1;
      alerts[metric] = { amber: number(`alerts.${metric}.amber`, scale), red: number(`alerts.${metric}.red`, scale) };
    }
    return {
      timezone: input("timezone").value.trim(),
      day_starts_at: input("day_starts_at").value.trim(),
      sl_threshold_s: number("sl_threshold_s"),
      short_abandon_s: number("short_abandon_s"),
      sl_formula: input("sl_formula").value,
      alerts,
      costs: {
        agent_cost_per_hour: number("costs.agent_cost_per_hour"),
        telephony_cost_per_minute: number("costs.telephony_cost_per_minute"),
        currency: input("costs.currency").value.trim().toUpperCase(),
      },
    };
  }

  function clearErrors() {
    for (const el of form.querySelectorAll(".field-error")) status(el, "");
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    status($("settings-result"), "");
  }

  /** Show a 400 beside the field it names, or beside the nearest enclosing group (`alerts.waiting`). */
  function showFieldError(err) {
    const parts = (err.field || "").split(".");
    while (parts.length) {
      const path = parts.join(".");
      const target = form.querySelector(`.field-error[data-for="${CSS.escape(path)}"]`);
      if (target) {
        status(target, err.message, "error");
        const el = input(path) || form.querySelector(`[name^="${CSS.escape(path)}."]`);
        if (el) {
          el.setAttribute("aria-invalid", "true");
          el.focus();
        }
        return;
      }
      parts.pop();
    }
    status($("settings-result"), err.message, "error");
  }

  async function save() {
    clearErrors();
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const doc = await ctx.api.put("api/settings", patch());
      fill(doc.data);
      ctx.settingsChanged(doc.data);
      status($("settings-result"), t("console.saved"), "ok");
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) showFieldError(err);
      else status($("settings-result"), explain(err), "error");
    } finally {
      button.disabled = false;
    }
  }

  async function load() {
    status($("settings-status"), t("common.loading"));
    try {
      const doc = await ctx.api.get("api/settings");
      status($("settings-status"), "");
      fill(doc.data);
      return doc.data;
    } catch (err) {
      status($("settings-status"), explain(err), "error");
      return null;
    }
  }

  return { load };
}

export function createReports(ctx) {
  for (const button of document.querySelectorAll("button[data-report]")) {
    button.addEventListener("click", () => download(button));
  }

  async function download(button) {
    const name = button.dataset.report;
    const line = document.querySelector(`.report-status[data-report="${CSS.escape(name)}"]`);
    const { from, to } = ctx.period();
    button.disabled = true;
    status(line, t("console.preparing"));
    try {
      const response = await ctx.api.raw(`api/reports/${encodeURIComponent(name)}`, { format: "csv", from, to }, "text/csv");
      const saved = await saveResponse(response, `${name}_${from}_${to}.csv`);
      status(line, t("console.downloaded", { name: saved.name, bytes: num(saved.bytes) }), "ok");
    } catch (err) {
      status(line, err instanceof ApiError && err.status === 404 ? t("console.report_unavailable") : explain(err),
        err instanceof ApiError && err.status === 404 ? "note" : "error");
    } finally {
      button.disabled = false;
    }
  }

  return {
    load() {
      const { from, to } = ctx.period();
      $("reports-period").textContent = from === to ? from : t("console.from_to", { from, to });
    },
  };
}
