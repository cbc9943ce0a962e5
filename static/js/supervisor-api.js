// The supervisor console's REST access and formatting: one place that puts the token in an
// `Authorization` header (never in a URL), unwraps the API.md envelopes and formats figures.

import { currentLanguage, currentLocale, t } from "./i18n.js";

/** An API error: the HTTP status and the envelope's code, message and details (field, reason). */
export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** The field the server named (`score`, `criteria.tone`, `alerts.waiting.amber`), or null. */
  get field() {
    return this.details?.field ?? this.details?.parameter ?? null;
  }
}

/**
 * REST calls with the current token.
 * @param {object} o
 * @param {() => string} o.token the token now (it may be replaced through the fragment)
 * @param {(message: string) => void} o.onUnauthorized told about every 401
 */
export function createApi({ token, onUnauthorized, base = document.baseURI }) {
  function url(path, params = {}) {
    const u = new URL(path, base);
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") u.searchParams.set(key, value);
    }
    return u;
  }

  async function send(method, path, { params, body, accept = "application/json" } = {}) {
    const headers = { Authorization: `Bearer ${token()}`, Accept: accept };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url(path, params), {
        method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, "network_error", `the server could not be reached (${err.message || err})`);
    }
    if (response.ok) return response;
    let error = { code: "http_error", message: `HTTP ${response.status}` };
    try {
      const doc = await response.json();
      if (doc && doc.error) error = doc.error;
    } catch { /* not JSON */ }
    if (response.status === 401) onUnauthorized(error.message);
    throw new ApiError(response.status, error.code, error.message, error.details ?? null);
  }

  return {
    url,
    /** The whole success envelope ({data, count, statistics}) of a GET. */
    async get(path, params) {
      return (await send("GET", path, { params })).json();
    },
    async post(path, body) {
      return (await send("POST", path, { body })).json();
    },
    async put(path, body) {
      return (await send("PUT", path, { body })).json();
    },
    async del(path) {
      return (await send("DELETE", path)).json();
    },
    /** The raw response of a GET asking for another media type (CSV). */
    raw(path, params, accept) {
      return send("GET", path, { params, accept });
    },
  };
}

/**
 * Save a response body as a file: a Blob behind an object URL, so no URL carries the token.
 * The name comes from Content-Disposition when the server gives one.
 */
export async function saveResponse(response, fallbackName) {
  const blob = await response.blob();
  const disposition = response.headers.get("Content-Disposition") || "";
  const star = /filename\*=(?:UTF-8'')?([^;]+)/i.exec(disposition);
  const plain = /filename="?([^";]+)"?/i.exec(disposition);
  let name = fallbackName;
  try {
    if (star) name = decodeURIComponent(star[1].trim().replace(/^"|"$/g, ""));
    else if (plain) name = plain[1].trim();
  } catch { /* a malformed header: keep the fallback */ }
  const href = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = href;
  a.download = name.replace(/[/\\]/g, "_");
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
  return { name, bytes: blob.size };
}

// -- formatting ---------------------------------------------------------------

export { duration } from "./format.js";
export { percent } from "./i18n.js";

// English keeps the console's long-standing en-GB formats; another language takes its locale's.
const locale = () => (currentLanguage() === "en" ? "en-GB" : currentLocale());

/** A number with at most `digits` decimals; "–" for null. */
export function num(value, digits = 0) {
  if (value == null || !Number.isFinite(Number(value))) return "–";
  return Number(value).toLocaleString(locale(), { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** An amount of money in the tenant's currency; "–" for null. */
export function money(value, currency = "USD", digits = 2) {
  if (value == null || !Number.isFinite(Number(value))) return "–";
  try {
    return Number(value).toLocaleString(locale(), { style: "currency", currency, maximumFractionDigits: digits });
  } catch {
    return `${Number(value).toFixed(2)} ${currency}`;
  }
}

/** An ISO instant as a short date/time in a time zone (the browser's when not given). */
export function when(iso, timeZone, style = "datetime") {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "–";
  const options = {
    datetime: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" },
    time: { hour: "2-digit", minute: "2-digit", hourCycle: "h23" },
    date: { weekday: "short", month: "short", day: "numeric" },
    month: { year: "numeric", month: "long" },
  }[style];
  try {
    return new Intl.DateTimeFormat(locale(), { ...options, timeZone }).format(t);
  } catch {
    return new Intl.DateTimeFormat(locale(), options).format(t);
  }
}

/** An ISO date (YYYY-MM-DD) moved by whole days. */
export function addDays(isoDate, days) {
  const d = new Date(`${isoDate}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

/** Set a cell or tile: its raw value in data-value (for tests and tools), its text for people. */
export function show(el, value, text) {
  if (!el) return;
  el.dataset.value = value == null ? "" : String(value);
  el.textContent = text;
}

/** document.getElementById */
export const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text: never HTML). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    // Through the CSSOM: a style attribute would be inline style, which the CSP refuses.
    else if (key === "style") el.style.cssText = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child == null) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A table cell carrying a metric: `<td data-metric=… data-value=…>text</td>`. */
export function cell(metric, value, text, attrs = {}) {
  const td = h("td", { ...attrs, dataset: { metric, ...(attrs.dataset || {}) } });
  show(td, value, text);
  return td;
}

/** Show a section's status line: an error (role=alert) or a quiet note; empty text hides it. */
export function status(el, text, kind = "note") {
  if (!el) return;
  el.textContent = text || "";
  el.dataset.kind = kind;
  el.hidden = !text;
}

/** A message for an ApiError that a supervisor can act on (the server's own message stays as it came). */
export function explain(err) {
  if (!(err instanceof ApiError)) return t("console.went_wrong", { reason: err.message || err });
  if (err.status === 0) return err.message.charAt(0).toUpperCase() + err.message.slice(1) + ".";
  if (err.status === 403) return t("console.not_allowed", { reason: err.message });
  if (err.status === 404) return t("console.not_available");
  return err.message;
}
