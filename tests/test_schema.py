"""Every place that names a counter or an event kind agrees exactly with server/ingest/schema.py.

The counting is written where it runs (apply.lua, events_store.sql, history_rebuild.sql); these tests read
those files, the migrated database's catalogue and the validator, so a counter added in one place and not
in the others fails here, naming the place.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import asyncpg
import pytest

from server.core.db import query
from server.core.tenant_settings import TenantSettings
from server.history import figures, formulas
from server.ingest import events, schema, schema_sql
from server.ingest.schema import COUNTERS, EVENTS, FACTS, HOLD_CHANGE, ROLLUP_COUNTERS
from server.live import view
from server.live.keys import Keys
from server.live.members import Members
from server.live.state import Calendar, compact

BY_NAME = {c.name: c for c in COUNTERS}
ROLLUP_KEYS = {"client_id", "dimension", "key", "interval_start", "day", "month"}
ROLLUP_TABLES = ["performance_daily", "performance_monthly", "performance_trends"]
LIVE_PLACES = {"qd": "queue", "qi": "queue", "ad": "agent", "td": "tenant"}


# -- reading SQL ----------------------------------------------------------------------------------------------


def sql(name: str) -> str:
    """A query's text without its comments."""
    return re.sub(r"--[^\n]*", "", query(name))


def split_top(text: str) -> list[str]:
    """Split on the commas outside parentheses."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:].strip())
    return [item for item in items if item]


def select_list(text: str) -> list[str]:
    """The items of the first SELECT in text, up to its FROM."""
    body = text[text.index("SELECT") + len("SELECT"):]
    return split_top(re.split(r"\n\s*FROM\s", body, maxsplit=1)[0])


def ctes(text: str) -> dict[str, str]:
    """name → body of each CTE (the last one runs to the end of the statement)."""
    marks = list(re.finditer(r"(?:WITH|\),)\s+(\w+)(?: \([^)]*\))? AS (?:MATERIALIZED )?\(", text))
    return {m[1]: text[m.end():(marks[i + 1].start() if i + 1 < len(marks) else len(text))]
            for i, m in enumerate(marks)}


def counters_of(items: list[str]) -> list[str]:
    """The counter names an item list carries: ``x``, ``sum(x)``, ``sum(x) AS x``, ``sum(p.x)::bigint AS x``…"""
    names = []
    for item in items:
        m = re.fullmatch(r"(?:sum\()?(?:\w+\.)?(\w+)\)?(?:::\w+)?(?: AS (\w+))?", item)
        assert m, f"not a counter item: {item!r}"
        assert m[2] in (None, m[1]), f"{item!r} renames {m[1]} to {m[2]}"
        names.append(m[1])
    return [n for n in names if n not in ROLLUP_KEYS]


def rollup_writes(text: str) -> list[tuple[str, list[str], list[str], list[tuple[str, str]]]]:
    """(table, inserted columns, selected values, SET assignments) of each upsert into a rollup table."""
    found = []
    pattern = (r"INSERT INTO (performance_trends|performance_daily|performance_monthly) AS p \(([^)]*)\)\s*(SELECT .*?)"
               r"ON CONFLICT \([^)]*\) DO UPDATE SET(.*?)(?=\n\)|\Z)")
    for m in re.finditer(pattern, text, re.S):
        sets = [tuple(part.strip() for part in a.split("=", 1)) for a in split_top(m[4])]
        found.append((m[1], split_top(m[2]), select_list(m[3]), sets))
    return found


def sql_bound(bound: int | str) -> str:
    return {"sl": "sl_ms", "sa": "short_abandon_ms"}.get(str(bound), str(bound))


def compared(counter: schema.Counter) -> bool:
    return counter.when is not None and counter.when[1] in ("<", "<=", ">=")


def assert_rollup_writes(name: str, text: str, *, adds: bool) -> None:
    writes = rollup_writes(text)
    assert sorted(w[0] for w in writes) == ROLLUP_TABLES, name
    for table, columns, values, sets in writes:
        where = f"{name} ({table})"
        assert counters_of(columns) == list(ROLLUP_COUNTERS), f"{where}: the INSERT column list"
        assert counters_of(values[4:]) == list(ROLLUP_COUNTERS), f"{where}: the inserted values"
        assert [lhs for lhs, _ in sets] == list(ROLLUP_COUNTERS), f"{where}: the SET list"
        for lhs, rhs in sets:
            assert rhs == (f"p.{lhs} + excluded.{lhs}" if adds else f"excluded.{lhs}"), f"{where}: SET {lhs} = {rhs}"


# -- the declaration ------------------------------------------------------------------------------------------


def test_declaration_feeds_its_users() -> None:
    """The validator, the METRICS.md formulas, history figures and the live view use the declared lists."""
    assert events.EVENT_TYPES == tuple(k.type for k in EVENTS) == schema.EVENT_TYPES
    assert formulas.QUEUE_COUNTERS == schema.counter_names(rollup="queue")
    assert formulas.FEEDBACK_COUNTERS == schema.counter_names(rollup="tenant")
    assert figures.COUNTERS == set(ROLLUP_COUNTERS)
    assert set(view.AGENT_STATES) == set(schema.AGENT_STATES) - {"logged_out"}
    for c in COUNTERS:
        assert c.events and c.words and c.rollup and c.sql[0] and c.sql[1], c.name
        assert set(c.rollup) >= set(c.live), f"{c.name}: kept live where history does not keep it"


# -- the database ---------------------------------------------------------------------------------------------


async def test_rollup_tables_have_exactly_the_declared_counters(database: str) -> None:
    """performance_trends, _daily and _monthly have one column per declared counter, in order, of its unit's type."""
    conn = await asyncpg.connect(database)
    try:
        for table in ROLLUP_TABLES:
            rows = await conn.fetch(
                "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
                "WHERE table_name = $1 ORDER BY ordinal_position", table)
            cols = [r for r in rows if r["column_name"] not in ROLLUP_KEYS]
            assert [r["column_name"] for r in cols] == list(ROLLUP_COUNTERS), table
            for r in cols:
                unit = BY_NAME[r["column_name"]].unit
                wanted = "bigint" if unit in ("ms", "thousandths", "cents") else "integer"
                assert (r["data_type"], r["is_nullable"], r["column_default"]) == (wanted, "NO", "0"), (table, r)
    finally:
        await conn.close()


