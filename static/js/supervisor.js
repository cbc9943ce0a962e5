// The supervisor console: agents now (live), drill-down, queue history, sectors, quality,
// satisfaction, costs, CSV exports and (for admins) the tenant's settings.
//
// The token comes from the URL fragment (`#token=…`), which browsers never send, and is moved at
// once into this tab's sessionStorage, out of the address and the history (live.js); REST calls
// carry it as `Authorization: Bearer`, the WebSocket as a subprotocol (live.js). The period
// of every history section is one picker in the header, in the tenant's days (ISO dates; the
// tenant's today comes from the overview's `day`), defaulting to today.

import { LiveClient, ServerClock, fragmentParams, jwtPayload, takeToken } from "./live.js";
import { $, addDays, createApi, explain } from "./supervisor-api.js";
import { createAgents } from "./supervisor-agents.js";
import { createCosts, createQueues, createSatisfaction, createSectors } from "./supervisor-history.js";
import { createQuality } from "./supervisor-quality.js";
import { createReports, createSettings } from "./supervisor-admin.js";
import { createSchedules } from "./supervisor-schedules.js";
import { createAlerts } from "./supervisor-alerts.js";
import { createBoards } from "./supervisor-boards.js";
import { clockTime, number, percent, t, translatePage, useLanguage } from "./i18n.js";
import { createStates } from "./supervisor-states.js";
import { createCalls } from "./supervisor-calls.js";
import { createAnomalies, createForecast } from "./supervisor-forecast.js";
import { createErlang } from "./supervisor-erlang.js";

const READERS = new Set(["supervisor", "admin"]);
const STALE_AFTER_S = 20;
const REFRESH_MS = 60_000;

const page = {
  token: null,
  role: null,
  day: null,                // the tenant's today (overview `day`)
  from: null,
  to: null,
  preset: "today",
  timeZone: undefined,      // the tenant's zone (overview `timezone`; admins also read settings), else the browser's
  clock: new ServerClock(),  // the server's clock, from the overviews' as_of
  queues: new Set(),
  tab: "agents",
  refused: false,
};
let client = null;

// -- refusal ---------------------------------------------------------------------------

function refuse(title, text) {
  page.refused = true;
  $("overlay-title").textContent = title;
  $("overlay-text").textContent = text;
  $("overlay").hidden = false;
  document.body.dataset.state = "unauthorized";
  $("badge").dataset.state = "unauthorized";
  $("badge-label").textContent = t("common.badge.unauthorized");
  client?.stop();
}

// -- period ----------------------------------------------------------------------------

function presetRange(preset, today) {
  switch (preset) {
    case "yesterday": return [addDays(today, -1), addDays(today, -1)];
    case "last7": return [addDays(today, -6), today];
    case "last30": return [addDays(today, -29), today];
    case "month": return [`${today.slice(0, 8)}01`, today];
    default: return [today, today];
  }
}

function setPeriod(from, to, { preset = "custom", reload = true } = {}) {
  if (from > to) [from, to] = [to, from];
  page.from = from;
  page.to = to;
  page.preset = preset;
  $("period-from").value = from;
  $("period-to").value = to;
  $("period-preset").value = preset;
  document.body.dataset.from = from;
  document.body.dataset.to = to;
  const days = Math.round((Date.parse(to) - Date.parse(from)) / 86_400_000) + 1;
  sections.queues?.suit(days);
  if (reload) periodChanged();
}

function periodChanged() {
  loadTab(page.tab); // the other sections load the new period when shown
  sections.agents.load(); // the drill-down's history, when one is open
}

// -- tabs ------------------------------------------------------------------------------

function showTab(name, { remember = true } = {}) {
  const button = document.querySelector(`.tabs [data-tab="${name}"]`);
  if (!button || button.hidden) name = "agents";
  page.tab = name;
  for (const b of document.querySelectorAll(".tabs [data-tab]")) {
    const on = b.dataset.tab === name;
    b.setAttribute("aria-selected", String(on));
    b.tabIndex = on ? 0 : -1;
  }
  for (const panel of document.querySelectorAll(".tabpanel")) panel.hidden = panel.dataset.tab !== name;
  document.body.dataset.tab = name;
  if (remember) {
    // The tab is kept in the fragment (replaceState: no hashchange, no history entry); the token never is.
    const params = fragmentParams();
    params.set("tab", name);
    history.replaceState(null, "", `#${params.toString()}`);
  }
  loadTab(name);
}

