// The board editor (admin): named wallboard layouts (GET|PUT|DELETE /api/boards/{name}) with a
// live preview drawn by the wallboard's own tile code (board-layout.js) from the console's
// overview, and a link that opens the board as a TV shows it (`wallboard.html#board=NAME`).
//
// A 400 names the field (`tiles[1].metric`, `rotate_s`): the message shows beside the form and
// the input of that field is marked.

import { $, ApiError, explain, h, status } from "./supervisor-api.js";
import { TILE_METRICS, makeTile, tileFigure } from "./board-layout.js";
import { t, translatePage } from "./i18n.js";

const LOCALES = ["", "en", "de", "fr", "es"];
const BLANK = { title: "", tiles: [{ metric: "waiting" }, { metric: "longest_wait" }, { metric: "service_level" }],
  queues: [], locale: "", sound: false, rotate_s: 30 };
const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

export function createBoards(ctx) {
  const form = $("board-form");
  let boards = [];

  $("b-locale").replaceChildren(...LOCALES.map((l) => h("option", { value: l, dataset: { i18n: `console.boards.locale.${l || "browser"}` } },
    t(`console.boards.locale.${l || "browser"}`))));
  $("b-add-tile").addEventListener("click", () => { addTile({ metric: "waiting" }); preview(); });
  $("b-new").addEventListener("click", () => fill("", BLANK));
  $("b-delete").addEventListener("click", remove);
  form.addEventListener("input", preview);
  form.addEventListener("change", preview);
  form.addEventListener("submit", (ev) => { ev.preventDefault(); save(); });

  function addTile(tile) {
    const metric = h("select", { name: "metric", "aria-label": t("console.boards.metric") },
      ...TILE_METRICS.map((m) => h("option", { value: m }, t(`board.tile.${m}`))));
    metric.value = tile.metric;
    const row = h("div", { class: "tile-row" }, metric,
      h("input", { name: "queue_ids", value: (tile.queue_ids || []).join(", "), placeholder: t("console.boards.tile_queues"),
        "aria-label": t("console.boards.tile_queues") }),
      h("input", { name: "label", value: tile.label || "", placeholder: t("console.boards.tile_label"), maxlength: "120",
        "aria-label": t("console.boards.tile_label") }),
      h("button", { type: "button", class: "icon", title: t("console.boards.remove_tile"), "aria-label": t("console.boards.remove_tile"),
        onclick: () => { row.remove(); preview(); } }, "×"));
    $("b-tiles").append(row);
  }

  function fill(name, b) {
    $("b-name").value = name;
    $("b-name").readOnly = Boolean(name);
    $("b-title").value = b.title || "";
    $("b-locale").value = b.locale || "";
    $("b-sound").checked = Boolean(b.sound);
    $("b-rotate").value = b.rotate_s ?? 30;
    $("b-queues").value = (b.queues || []).join(", ");
    $("b-tiles").replaceChildren();
    for (const tile of b.tiles || []) addTile(tile);
    $("b-delete").hidden = !name;
    status($("boards-result"), "");
    preview();
  }

  /** The form as a board body. */
  function body() {
    const tiles = [...$("b-tiles").children].map((row) => ({
      metric: row.querySelector('[name="metric"]').value,
      queue_ids: list(row.querySelector('[name="queue_ids"]').value),
      label: row.querySelector('[name="label"]').value.trim(),
    }));
    return { title: $("b-title").value.trim(), tiles, queues: list($("b-queues").value), locale: $("b-locale").value,
      sound: $("b-sound").checked, rotate_s: Number($("b-rotate").value) };
  }

  /** The board as a TV would show it, with the console's live overview cut to the board's queues. */
  function preview() {
    const b = body();
    const name = $("b-name").value.trim();
    $("b-open").href = name ? `wallboard.html#board=${encodeURIComponent(name)}` : "wallboard.html";
    $("b-open").hidden = !name;
    $("preview-title").textContent = b.title || "–";
    const tiles = b.tiles.map((tile) => makeTile(tile));
    $("preview-tiles").replaceChildren(...tiles);
    $("preview-tiles").style.setProperty("--tiles", String(Math.max(1, Math.min(tiles.length, 6))));
    const doc = ctx.overview();
    if (!doc) return;
    const only = new Set(b.queues);
    const scoped = only.size ? { ...doc, queues: doc.queues.filter((q) => only.has(q.queue_id)) } : doc;
    for (const el of tiles) {
      const queueIds = el.dataset.queues ? el.dataset.queues.split(",") : [...only];
      const f = tileFigure(el.dataset.metric, scoped, { queueIds, nowMs: ctx.serverNow() });
      el.dataset.value = f.value == null ? "" : String(f.value);
      if (!el.classList.contains("state")) el.dataset.level = f.level;
      el.querySelector(".value").textContent = f.text;
      el.querySelector(".sub").textContent = f.sub;
    }
    $("preview-queues").textContent = b.queues.length ? b.queues.join(", ") : t("console.boards.all_queues");
  }

  function renderList() {
    $("boards-list").replaceChildren(...boards.map((b) => h("li", {},
      h("button", { type: "button", class: "link", dataset: { board: b.name }, onclick: () => fill(b.name, b) }, `${b.title} (${b.name})`))));
    $("boards-empty").hidden = boards.length > 0;
  }

  function markField(err) {
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    const field = err.field || "";
    const tile = /^tiles\[(\d+)\]\.?(\w*)/.exec(field);
    let el = null;
    if (tile) el = $("b-tiles").children[Number(tile[1])]?.querySelector(`[name="${tile[2] || "metric"}"]`);
    else el = form.querySelector(`[data-field="${CSS.escape(field.split("[")[0])}"]`);
    if (el) {
      el.setAttribute("aria-invalid", "true");
      el.focus();
    }
  }

  async function save() {
    const name = $("b-name").value.trim();
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    try {
      const doc = await ctx.api.put(`api/boards/${encodeURIComponent(name)}`, body());
      await load();
      fill(doc.data.name, doc.data);
      status($("boards-result"), t("console.boards.saved", { name }), "ok");
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) markField(err);
      status($("boards-result"), explain(err), "error");
    }
  }

  async function remove() {
    const name = $("b-name").value.trim();
    if (!name) return;
    try {
      await ctx.api.del(`api/boards/${encodeURIComponent(name)}`);
      await load();
      fill("", BLANK);
      status($("boards-result"), t("console.boards.deleted", { name }), "ok");
    } catch (err) {
      status($("boards-result"), explain(err), "error");
    }
  }

  async function load() {
    try {
      boards = (await ctx.api.get("api/boards")).data;
      status($("boards-status"), "");
    } catch (err) {
      status($("boards-status"), explain(err), "error");
    }
    renderList();
    translatePage($("panel-boards"));
  }

  fill("", BLANK);
  return { load, preview };
}
