// LiveClient: the live documents of API.md over /ws, with REST polling as the fallback.
//
// The token travels only in the WebSocket subprotocol (`bearer.<jwt>`) and in the
// `Authorization` header of REST calls: never in a URL the server could log.
//
// Transport policy, stated plainly:
// - WebSocket first. A closed socket is reopened after a full-jitter exponential
//   back-off (random(0, min(cap, base * 2^attempt)), base 0.5 s, cap 30 s).
// - After `failuresBeforePolling` attempts in a row that never delivered a message
//   (refused, closed early, not open within `openTimeoutMs`), or at once when the
//   browser cannot make a WebSocket at all, the client polls REST every `pollMs`
//   with If-None-Match (a 304 costs the server almost nothing) and keeps trying the
//   WebSocket every `wsRetryWhilePollingMs` in the background; the first message
//   on a new socket ends the polling.
// - A socket that stays silent for `silenceMs` is presumed dead (the server sends
//   every stream at least every 5 s) and is replaced.
// - 4401/4403 close codes or HTTP 401/403: state "unauthorized"; nothing is retried
//   with that token until `setToken()` gives a new one.
//
// States (onState): connecting, live, reconnecting, polling, stale, unauthorized.

const REST = { overview: "api/metrics/live", agents: "api/metrics/agents/status", calls: "api/metrics/calls/waiting" };
const AUTH_CLOSE = new Set([4401, 4403]);

/** The JSON payload of a JWT, or null when it is not one. */
export function jwtPayload(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
    return JSON.parse(atob(padded));
  } catch {
    return null;
  }
}