# -- the generated counter lists ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["events_store", "history_rebuild", "history_by_bucket", "history_by_bucket_key",
                                  "history_by_key", "report_agent_days", "report_queue_intervals",
                                  "rollup_days_months"])
def test_counter_lists_are_generated_from_the_declaration(name: str) -> None:
    """Each query's counter lists are what `python -m server.ingest.schema_sql` writes from the declaration now."""
    assert name in schema_sql.generated_queries()
    text = query(name)
    assert schema_sql.render(text) == text, f"sql/queries/{name}.sql: run `python -m server.ingest.schema_sql`"


def test_render_rewrites_a_stale_list() -> None:
    """A marked list that lost a counter, or has one too many, is written anew; text outside the markers is kept."""
    stale = "SELECT key,\n       -- counters: names\n       offered, bogus\n       -- end counters\nFROM t"
    fresh = schema_sql.render(stale)
    assert fresh.startswith("SELECT key,\n       -- counters: names\n       offered, answered,")
    assert "bogus" not in fresh and fresh.endswith(f"{ROLLUP_COUNTERS[-1]}\n       -- end counters\nFROM t")
    with pytest.raises(ValueError, match="no '-- end counters' line"):
        schema_sql.render("-- counters: names\noffered")


# -- events_store.sql -----------------------------------------------------------------------------------------


