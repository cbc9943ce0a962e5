// Number formats shared by the wallboard and the supervisor console.

/** Seconds as mm:ss, or h:mm:ss from an hour on; "–" for null. */
export function duration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
}

/** A fraction as a percentage: "73%" (digits=0) or "13.0%"; "–" for null (no calls yet). */
export function percent(fraction, digits = 0) {
  if (fraction == null || !Number.isFinite(fraction)) return "–";
  return `${(fraction * 100).toFixed(digits)}%`;
}