/** Options and values of a URL fragment like `#token=…&queues=a,b`. */
export function fragmentParams(hash = location.hash) {
  return new URLSearchParams(hash.replace(/^#/, ""));
}

const TOKEN_KEY = "wallboard.token";

/**
 * The page's token. A `#token=…` in the address is moved into this tab's sessionStorage and
 * removed from the address and its history entry (history.replaceState: no reload, no
 * hashchange), so neither the location bar, the history nor a screenshot keeps it; the other
 * fragment options (`queues`, `tab`) stay. Without one, the token stored earlier in this tab
 * (a reload), else null.
 */
export function takeToken() {
  const params = fragmentParams();
  const fresh = params.get("token");
  if (fresh) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState(history.state, "", `${location.pathname}${location.search}${rest ? `#${rest}` : ""}`);
    try {
      sessionStorage.setItem(TOKEN_KEY, fresh);
    } catch {
      // Storage refused (a locked-down kiosk): the token lives in this page's memory only.
    }
    return fresh;
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** Full-jitter exponential back-off in ms: random(0, min(cap, base * 2^attempt)). */
export function backoffMs(attempt, baseMs = 500, capMs = 30000) {
  return Math.random() * Math.min(capMs, baseMs * 2 ** attempt);
}

/**
 * The server's clock as seen from here, learned from the `as_of` of the documents that arrive.
 * A document arrives some time after its `as_of` (a snapshot may be a few seconds old), so each
 * sample underestimates the offset by that delay: the largest sample of the last minute (the
 * least delayed) is the best guess, so clocks on a board never jump back; a clock change ages out.
 */
export class ServerClock {
  constructor() {
    this.samples = [];
    this.skewMs = 0; // server clock − this clock
  }

  learn(asOf) {
    const server = Date.parse(asOf);
    if (!Number.isFinite(server)) return;
    const now = Date.now();
    this.samples = this.samples.filter((s) => now - s.at < 60_000);
    this.samples.push({ at: now, skew: server - now });
    this.skewMs = Math.max(...this.samples.map((s) => s.skew));
  }

  now() {
    return Date.now() + this.skewMs;
  }
}

export class LiveClient {
  /**
   * @param {object} o
   * @param {string} o.token the JWT
   * @param {string[]} [o.views] "overview", "agents" and/or "calls"
   * @param {string[]} [o.queues] optional queue filter
   * @param {(view: string, data: any) => void} [o.onData]
   * @param {(state: string, detail: object) => void} [o.onState]
   * @param {(alert: object) => void} [o.onAlert] each `alert` message (threshold raised, cleared, acknowledged)
   * @param {() => (string|Promise<string|null>|null)} [o.refreshToken] asked for a fresh token
   *   shortly before the current one expires; what it returns is passed to setToken()
   */
  constructor({
    token, views = ["overview"], queues = [], onData = () => {}, onState = () => {}, onAlert = () => {}, refreshToken = null,
    base = document.baseURI, failuresBeforePolling = 3, pollMs = 2000, openTimeoutMs = 5000,
    wsRetryWhilePollingMs = 30000, silenceMs = 15000, backoffBaseMs = 500, backoffCapMs = 30000,
  }) {
    Object.assign(this, {
      token, views, queues, onData, onState, onAlert, refreshToken, base, failuresBeforePolling, pollMs,
      openTimeoutMs, wsRetryWhilePollingMs, silenceMs, backoffBaseMs, backoffCapMs,
    });
    this.state = null;
    this.ws = null;
    this.attempt = 0;          // back-off exponent: reset by a message
    this.failures = 0;         // WebSocket attempts in a row that delivered nothing
    this.seq = {};             // view -> last seq seen on the current socket
    this.etags = {};           // view -> ETag of the last polled document
    this.docs = {};            // view -> last document (polling filters with both)
    this.polling = false;
    this.timers = {};
    this.stopped = true;
    this.lastResync = 0;
    this.lastMessageAt = null; // Date.now() of the last data or heartbeat
    this.liveStatus = "ok";    // the server's last `status.live`
  }

  // -- public ----------------------------------------------------------------

  start() {
    this.stopped = false;
    this._setState("connecting", {});
    this._scheduleRefresh();
    this._openSocket();
    // The network is back (a TV's Wi-Fi): try at once instead of waiting out the back-off.
    this._online = () => { if (this.state === "reconnecting" && !this.ws) this._openSocket(); };
    window.addEventListener("online", this._online);
  }

  stop() {
    this.stopped = true;
    if (this._online) window.removeEventListener("online", this._online);
    for (const name of Object.keys(this.timers)) this._clear(name);
    this._dropSocket(1000, "client stopped");
  }

  /** A fresh token: sent on the open socket as an auth message, or used for the next connection. */
  setToken(token) {
    if (!token || token === this.token) return;
    const wasRefused = this.state === "unauthorized";
    this.token = token;
    this._scheduleRefresh();
    if (wasRefused) {
      this.failures = 0;
      this.attempt = 0;
      this._setState("connecting", {});
      this._openSocket();
    } else if (this.ws && this.ws.readyState === WebSocket.OPEN && this.wsLive) {
      this._send({ type: "auth", token });
    }
  }

  /** Seconds since the last message or successful poll (null before the first). */
  secondsSinceUpdate() {
    return this.lastMessageAt === null ? null : (Date.now() - this.lastMessageAt) / 1000;
  }

  // -- state -----------------------------------------------------------------

  _setState(state, detail) {
    if (state === this.state && !detail.force) return;
    this.state = state;
    this.onState(state, detail);
  }

  _unauthorized(reason) {
    this.stopped = true;
    for (const name of Object.keys(this.timers)) this._clear(name);
    this.polling = false;
    this._dropSocket(1000, "token refused");
    this.stopped = false; // setToken() may start again
    this._setState("unauthorized", { reason: reason || "the server refused the token" });
  }

  _timer(name, ms, fn, repeat = false) {
    this._clear(name);
    this.timers[name] = { id: (repeat ? setInterval : setTimeout)(fn, ms), repeat };
  }

  _clear(name) {
    const t = this.timers[name];
    if (t) (t.repeat ? clearInterval : clearTimeout)(t.id);
    delete this.timers[name];
  }

  // -- token refresh ------------------------------------------------------------

  _scheduleRefresh() {
    this._clear("refresh");
    const exp = jwtPayload(this.token)?.exp;
    if (!exp || !this.refreshToken) return;
    // Ask a minute before expiry (or halfway through a short-lived token).
    const left = exp * 1000 - Date.now();
    const due = Math.max(1000, Math.min(left - 60000, left / 2));
    const ask = async () => {
      let fresh = null;
      try {
        fresh = await this.refreshToken();
      } catch (err) {
        console.warn("wallboard: token refresh failed", err);
      }
      if (fresh && fresh !== this.token) {
        this.setToken(fresh); // schedules the next refresh
      } else if (exp * 1000 > Date.now()) {
        this._timer("refresh", 30000, ask); // nothing new yet: ask again until it expires
      }
    };
    this._timer("refresh", due, ask);
  }

  // -- WebSocket -----------------------------------------------------------------

  _wsUrl() {
    const url = new URL("ws", this.base);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.hash = "";
    url.search = "";
    return url.href;
  }

  _openSocket() {
    if (this.stopped || this.state === "unauthorized") return;
    this._clear("retry");
    this._dropSocket(1000, "replaced");
    let ws;
    try {
      ws = new WebSocket(this._wsUrl(), ["wallboard.v1", `bearer.${this.token}`]);
    } catch (err) {
      // No WebSocket in this browser (or blocked by a proxy/policy): poll at once.
      this.failures = this.failuresBeforePolling;
      this._wsFailed(`WebSocket unavailable: ${err && err.message ? err.message : err}`);
      return;
    }
    this.ws = ws;
    this.wsLive = false; // true after the first message on this socket
    this.seq = {};
    this._timer("open", this.openTimeoutMs, () => {
      if (this.ws === ws && !this.wsLive) {
        this._dropSocket(4000, "open timeout");
        this._wsFailed("the WebSocket did not open in time");
      }
    });
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this._send({ type: "subscribe", views: this.views, ...(this.queues.length ? { queues: this.queues } : {}) });
    };
    ws.onmessage = (ev) => { if (this.ws === ws) this._onMessage(ev.data); };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._clear("open");
      this._clear("silence");
      if (AUTH_CLOSE.has(ev.code)) {
        this._unauthorized(ev.reason || (ev.code === 4403 ? "forbidden for this token" : "invalid or expired token"));
        return;
      }
      const hadData = this.wsLive;
      this.wsLive = false;
      if (hadData) {
        this.failures = 0;
      }
      this._wsFailed(`closed (${ev.code}${ev.reason ? ": " + ev.reason : ""})`, hadData);
    };
    ws.onerror = () => {}; // a close event always follows
  }

  _dropSocket(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.wsLive = false;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try { ws.close(code, reason); } catch { /* already closing */ }
  }

  _send(message) {
    try {
      this.ws?.send(JSON.stringify(message));
    } catch { /* the close handler deals with a dead socket */ }
  }

  /** A WebSocket attempt ended; back off and retry, and poll once too many failed in a row. */
  _wsFailed(detail, hadData = false) {
    if (this.stopped || this.state === "unauthorized") return;
    if (!hadData) this.failures += 1;
    if (this.polling) {
      this._timer("retry", this.wsRetryWhilePollingMs, () => this._openSocket());
      return;
    }
    if (this.failures >= this.failuresBeforePolling) {
      this._startPolling(detail);
      this._timer("retry", this.wsRetryWhilePollingMs, () => this._openSocket());
      return;
    }
    const delay = backoffMs(this.attempt, this.backoffBaseMs, this.backoffCapMs);
    this.attempt += 1;
    this._setState("reconnecting", { reason: detail, retryInMs: Math.round(delay) });
    this._timer("retry", delay, () => this._openSocket());
  }

  _onMessage(raw) {
    let msg;
    try { msg = JSON.parse(raw); } catch { return; }
    if (!this.wsLive) {
      this.wsLive = true;
      this._clear("open");
      this.failures = 0;
      this.attempt = 0;
      if (this.polling) this._stopPolling();
    }
    this._timer("silence", this.silenceMs, () => {
      this._dropSocket(4000, "silent");
      this._wsFailed("no message for too long", true);
    });
    this.lastMessageAt = Date.now();
    switch (msg.type) {
      case "status":
        this.liveStatus = msg.live;
        this._setState(msg.live === "stale" ? "stale" : "live", { transport: "websocket" });
        break;
      case "snapshot":
      case "update": {
        const last = this.seq[msg.view];
        if (msg.type === "update" && last !== undefined) {
          if (msg.seq <= last) break; // an old message: a newer one was already shown
          if (msg.seq !== last + 1) this._resync();
        }
        this.seq[msg.view] = msg.seq;
        this.docs[msg.view] = msg.data;
        if (this.liveStatus !== "stale") this._setState("live", { transport: "websocket" });
        this.onData(msg.view, msg.data);
        break;
      }
      case "alert":
        this.onAlert(msg);
        break;
      case "auth":
        break; // a refreshed token was taken
      case "error":
        console.warn("wallboard: server says", msg.code, msg.message);
        break;
      default:
        break;
    }
  }

  _resync() {
    // A gap: ask for a snapshot (at most every 2 s: the server limits messages a minute).
    const now = Date.now();
    if (now - this.lastResync < 2000) return;
    this.lastResync = now;
    this._send({ type: "resync" });
  }

  // -- REST polling -------------------------------------------------------------

  _startPolling(reason) {
    if (this.polling) return;
    this.polling = true;
    this.pollReason = reason;
    this._poll();
    this._timer("poll", this.pollMs, () => this._poll(), true);
  }

  _stopPolling() {
    this.polling = false;
    this._clear("poll");
    this.etags = {};
  }

  async _poll() {
    if (this._polling) return; // the previous round is still out
    this._polling = true;
    try {
      const changed = {};
      for (const view of this.views) {
        const got = await this._fetch(view);
        if (got === "unauthorized" || !this.polling) return;
        if (got !== null) changed[view] = true;
      }
      const wasDown = this.state === "reconnecting";
      this.lastMessageAt = Date.now();
      this._setState(this.liveStatus === "stale" ? "stale" : "polling", { transport: "rest", reason: this.pollReason });
      // Views are delivered after all were fetched, so a queue filter sees both documents.
      for (const view of this.views) {
        if (changed[view] || (changed.agents && view === "overview")) this.onData(view, this._filtered(view));
      }
      // The server answers again after an outage: try the WebSocket now rather than in 30 s.
      if (wasDown && !this.ws) this._openSocket();
    } catch (err) {
      this._setState("reconnecting", { transport: "rest", reason: `polling failed: ${err.message || err}` });
    } finally {
      this._polling = false;
    }
  }

  /** One view by REST: its document when changed, null when 304, "unauthorized" when refused. */
  async _fetch(view) {
    const headers = { Authorization: `Bearer ${this.token}`, Accept: "application/json" };
    if (this.etags[view]) headers["If-None-Match"] = this.etags[view];
    const response = await fetch(new URL(REST[view], this.base), { headers, cache: "no-store", credentials: "omit" });
    if (response.status === 304) return null;
    if (response.status === 401 || response.status === 403) {
      let reason = `HTTP ${response.status}`;
      try { reason = (await response.json()).error.message || reason; } catch { /* not JSON */ }
      this._unauthorized(reason);
      return "unauthorized";
    }
    if (!response.ok) throw new Error(`HTTP ${response.status} from ${REST[view]}`);
    const body = await response.json();
    this.liveStatus = /\b110\b/.test(response.headers.get("Warning") || "") ? "stale" : "ok";
    this.etags[view] = response.headers.get("ETag");
    this.docs[view] = body.data;
    return body.data;
  }

  /** The polled document, cut to the queue filter the way the WebSocket streams are. */
  _filtered(view) {
    const doc = this.docs[view];
    if (!this.queues.length || doc == null) return doc;
    const only = new Set(this.queues);
    if (view === "agents") return doc.filter((a) => (a.queues || []).some((q) => only.has(q)));
    if (view === "calls") {
      return { ...doc, waiting: doc.waiting.filter((c) => only.has(c.queue_id)), callbacks: doc.callbacks.filter((c) => only.has(c.queue_id)) };
    }
    return filterOverview(doc, only, this.docs.agents);
  }
}

/**
 * The overview cut to some queues: their rows, their summed counters, and the agents serving them.
 *
 * Rates of the totals use the default formulas of METRICS.md (service level
 * `answered_plus_abandoned`): the REST document carries no per-tenant formula.
 * Only polling with a queue filter needs this; the WebSocket filters on the server.
 */
export function filterOverview(doc, only, agents) {
  const queues = doc.queues.filter((q) => only.has(q.queue_id));
  const sum = (key) => queues.reduce((n, q) => n + (q.today?.[key] || 0), 0);
  const t = {};
  for (const key of ["offered", "answered", "abandoned", "short_abandoned", "answered_within_sl", "abandoned_within_sl", "handled"]) t[key] = sum(key);
  const slBase = t.answered + t.abandoned - t.short_abandoned;
  t.service_level = slBase > 0 ? t.answered_within_sl / slBase : null;
  t.abandon_rate = slBase > 0 ? (t.abandoned - t.short_abandoned) / slBase : null;
  const asaWeight = queues.reduce((n, q) => n + (q.today?.asa_s != null ? q.today.asa_s * q.today.answered : 0), 0);
  t.asa_s = t.answered > 0 ? asaWeight / t.answered : null;
  t.waiting = queues.reduce((n, q) => n + q.waiting, 0);
  t.longest_wait_s = Math.max(0, ...queues.map((q) => q.longest_wait_s || 0));
  let agentsDoc = doc.agents;
  if (Array.isArray(agents)) {
    const byState = { available: 0, on_call: 0, wrap_up: 0, break: 0, other: 0 };
    for (const a of agents) {
      if ((a.queues || []).some((q) => only.has(q)) && a.state in byState) byState[a.state] += 1;
    }
    agentsDoc = { logged_in: Object.values(byState).reduce((a, b) => a + b, 0), by_state: byState };
  }
  return { ...doc, queues, today: t, agents: agentsDoc };
}