def test_events_store_counts_each_counter_on_its_fact() -> None:
    """events_store.sql: the facts columns, the branch that feeds each counter, its dimensions and threshold."""
    text = sql("events_store")
    head = re.search(r"facts \(([^)]*)\) AS \(", text)
    assert head, "events_store.sql: no `facts (…) AS (` list"
    assert counters_of(split_top(head[1])[3:]) == list(ROLLUP_COUNTERS), "events_store.sql: the facts column list"
    body = ctes(text)["facts"]
    fed: dict[str, list[str]] = {}  # counter → the dimension of each branch that moves it
    for branch in body.split("UNION ALL"):
        items = select_list(branch)
        assert len(items) == 3 + len(ROLLUP_COUNTERS), f"events_store.sql: a facts branch has {len(items)} values"
        tail = branch[branch.index("FROM"):]
        source = re.match(r"FROM (\w+)", tail)
        if "hold_news <> 0" in tail:  # a late hold or unhold: the change of a completed leg's hold time
            assert "news & 8 = 0" in tail, f"events_store.sql: a hold change branch that counts a new completion: {tail}"
            moved = {c.name for c, value in zip(COUNTERS, items[3:], strict=True) if value not in ("0", "0::bigint")}
            assert moved == set(HOLD_CHANGE), f"events_store.sql: the hold change branch moves {sorted(moved)}"
            continue
        if source and source[1] in {f.group for f in FACTS.values() if f.bit == 0}:  # one fact per row, no leg
            facts = {f.name for f in FACTS.values() if f.bit == 0 and f.group == source[1]}
        else:
            mask = re.search(r"news & (\(?[\d |]+\)?) <> 0", tail)
            assert mask, f"events_store.sql: a facts branch without `news & …`: {branch[:80]!r}"
            facts = {f.name for f in FACTS.values() if f.bit & eval(mask[1])}  # noqa: S307 - digits and |
        dimension = items[0].strip("'")  # one branch per dimension
        for c, value in zip(COUNTERS, items[3:], strict=True):
            moves = value not in ("0", "0::bigint")
            assert moves == (c.fact in facts), f"events_store.sql: {c.name} is {value!r} in the {sorted(facts)} branch"
            if moves:
                fed.setdefault(c.name, []).append(dimension)
                if compared(c):
                    assert f"{c.when[1]} {sql_bound(c.when[2])}" in value, f"events_store.sql: {c.name}: {value}"
    assert sorted(fed) == sorted(ROLLUP_COUNTERS), "events_store.sql: each counter moves in some branch"
    for c in COUNTERS:
        assert sorted(fed[c.name]) == sorted(c.rollup), f"events_store.sql: {c.name} is kept for {fed[c.name]}"


def test_events_store_writes_every_counter() -> None:
    """events_store.sql: the column, value and SET lists of the three rollup upserts are the declared counters."""
    assert_rollup_writes("events_store.sql", sql("events_store"), adds=True)


# -- history_rebuild.sql --------------------------------------------------------------------------------------


def test_history_rebuild_counts_each_counter_on_its_fact() -> None:
    """history_rebuild.sql: one CTE per group of facts computes exactly that group's counters, dimensions, thresholds."""
    parts = ctes(sql("history_rebuild"))
    facts_cte = parts["facts"]
    joined = re.findall(r"(?:FROM|FULL JOIN) (\w+)", facts_cte)
    seen: list[str] = []
    for name in joined:
        items = select_list(parts[name])
        aliases = {m[2]: m[1] for m in (re.fullmatch(r"(.*) AS (\w+)", i, re.S) for i in items) if m}
        got = [a for a in aliases if a not in ROLLUP_KEYS]
        groups = {FACTS[BY_NAME[a].fact].group for a in got}
        assert len(groups) == 1, f"history_rebuild.sql: {name} mixes fact groups {sorted(groups)}"
        wanted = {c.name for c in COUNTERS if FACTS[c.fact].group in groups}
        assert set(got) == wanted, f"history_rebuild.sql: {name} computes {sorted(got)}, not {sorted(wanted)}"
        dims = set(re.findall(r"\('(\w+)',", parts[name])) or set(re.findall(r"'(\w+)'::text AS dimension", items[0]))
        for a in got:
            c = BY_NAME[a]
            assert dims == set(c.rollup), f"history_rebuild.sql: {a} is kept for {sorted(dims)}"
            if compared(c):
                assert f"{c.when[1]} {sql_bound(c.when[2])}" in aliases[a], f"history_rebuild.sql: {a}: {aliases[a]}"
        seen += got
    assert sorted(seen) == sorted(ROLLUP_COUNTERS), "history_rebuild.sql: each counter in exactly one fact CTE"
    zeroed = re.findall(r"coalesce\((\w+), 0\) AS (\w+)", facts_cte)
    assert [a for a, b in zeroed if a == b] == list(ROLLUP_COUNTERS), "history_rebuild.sql: the facts list"
    for name in ("intervals", "days", "months"):
        for branch in parts[name].split("UNION ALL"):
            items = [i for i in select_list(branch) if not i.startswith("date_trunc(")]
            assert counters_of(items) == list(ROLLUP_COUNTERS), f"history_rebuild.sql: {name}"


