// Time-bucket charts on uPlot (vendored from npm in vendor/uplot), styled for the dark theme.
//
// Each chart is one uPlot instance per container, rebuilt when its series change and resized
// with its container. Bucket starts are the x values (epoch seconds); axis labels are in the
// tenant's time zone (the overview says it), else in the browser's.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { t } from "./i18n.js";

const AXIS = { stroke: "#9fb0c3", grid: { stroke: "#263241", width: 1 }, ticks: { stroke: "#263241", width: 1 } };
export const COLORS = {
  offered: "#8d99ab", answered: "#2fd37a", abandoned: "#ff4747", service_level: "#4c9dff",
  abandon_rate: "#ffb21e", csat: "#2fd37a", nps: "#b98cff",
};

const charts = new Map(); // container -> { plot, observer }

/**
 * Draw (or redraw) a chart of time buckets in `container`.
 *
 * Each bucket is plotted at its middle, so a bar covers its own interval between the tick
 * marks of its boundaries; buckets that have not begun yet (later today) are left empty
 * rather than drawn as zeros.
 * @param {HTMLElement} container
 * @param {object} o
 * @param {{start: string, end: string}[]} o.buckets as the API gives them
 * @param {{label: string, key: string, values: (number|null)[], kind?: "bars"|"line", scale?: string}[]} o.series
 * @param {Record<string, {range?: [number, number], format?: (v: number) => string}>} [o.scales]
 * @param {string} [o.timeZone]
 * @param {number} [o.nowMs] the server's now: later buckets stay empty
 * @param {(bucket: object) => string} [o.label] a bucket as the legend names it
 */
export function drawChart(container, { buckets, series, scales = {}, timeZone, nowMs = Date.now(), label = (b) => b.start }) {
  destroyChart(container);
  const starts = buckets.map((b) => Date.parse(b.start) / 1000);
  const ends = buckets.map((b) => Date.parse(b.end) / 1000);
  const xs = starts.map((start, i) => (start + ends[i]) / 2);
  const begun = starts.map((start) => start * 1000 <= nowMs);
  series = series.map((s) => ({ ...s, values: s.values.map((v, i) => (begun[i] ? v : null)) }));
  const box = container.getBoundingClientRect();
  const width = Math.max(240, Math.floor(box.width));
  const height = Math.max(120, Math.floor(box.height || 200));
  const scaleNames = [...new Set(series.map((s) => s.scale || "y"))];
  const opts = {
    width,
    height,
    tzDate: timeZone ? (ts) => uPlot.tzDate(new Date(ts * 1e3), timeZone) : undefined,
    legend: { show: true, live: true },
    cursor: { points: { size: 7 }, drag: { x: false, y: false } },
    scales: {
      x: { time: true, auto: false },
      ...Object.fromEntries(scaleNames.map((name) => [name, {
        range: scales[name]?.range
          ? () => scales[name].range
          : (u, min, max) => [0, Math.max(1, Math.ceil((max || 0) * 1.15))],
      }])),
    },
    axes: [
      { ...AXIS, space: 64, values: (u, splits, axis, space, incr) => timeLabels(splits, incr, timeZone) },
      ...scaleNames.map((name, i) => ({
        ...AXIS,
        scale: name,
        side: i === 0 ? 3 : 1,
        grid: i === 0 ? AXIS.grid : { show: false },
        size: 54,
        values: scales[name]?.format ? (u, splits) => splits.map(scales[name].format) : undefined,
      })),
    ],
    series: [
      { label: t("console.from"), value: (u, v, si, i) => (i == null || !buckets[i] ? "–" : label(buckets[i])) },
      ...series.map((s) => ({
        label: s.label,
        scale: s.scale || "y",
        stroke: COLORS[s.key] || "#f2f6fa",
        width: s.kind === "bars" ? 1 : 2.5,
        fill: s.kind === "bars" ? `${COLORS[s.key] || "#8d99ab"}55` : undefined,
        points: { show: s.kind !== "bars", size: 6 },
        spanGaps: false,
        paths: s.kind === "bars" ? uPlot.paths.bars({ size: [0.7, 120], align: 0 }) : undefined,
        value: (u, v) => (v == null ? "–" : scales[s.scale || "y"]?.format ? scales[s.scale || "y"].format(v) : String(v)),
      })),
    ],
  };
  const plot = new uPlot(opts, [xs, ...series.map((s) => s.values)], container);
  // The whole period, from the first bucket's start to the last one's end (uPlot's own range for
  // a single point spans 1000 days). Set explicitly: uPlot never re-ranges an explicit x scale.
  if (xs.length) plot.setScale("x", { min: starts[0], max: ends[ends.length - 1] });
  let last = width;
  const observer = new ResizeObserver(() => {
    const w = Math.max(240, Math.floor(container.getBoundingClientRect().width));
    if (w !== last) {
      last = w;
      plot.setSize({ width: w, height });
    }
  });
  observer.observe(container);
  charts.set(container, { plot, observer });
  container.dataset.points = String(xs.length);
  return plot;
}

/** Tick labels in 24-hour time (with the date where the day changes), dates, or months by tick spacing. */
function timeLabels(splits, incrS, timeZone) {
  const tz = timeZone ? { timeZone } : {};
  const fmt = (options) => new Intl.DateTimeFormat("en-GB", { ...options, ...tz });
  if (incrS >= 28 * 86400) return splits.map((s) => fmt({ month: "short", year: "numeric" }).format(s * 1000));
  if (incrS >= 86400) return splits.map((s) => fmt({ day: "numeric", month: "short" }).format(s * 1000));
  const day = fmt({ day: "numeric", month: "short" });
  const time = fmt({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  let last = null;
  return splits.map((s) => {
    const d = day.format(s * 1000);
    const label = d !== last ? `${time.format(s * 1000)}\n${d}` : time.format(s * 1000);
    last = d;
    return label;
  });
}

export function destroyChart(container) {
  const chart = charts.get(container);
  if (chart) {
    chart.observer.disconnect();
    chart.plot.destroy();
    charts.delete(container);
  }
  container.replaceChildren();
}
