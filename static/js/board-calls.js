// The wallboard's "longest waits" panel: the `calls` view's waiting calls, the N oldest, each
// with a wait that ticks every second from its `queued_at` on the server's clock (ServerClock).
// `#top=N` sets N (default 6). Below them, how many callbacks are pending.

import { duration } from "./format.js";
import { t } from "./i18n.js";

const DEFAULT_TOP = 6;

/** The panel in `root` (#calls-panel); `now()` is the server's clock in ms. */
export function createCallsPanel({ root, now, top = DEFAULT_TOP }) {
  const list = root.querySelector("#wait-list");
  const empty = root.querySelector("#calls-empty");
  const more = root.querySelector("#calls-more");
  const callbacks = root.querySelector("#callbacks-pending");
  let doc = null;
  let levelOf = () => "none";

  function render(data) {
    doc = data;
    const waiting = (data?.waiting || []).slice().sort((a, b) => Date.parse(a.queued_at) - Date.parse(b.queued_at));
    const shown = waiting.slice(0, Math.max(1, top));
    empty.hidden = shown.length > 0;
    more.hidden = waiting.length <= shown.length;
    more.textContent = t("board.calls.more", { count: waiting.length - shown.length });
    const rows = shown.map((call) => {
      let li = list.querySelector(`li[data-call-id="${CSS.escape(call.call_id)}"]`);
      if (!li) {
        li = document.createElement("li");
        li.className = "wait";
        li.dataset.callId = call.call_id;
        li.innerHTML = '<span class="wait-queue"></span><span class="wait-pos"></span><span class="wait-time"></span>';
      }
      li.dataset.queuedAt = call.queued_at;
      li.dataset.queueId = call.queue_id;
      li.querySelector(".wait-queue").textContent = call.queue_id;
      li.querySelector(".wait-pos").textContent = t("board.calls.position", { position: call.position });
      return li;
    });
    list.replaceChildren(...rows);
    const pending = (data?.callbacks || []).length;
    callbacks.dataset.value = String(pending);
    callbacks.hidden = pending === 0;
    callbacks.textContent = t("board.calls.callbacks", { count: pending });
    tick();
  }

  /** Each shown wait = now − queued_at; `level(seconds)` colours it like the longest-wait tile. */
  function tick(level = levelOf) {
    levelOf = level;
    if (!doc) return;
    const at = now();
    for (const li of list.children) {
      const seconds = Math.max(0, (at - Date.parse(li.dataset.queuedAt)) / 1000);
      const el = li.querySelector(".wait-time");
      el.dataset.value = seconds.toFixed(1);
      li.dataset.level = level(seconds, li.dataset.queueId);
      el.textContent = duration(seconds);
    }
  }

  /** Render the last document again (once the strings have loaded). */
  function refresh() {
    if (doc) render(doc);
  }

  return { render, refresh, tick };
}