def test_history_rebuild_writes_every_counter() -> None:
    """history_rebuild.sql: the column, value and SET lists of the three rollup upserts are the declared counters."""
    assert_rollup_writes("history_rebuild.sql", sql("history_rebuild"), adds=False)


@pytest.mark.parametrize("name", ["history_by_bucket", "history_by_bucket_key", "history_by_key",
                                  "report_agent_days", "report_queue_intervals"])
def test_rollup_reads_return_every_counter(name: str) -> None:
    """The history and report queries read back every declared counter, each under its own name."""
    assert counters_of([i for i in select_list(sql(name)) if i not in ("a.name", "a.team")]
                       [1 if name != "report_agent_days" else 2:]) == list(ROLLUP_COUNTERS), name


# -- the Lua scripts ------------------------------------------------------------------------------------------


def lua(name: str) -> str:
    text = (resources.files("server.live") / "scripts" / f"{name}.lua").read_text()
    return re.sub(r"--(?! [a-z]+\.[a-z]+)[^\n]*", "", text)  # keeps the `-- call.queued` handler notes


def lua_counts(body: str, helpers: dict[str, set[tuple[str, str]]]) -> set[tuple[str, str]]:
    """(counter, live place) of every count(…)/bump(…) with a literal name in body, and of the helpers it calls."""
    out: set[tuple[str, str]] = set()
    for line in body.splitlines():
        for m in re.finditer(r'\bcount\([^"]*"(\w+)"', line):
            out.add((m[1], "queue"))
        for m in re.finditer(r'\bactivity\(e, "(\w+)"', line):  # the queue and the agent the event names
            out |= {(m[1], "queue"), (m[1], "agent")}
        for m in re.finditer(r'\bbump\(KEYS\[ad\], "(\w+)"', line):  # an agent day found in the AD map
            out.add((m[1], "agent"))
        for m in re.finditer(r'\bbump\((\w+), "(\w+)"', line):
            local = re.search(rf"local {m[1]} = KEYS\[e\.(\w+)\]", body)
            prefixes = [local[1]] if local else re.findall(r"KEYS\[e\.(td|ad)\]", body)
            out |= {(m[2], LIVE_PLACES[p]) for p in prefixes}
    for name, counted in helpers.items():
        if re.search(rf"\b{name}\(", body):
            out |= counted
    return out


def test_apply_lua_counts_what_is_declared() -> None:
    """apply.lua: the counters each event kind's handler moves, and in which live hashes, are the declared ones."""
    text = lua("apply")
    count_fn = re.search(r"local function count\(.*?\nend\n", text, re.S)
    assert count_fn and "KEYS[qd]" in count_fn[0] and "KEYS[qi]" in count_fn[0], "count() keeps queue day and interval"
    helpers = {m[1]: lua_counts(m[2], {}) for m in re.finditer(r"local function (\w+)\(.*?\)\n(.*?)\nend\n", text, re.S)}
    handlers = {m[2]: lua_counts(m[3], helpers)
                for m in re.finditer(r"handlers\.(\w+) = function\(e\)\s*-- ([\w.]+)[^\n]*\n(.*?)\nend\n", text, re.S)}
    assert set(handlers) == set(schema.EVENT_TYPES), "apply.lua: one handler per event kind"
    for kind, got in handlers.items():
        wanted = {(c.name, place) for c in COUNTERS if kind in c.events for place in c.live}
        if kind in ("call.hold", "call.unhold"):  # a late one corrects its completed leg's hold time
            wanted |= {(c.name, place) for c in COUNTERS if c.name in HOLD_CHANGE for place in c.live}
        assert got == wanted, f"apply.lua, {kind}: extra {sorted(got - wanted)}, missing {sorted(wanted - got)}"
    for c in COUNTERS:
        if compared(c) and c.live:
            field, op, bound = c.when  # type: ignore[misc]
            lines = [ln for ln in text.splitlines() if f'"{c.name}"' in ln]
            assert lines and all(f"{op} {bound}" in ln for ln in lines), f"apply.lua: {c.name} not under {op} {bound}"


