"""Write the counter lists of sql/queries/*.sql from server/ingest/schema.py: ``python -m server.ingest.schema_sql``.

A query names its counters between two marker lines; what lies between them is generated, indented
like the first marker:

    -- counters: KIND [ARGUMENT]
    ...generated...
    -- end counters

Kinds: ``names`` (``offered, answered, …``), ``sum as`` (``sum(offered) AS offered, …``), ``typed`` and
``typed as`` (``sum(offered)::integer``, ``sum(handle_ms)::bigint AS handle_ms`` …: sums of the rollup columns'
own types), ``bigint [PREFIX]`` (``sum(PREFIX.offered)::bigint AS offered, …``), ``coalesce`` (``coalesce(offered,
0) AS offered, …``), ``add`` and ``replace`` (the ``SET`` of an upsert that adds to a row or overwrites it),
``store GROUP`` (the values of one branch of events_store.sql's ``facts``: each counter's SQL where its fact
belongs to the group, else a zero of the counter's type; ``store hold_change``: schema.HOLD_CHANGE's values, the
late change of a completed leg's hold time) and ``rebuild GROUP`` (history_rebuild.sql's aggregates of one group of
facts). tests/test_schema.py fails while a query differs from what this writes.

Typed lists cost PostgreSQL less per execution of events_store.sql: a ``UNION ALL`` branch or an ``INSERT …
SELECT`` whose columns have the types they go into needs no projection of its own (a Subquery Scan of 33
counters, set up anew by every execution, about 7 % of PostgreSQL's CPU per small group in all).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from server.core.resources import sql_dir
from server.ingest.schema import COUNTERS, FACTS, HOLD_CHANGE, ROLLUP_COUNTERS, Counter

WIDTH = 116
_MARK = re.compile(r"^( *)-- counters: (.+?)\s*$")
_END = "-- end counters"


def _wrap(items: list[str], indent: str) -> list[str]:
    """Items joined by ", ", wrapped before WIDTH characters."""
    lines, line = [], ""
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "")
        if line and len(indent) + len(line) + 1 + len(piece) > WIDTH:
            lines.append(indent + line)
            line = piece
        else:
            line = f"{line} {piece}" if line else piece
    return [*lines, indent + line] if line else lines


def _bigint(c: Counter) -> bool:
    return c.unit in ("ms", "thousandths", "cents")


def _in_group(c: Counter, group: str) -> bool:
    return FACTS[c.fact].group == group


def _zero(c: Counter) -> str:
    return "0::bigint" if _bigint(c) else "0"


def _store(args: list[str]) -> list[str]:
    group = args[0]
    if group == "hold_change":  # not a fact: the late change of a completed leg's hold time
        return [HOLD_CHANGE.get(c.name, _zero(c)) for c in COUNTERS]
    return [c.sql[0] if _in_group(c, group) else _zero(c) for c in COUNTERS]


def _typed(args: list[str]) -> list[str]:
    alias = args == ["as"]
    return [f"sum({c.name})::{'bigint' if _bigint(c) else 'integer'}" + (f" AS {c.name}" if alias else "")
            for c in COUNTERS]


def _rebuild(args: list[str]) -> list[str]:
    return [f"{c.sql[1]} AS {c.name}" for c in COUNTERS if _in_group(c, args[0])]


def _bigint_sums(args: list[str]) -> list[str]:
    prefix = f"{args[0]}." if args else ""
    return [f"sum({prefix}{n})::bigint AS {n}" for n in ROLLUP_COUNTERS]


_LISTS: dict[str, Callable[[list[str]], list[str]]] = {
    "names": lambda args: list(ROLLUP_COUNTERS),
    "sum as": lambda args: [f"sum({n}) AS {n}" for n in ROLLUP_COUNTERS],
    "bigint": _bigint_sums,
    "coalesce": lambda args: [f"coalesce({n}, 0) AS {n}" for n in ROLLUP_COUNTERS],
    "store": _store,
    "typed": _typed,
    "rebuild": _rebuild,
}
# One assignment a line.
_SETS: dict[str, Callable[[str], str]] = {
    "add": lambda n: f"{n} = p.{n} + excluded.{n}",
    "replace": lambda n: f"{n} = excluded.{n}",
}


def _generate(spec: str, indent: str) -> list[str]:
    words = spec.split()
    kind, args = (" ".join(words[:2]), words[2:]) if words[:2] == ["sum", "as"] else (words[0], words[1:])
    if kind in _SETS:
        assignments = [_SETS[kind](n) for n in ROLLUP_COUNTERS]
        return [indent + a + ("," if i < len(assignments) - 1 else "") for i, a in enumerate(assignments)]
    if kind not in _LISTS:
        raise ValueError(f"unknown counter list {spec!r}")
    return _wrap(_LISTS[kind](args), indent)


def render(text: str) -> str:
    """The query text with every marked counter list written anew."""
    out: list[str] = []
    lines = iter(text.split("\n"))
    for line in lines:
        out.append(line)
        mark = _MARK.match(line)
        if mark is None:
            continue
        for inner in lines:
            if inner.strip() == _END:
                break
        else:
            raise ValueError(f"{line.strip()!r} has no {_END!r} line")
        out += [*_generate(mark[2], mark[1]), mark[1] + _END]
    return "\n".join(out)


def generated_queries() -> list[str]:
    """The names of the queries that carry counter lists."""
    return sorted(p.stem for p in (sql_dir() / "queries").glob("*.sql") if "-- counters: " in p.read_text())


def main() -> None:
    for name in generated_queries():
        path = sql_dir() / "queries" / f"{name}.sql"
        text = path.read_text()
        new = render(text)
        if new != text:
            path.write_text(new)
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
