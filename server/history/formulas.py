"""The METRICS.md formulas, one function each, shared by the live view and history.

Counters come in as a mapping of integer fields (durations in milliseconds,
quality in thousandths, so that sums are exact); rates come out as fractions
0..1 and durations in seconds. A rate whose denominator is 0 is ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from server.ingest import schema

Counters = Mapping[str, int]

# The counters of a queue (per day and per interval) and the feedback counters (tenant and agent rows), in the
# order documents show them: declared, with the rest of every counter, in server/ingest/schema.py.
QUEUE_COUNTERS = schema.QUEUE_COUNTERS
FEEDBACK_COUNTERS = schema.FEEDBACK_COUNTERS
SL_FORMULAS = ("answered_plus_abandoned", "answered_only", "all_abandons", "abandons_within_met")


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when the denominator is 0."""
    return numerator / denominator if denominator else None


def service_level(c: Counters, formula: str = "answered_plus_abandoned") -> float | None:
    """Share of calls answered within the threshold, by the tenant's chosen formula."""
    answered, abandoned = c.get("answered", 0), c.get("abandoned", 0)
    within = c.get("answered_within_sl", 0)
    if formula == "answered_only":
        return ratio(within, answered)
    if formula == "all_abandons":
        return ratio(within, answered + abandoned)
    if formula == "abandons_within_met":
        return ratio(within + c.get("abandoned_within_sl", 0), answered + abandoned)
    return ratio(within, answered + abandoned - c.get("short_abandoned", 0))


def asa_s(c: Counters) -> float | None:
    """Average speed of answer: total wait of answered calls / answered."""
    value = ratio(c.get("wait_answered_ms", 0), c.get("answered", 0))
    return None if value is None else value / 1000


def aht_s(c: Counters) -> float | None:
    """Average handle time: total talk + hold + wrap of handled calls / handled."""
    value = ratio(c.get("handle_ms", 0), c.get("handled", 0))
    return None if value is None else value / 1000


def abandon_rate(c: Counters) -> float | None:
    """(abandoned − short_abandoned) / (answered + abandoned − short_abandoned)."""
    short = c.get("short_abandoned", 0)
    return ratio(c.get("abandoned", 0) - short, c.get("answered", 0) + c.get("abandoned", 0) - short)


def fcr(c: Counters) -> float | None:
    """First-contact resolution: resolved / handled with `resolved` given."""
    return ratio(c.get("resolved", 0), c.get("resolved_given", 0))


def transfer_rate(c: Counters) -> float | None:
    return ratio(c.get("transferred", 0), c.get("handled", 0))


def missed_rate(c: Counters) -> float | None:
    """Ring-no-answer: call.missed / call.offered events."""
    return ratio(c.get("missed", 0), c.get("rings", 0))


def callback_reach_rate(c: Counters) -> float | None:
    """Callbacks completed with outcome reached / callbacks completed."""
    return ratio(c.get("callbacks_reached", 0), c.get("callbacks_completed", 0))


def revenue(c: Counters) -> float:
    """Σ revenue of handled calls, in the tenant's currency (kept in hundredths)."""
    return c.get("revenue_cents", 0) / 100


def revenue_per_call(c: Counters) -> float | None:
    """Σ revenue / handled."""
    value = ratio(c.get("revenue_cents", 0), c.get("handled", 0))
    return None if value is None else value / 100


def conversion_rate(c: Counters) -> float | None:
    """Handled calls with revenue > 0 / handled."""
    return ratio(c.get("converted", 0), c.get("handled", 0))


def csat(c: Counters) -> float | None:
    return ratio(c.get("csat_sum", 0), c.get("csat_n", 0))


def csat_satisfied(c: Counters) -> float | None:
    return ratio(c.get("csat_satisfied", 0), c.get("csat_n", 0))


def nps(c: Counters) -> float | None:
    """100 × (share of promoters − share of detractors) over responses with nps."""
    n = c.get("nps_n", 0)
    return 100 * (c.get("nps_promoters", 0) - c.get("nps_detractors", 0)) / n if n else None


def quality_score(c: Counters) -> float | None:
    value = ratio(c.get("quality_milli", 0), c.get("quality_n", 0))
    return None if value is None else value / 1000


def occupancy(seconds_by_state: Mapping[str, float]) -> float | None:
    """Time on_call + wrap_up / time available + on_call + wrap_up."""
    busy = seconds_by_state.get("on_call", 0) + seconds_by_state.get("wrap_up", 0)
    return ratio(busy, busy + seconds_by_state.get("available", 0))


def utilization(seconds_by_state: Mapping[str, float]) -> float | None:
    """Time on_call + wrap_up / time logged in (every state but logged_out)."""
    busy = seconds_by_state.get("on_call", 0) + seconds_by_state.get("wrap_up", 0)
    logged_in = sum(v for k, v in seconds_by_state.items() if k != "logged_out")
    return ratio(busy, logged_in)


def add(into: dict[str, int], counters: Counters) -> dict[str, int]:
    """Sum counters into ``into`` (for tenant totals over queues)."""
    for key, value in counters.items():
        into[key] = into.get(key, 0) + value
    return into


def total(many: Iterable[Counters]) -> dict[str, int]:
    out: dict[str, int] = {}
    for counters in many:
        add(out, counters)
    return out


def queue_figures(c: Counters, formula: str) -> dict[str, float | int | None]:
    """The counters and rates of a queue (or of the tenant) as API documents show them."""
    return {
        "offered": c.get("offered", 0),
        "answered": c.get("answered", 0),
        "abandoned": c.get("abandoned", 0),
        "short_abandoned": c.get("short_abandoned", 0),
        "answered_within_sl": c.get("answered_within_sl", 0),
        "abandoned_within_sl": c.get("abandoned_within_sl", 0),
        "handled": c.get("handled", 0),
        "missed": c.get("missed", 0),
        "missed_rate": missed_rate(c),
        "service_level": service_level(c, formula),
        "asa_s": asa_s(c),
        "aht_s": aht_s(c),
        "abandon_rate": abandon_rate(c),
        "fcr": fcr(c),
        "transfer_rate": transfer_rate(c),
    }


def activity_figures(c: Counters) -> dict[str, float | int | None]:
    """Rings, ring-no-answer, holds, callbacks and revenue of a queue, an agent or a team over a period."""
    return {
        "offers": c.get("rings", 0),
        "missed": c.get("missed", 0),
        "missed_rate": missed_rate(c),
        "holds": c.get("holds", 0),
        "callbacks_requested": c.get("callbacks_requested", 0),
        "callbacks_completed": c.get("callbacks_completed", 0),
        "callback_reach_rate": callback_reach_rate(c),
        "revenue": revenue(c),
        "revenue_per_call": revenue_per_call(c),
        "conversion_rate": conversion_rate(c),
    }


def feedback_figures(c: Counters) -> dict[str, float | int | None]:
    """CSAT, NPS and quality of a tenant day or an agent day."""
    return {
        "csat": csat(c),
        "csat_satisfied": csat_satisfied(c),
        "csat_responses": c.get("csat_n", 0),
        "nps": nps(c),
        "nps_responses": c.get("nps_n", 0),
        "quality_score": quality_score(c),
        "quality_reviews": c.get("quality_n", 0),
    }