def test_read_lua_reads_every_live_hash() -> None:
    """read.lua is given, and so reads back, each kind of live hash that a declared counter is kept in."""
    t = Keys("wb").of("t")
    names, _ = Members(["q1"], ["a1"]).read_call(t, "2026-11-25", 0, True)
    read = {name[len(t.p):].split(":")[0] for name in names}
    kept = {p for c in COUNTERS for p in c.live}
    assert {LIVE_PLACES[p] for p in read if p in LIVE_PLACES} == kept


# -- event kinds ----------------------------------------------------------------------------------------------

SAMPLES: dict[str, Any] = {"id": "x1", "text": "t", "state": "available", "queues": ["q1"], "seconds": 1.5,
                           "score": 4.2, "criteria": {"tone": 3}, "bool": True, "time": "2026-11-25T11:00:00Z",
                           "amount": 12.5}


def sample(kind: schema.EventKind) -> dict[str, Any]:
    body = {"event_id": "e1", "type": kind.type, "ts": "2026-11-25T10:00:00.000Z"}
    for f in kind.fields:
        body[f.name] = f.low if f.check == "int" else f.options[0] if f.check == "choice" else SAMPLES[f.check]
    return body


@pytest.mark.parametrize("kind", EVENTS, ids=lambda k: k.type)
def test_each_declared_kind_is_validated_and_applied(kind: schema.EventKind) -> None:
    """Each declared kind: its sample is accepted, each required or mistyped field is refused by name, apply.lua handles it."""
    event = events.parse_event(sample(kind))
    for f in kind.fields:
        bad = sample(kind)
        bad[f.name] = "x" if f.check == "queues" else ["x"]
        with pytest.raises(events.EventError) as exc:
            events.parse_event(bad)
        assert exc.value.field == f.name
        if f.required:
            del bad[f.name]
            with pytest.raises(events.EventError, match=f"^{f.name}: required$"):
                events.parse_event(bad)
    if kind.one_of:
        bad = {k: v for k, v in sample(kind).items() if k not in kind.one_of}
        with pytest.raises(events.EventError) as exc:
            events.parse_event(bad)
        assert exc.value.field == kind.one_of[0]
    code = compact(event, Calendar(TenantSettings()))["k"]
    handler = re.search(rf"handlers\.{code} = function\(e\)\s*-- ([\w.]+)", lua("apply"))
    assert handler and handler[1] == kind.type, f"apply.lua has no handler {code!r} for {kind.type}"


def test_undeclared_kind_is_refused() -> None:
    """A type the schema does not declare is refused, naming the declared ones."""
    with pytest.raises(events.EventError, match="type: expected one of agent.state, call.queued"):
        events.parse_event({"event_id": "e1", "type": "call.transferred", "ts": "2026-11-25T10:00:00Z"})


def test_reconciliation_sums_declared_counters_alike_in_python_lua_and_sql() -> None:
    """The reconciliation compares the same counters in heal.FIELDS, checksum.lua and live_checksum.sql, all declared."""
    from server.live import heal

    lua = (resources.files("server") / "live" / "scripts" / "checksum.lua").read_text()
    queue_fields = re.findall(r'"(\w+)"', re.search(r"local fields = \{(.*?)\}", lua, re.S).group(1))
    tenant_fields = re.findall(r'"(\w+)"', re.search(r'"HMGET", KEYS\[3\], (.*?)\)', lua).group(1))
    aliases = re.findall(r"\bAS (\w+)", sql("live_checksum"))
    assert [*queue_fields, *tenant_fields] == list(heal.FIELDS) == aliases
    assert set(queue_fields) <= set(schema.QUEUE_COUNTERS), set(queue_fields) - set(schema.QUEUE_COUNTERS)
    assert set(tenant_fields) <= set(schema.FEEDBACK_COUNTERS), set(tenant_fields) - set(schema.FEEDBACK_COUNTERS)