function loadTab(name) {
  const section = sections[name];
  // Agents are live; settings are read once (a reload would drop what an admin is typing).
  if (!section || name === "agents" || name === "settings" || !page.from) return;
  section.load();
}

// -- live --------------------------------------------------------------------------------

function serverNow() {
  return page.clock.now();
}

function onOverview(doc) {
  page.overview = doc;
  page.clock.learn(doc.as_of);
  if (doc.timezone) page.timeZone = doc.timezone;
  for (const q of doc.queues || []) page.queues.add(q.queue_id);
  const t = doc.today || {};
  const strip = { offered: t.offered, answered: t.answered, waiting: t.waiting, service_level: t.service_level, abandon_rate: t.abandon_rate };
  for (const [metric, value] of Object.entries(strip)) {
    const el = document.querySelector(`#today-strip [data-metric="${metric}"] b`);
    if (!el) continue;
    el.dataset.value = value == null ? "" : String(value);
    el.textContent = value == null ? "–" : metric === "service_level" || metric === "abandon_rate" ? percent(value) : number(value);
  }
  if (doc.day && doc.day !== page.day) {
    const rolled = page.day !== null;
    page.day = doc.day;
    // A new tenant day: a period that was "today" (or a preset relative to it) moves with it.
    if (rolled && page.preset !== "custom") setPeriod(...presetRange(page.preset, page.day), { preset: page.preset });
  }
}

function onState(state, detail) {
  if (state === "unauthorized") {
    refuse(t("common.refused"), t("console.refused", { reason: detail.reason }));
    return;
  }
  updateBadge();
}

function updateBadge() {
  if (page.refused) return;
  const age = client ? client.secondsSinceUpdate() : null;
  let state = client ? client.state : "connecting";
  if ((state === "live" || state === "polling") && age != null && age > STALE_AFTER_S) state = "stale";
  $("badge").dataset.state = state;
  $("badge-label").textContent = t(`common.badge.${state}`);
  $("badge-age").textContent = age == null ? "" : age < 2 ? ` · ${t("common.age.just_now")}` : ` · ${t("common.age.seconds", { n: Math.floor(age) })}`;
  $("badge").title = client?.pollReason && state === "polling" ? `${t("common.badge.polling")}: ${client.pollReason}` : "";
  document.body.dataset.state = state;
  document.body.classList.toggle("old-data", state === "stale" || state === "reconnecting");
}

function tick() {
  $("clock").textContent = clockTime(serverNow(), page.timeZone);
  sections.agents?.tick();
  updateBadge();
}

// -- sections -----------------------------------------------------------------------------

const ctx = {
  api: null,
  period: () => ({ from: page.from, to: page.to }),
  today: () => page.day,
  serverNow,
  timeZone: () => page.timeZone,
  queues: () => [...page.queues],
  addQueues: (ids) => ids.forEach((id) => page.queues.add(id)),
  agents: () => sections.agents?.list() || [],
  overview: () => page.overview,
  onScore(agent) {
    showTab("quality");
    sections.quality.prefill(agent);
  },
  openQueue(queueId) {
    sections.queues.showQueue(queueId);
    showTab("queues");
  },
  settingsChanged(settings) {
    page.timeZone = settings.timezone;
    $("tz-note").textContent = t("console.tz_note", { zone: settings.timezone, start: settings.day_starts_at });
  },
};
const sections = {};

