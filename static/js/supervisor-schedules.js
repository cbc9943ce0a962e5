// Scheduled reports (role admin): GET|POST /api/report-schedules, DELETE /api/report-schedules/{id},
// POST /api/report-schedules/{id}/run. Each schedule shows its next run and its last delivery
// (delivered, failed with the error, running); a new schedule's signing secret is shown once.
// Strings come from t() (keys `console.schedules.*` in static/i18n/*.json); a 400 names its field.

import { ApiError, $, explain, h, status, when } from "./supervisor-api.js";
import { currentLocale, t, useLanguage } from "./i18n.js";

const REPORTS = ["calls", "agent-performance", "queue-intervals", "quality", "satisfaction"];
const FREQUENCIES = ["daily", "weekly", "monthly"];
const REFRESH_MS = 15_000;

export function createSchedules(ctx, root = $("schedules")) {
  let timer = null;
  let form = null;
  const list = h("tbody");
  const result = h("p", { class: "status", id: "schedules-result", role: "status", hidden: true });
  const secretLine = h("p", { class: "status", id: "schedules-secret", hidden: true });

  async function strings() {
    if (t("console.schedules.title") === "console.schedules.title") await useLanguage(); // the page loaded none yet
  }

  function buildForm() {
    const field = (name, control) => h("label", {}, t(`console.schedules.field.${name}`), " ", control);
    const select = (name, values, label) => h("select", { name }, values.map((v) => h("option", { value: v }, label(v))));
    const built = h("form", { id: "schedules-form", class: "schedules-form", novalidate: true },
      field("report", select("report", REPORTS, (v) => v)),
      field("frequency", select("frequency", FREQUENCIES, (v) => t(`console.schedules.frequency.${v}`))),
      field("at", h("input", { name: "at", type: "time", step: "1", value: "06:00", required: true })),
      field("weekday", h("input", { name: "weekday", type: "number", min: "1", max: "7", value: "1" })),
      field("month_day", h("input", { name: "month_day", type: "number", min: "1", max: "28", value: "1" })),
      field("destination", select("destination", ["webhook", "email"], (v) => t(`console.schedules.destination.${v}`))),
      field("target", h("input", { name: "target", type: "text", size: "40", required: true,
        placeholder: "https://example.com/hook  |  ops@example.com" })),
      h("button", { type: "submit", class: "primary" }, t("console.schedules.add")));
    built.addEventListener("submit", (ev) => {
      ev.preventDefault();
      create();
    });
    return built;
  }

  function cadence(s) {
    const base = t(`console.schedules.frequency.${s.frequency}`);
    // 2024-01-01 was a Monday: weekday n (1 = Monday) is that date + n - 1, named in the page's language.
    const weekday = (n) => new Intl.DateTimeFormat(currentLocale(), { weekday: "long", timeZone: "UTC" })
      .format(Date.UTC(2024, 0, n));
    const day = s.frequency === "weekly" ? `, ${weekday(s.weekday)}`
      : s.frequency === "monthly" ? `, ${t("console.schedules.day", { day: s.month_day })}` : "";
    return `${base}${day}, ${s.at}`;
  }

  function lastDelivery(s) {
    if (!s.last_status) return h("span", { class: "muted" }, t("console.schedules.status.never"));
    const text = t(`console.schedules.status.${s.last_status}`);
    if (s.last_status !== "failed") {
      return h("span", { dataset: { status: s.last_status } }, text, s.last_run_at ? ` · ${when(s.last_run_at, ctx.timeZone?.())}` : "");
    }
    return h("span", { class: "error", dataset: { status: "failed" }, title: s.last_error || "" },
      t("console.schedules.failed", { attempts: s.last_attempts ?? 0, error: s.last_error || "" }));
  }

  function row(s) {
    const target = s.destination.type === "email" ? s.destination.to : s.destination.url;
    return h("tr", { dataset: { schedule: s.id } },
      h("td", {}, s.report), h("td", {}, cadence(s)),
      h("td", {}, `${t(`console.schedules.destination.${s.destination.type}`)}: ${target}`),
      h("td", {}, s.next_run_at ? when(s.next_run_at, ctx.timeZone?.()) : "–"),
      h("td", { class: "schedule-status" }, lastDelivery(s)),
      h("td", {},
        h("button", { type: "button", onclick: () => act(() => ctx.api.post(`api/report-schedules/${s.id}/run`, {}), "console.schedules.queued") },
          t("console.schedules.run")), " ",
        h("button", { type: "button", onclick: () => act(() => ctx.api.del(`api/report-schedules/${s.id}`), "console.schedules.deleted") },
          t("console.schedules.delete"))));
  }

  async function act(call, done) {
    try {
      await call();
      status(result, t(done), "ok");
    } catch (err) {
      status(result, explain(err), "error");
    }
    await load();
  }

  /** The form as a POST body; the server checks every field and a 400 names the one it refused. */
  function body() {
    const value = (name) => form.elements[name].value.trim();
    const out = { report: value("report"), frequency: value("frequency"), at: value("at").slice(0, 8) };
    if (out.frequency === "weekly") out.weekday = Number(value("weekday"));
    if (out.frequency === "monthly") out.month_day = Number(value("month_day"));
    out.destination = value("destination") === "email" ? { type: "email", to: value("target") } : { type: "webhook", url: value("target") };
    return out;
  }

  async function create() {
    status(secretLine, "");
    try {
      const doc = await ctx.api.post("api/report-schedules", body());
      status(result, t("console.schedules.created"), "ok");
      status(secretLine, t("console.schedules.secret", { secret: doc.data.secret }), "note");
    } catch (err) {
      const named = err instanceof ApiError && err.field ? `${err.field}: ` : "";
      status(result, named && !err.message.startsWith(named) ? named + err.message : explain(err), "error");
    }
    await load();
  }

  async function load() {
    try {
      const doc = await ctx.api.get("api/report-schedules");
      list.replaceChildren(...doc.data.map(row));
      if (!doc.data.length) list.append(h("tr", {}, h("td", { colspan: "6", class: "muted" }, t("console.schedules.none"))));
    } catch (err) {
      status(result, explain(err), "error");
    }
    clearTimeout(timer);
    // Refreshed while shown, so a run's "running" turns into its outcome without a reload.
    timer = setTimeout(function again() {
      if (document.hidden || root.closest("[hidden]")) timer = setTimeout(again, REFRESH_MS);
      else load();
    }, REFRESH_MS);
  }

  async function mount() {
    await strings();
    form = buildForm();
    const head = ["report", "cadence", "destination", "next", "last", "actions"].map((k) => h("th", {}, t(`console.schedules.column.${k}`)));
    root.replaceChildren(
      h("h2", {}, t("console.schedules.title")), h("p", { class: "muted" }, t("console.schedules.intro")),
      h("table", { class: "grid compact schedules" }, h("thead", {}, h("tr", {}, head)), list), form, result, secretLine);
    root.hidden = false;
    await load();
  }

  return { load: mount };
}
