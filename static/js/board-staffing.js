// The wallboard's staffing panel: per queue, the agents the forecast's Erlang C needs in this
// interval (`required_agents`) against the agents logged in and serving the queue
// (`required_agents + agents_gap`), with the gap coloured: ≥ 0 ok, −1 amber, −2 or less red.
// A queue without a forecast for this interval shows "–".

import { t } from "./i18n.js";

export function gapLevel(gap) {
  if (gap == null) return "none";
  return gap >= 0 ? "ok" : gap === -1 ? "amber" : "red";
}

/** Fill `tbody` (#staffing-rows) from the overview's queues. */
export function renderStaffing(tbody, empty, overview) {
  const queues = overview?.queues || [];
  const rows = queues.map((q) => {
    const tr = document.createElement("tr");
    tr.dataset.staffingQueue = q.queue_id; // not data-queue-id: that names the queues table's rows
    const needed = q.required_agents ?? null;
    const gap = q.agents_gap ?? null;
    const loggedIn = needed != null && gap != null ? needed + gap : null;
    const cells = [
      ["queue_id", q.queue_id, q.queue_id],
      ["required_agents", needed, needed ?? "–"],
      ["logged_in", loggedIn, loggedIn ?? "–"],
      ["agents_gap", gap, gap == null ? "–" : gap > 0 ? `+${gap}` : String(gap)],
    ];
    for (const [metric, value, text] of cells) {
      const td = document.createElement("td");
      td.dataset.metric = metric;
      td.dataset.value = value == null ? "" : String(value);
      td.textContent = String(text);
      if (metric === "queue_id") td.className = "q";
      if (metric === "agents_gap") {
        td.dataset.level = gapLevel(gap);
        td.title = t("board.staffing.gap_title");
      }
      tr.appendChild(td);
    }
    return tr;
  });
  tbody.replaceChildren(...rows);
  empty.hidden = queues.some((q) => q.required_agents != null);
}