async function main() {
  const params = fragmentParams();
  await useLanguage(params.get("lang") || undefined);
  translatePage();
  page.token = takeToken();
  // The new tab takes the token from its fragment into its own sessionStorage and clears it.
  $("to-wallboard").href = `wallboard.html#token=${encodeURIComponent(page.token || "")}`;
  if (!page.token) {
    refuse(t("common.no_token"), t("console.no_token"));
    return;
  }
  const claims = jwtPayload(page.token);
  if (claims?.client_id) $("tenant").textContent = claims.client_id;
  ctx.api = createApi({
    token: () => page.token,
    onUnauthorized: (message) => refuse(t("common.refused"), t("console.refused", { reason: message })),
  });

  let who;
  try {
    who = (await ctx.api.get("api/auth/whoami")).data;
  } catch (err) {
    if (!page.refused) refuse(t("console.cannot_start"), t("console.not_confirmed", { reason: explain(err) }));
    return;
  }
  page.role = who.role;
  $("tenant").textContent = who.client_id;
  $("role").textContent = who.role;
  document.body.dataset.role = who.role;
  if (!READERS.has(who.role)) {
    refuse(t("console.not_supervisor"), t("console.wrong_role", { role: who.role }));
    return;
  }
  const admin = who.role === "admin";
  $("tab-settings").hidden = !admin;
  $("tab-boards").hidden = !admin;
  if (!admin) $("panel-settings").remove();
  if (!admin) $("panel-boards").remove();

  Object.assign(sections, {
    agents: createAgents(ctx),
    queues: createQueues(ctx),
    sectors: createSectors(ctx),
    quality: createQuality(ctx),
    satisfaction: createSatisfaction(ctx),
    costs: createCosts(ctx),
    states: createStates(ctx),
    reports: createReports(ctx),
    alerts: createAlerts(ctx),
    calls: createCalls(ctx),
    forecast: createForecast(ctx),
    anomalies: createAnomalies(ctx),
    erlang: createErlang(ctx),
  });
  if (admin) sections.boards = createBoards(ctx);
  sections.alerts.load(); // the tab's count of unacknowledged alerts, whatever tab is shown
  if (admin) {
    sections.settings = createSettings(ctx);
    const settings = await sections.settings.load();
    if (settings) ctx.settingsChanged(settings);
    createSchedules(ctx).load(); // scheduled reports, in the Reports tab
  }

  // The tenant's today, before any history is asked for.
  try {
    onOverview((await ctx.api.get("api/metrics/live")).data);
  } catch (err) {
    if (page.refused) return;
    page.day = new Date().toISOString().slice(0, 10);
    console.warn("supervisor: no overview yet, taking the UTC date as today", err);
  }
  setPeriod(page.day, page.day, { preset: "today", reload: false });

  for (const button of document.querySelectorAll(".tabs [data-tab]")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  $("tabs").addEventListener("keydown", (ev) => {
    if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
    const tabs = [...document.querySelectorAll(".tabs [data-tab]")].filter((b) => !b.hidden);
    const i = tabs.findIndex((b) => b.dataset.tab === page.tab);
    const next = tabs[(i + (ev.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    showTab(next.dataset.tab);
    next.focus();
  });
  $("period-preset").addEventListener("change", (ev) => {
    if (ev.target.value !== "custom") setPeriod(...presetRange(ev.target.value, page.day), { preset: ev.target.value });
  });
  for (const id of ["period-from", "period-to"]) {
    $(id).addEventListener("change", () => {
      if ($("period-from").value && $("period-to").value) setPeriod($("period-from").value, $("period-to").value);
    });
  }
  $("refresh").addEventListener("click", () => loadTab(page.tab));

  const refreshToken = () => {
    const fresh = takeToken();
    if (fresh) page.token = fresh;
    return fresh;
  };
  client = new LiveClient({
    token: page.token, views: ["overview", "agents", "calls"], onState, refreshToken,
    onAlert: () => sections.alerts.onAlert(),
    onData: (view, data) => (view === "overview" ? onOverview(data) : sections[view].update(data)),
  });
  window.supervisor = client; // for the console and for tests
  window.addEventListener("hashchange", () => {
    if (!fragmentParams().has("token")) return;
    const fresh = takeToken();
    if (fresh && fresh !== page.token) {
      page.token = fresh;
      client.setToken(fresh);
    }
  });
  client.start();
  showTab(params.get("tab") || "agents", { remember: false });

  // History that includes today moves on: refresh the shown section now and then.
  setInterval(() => {
    if (!document.hidden && !page.refused && page.to >= page.day) loadTab(page.tab);
  }, REFRESH_MS);
  const align = () => setTimeout(() => { tick(); align(); }, 1000 - (serverNow() % 1000) + 5);
  align();
  tick();
}

main();
