"""The routines: PL/pgSQL functions of ``sql/routines/<base>.sql``, built from the statements of ``sql/queries``.

A template may name a query file on a line ``-- include: queries/<name>.sql``, replaced by its text; ``-- include:
queries/<name>.sql without <family> …`` leaves out the lines of those families (between ``-- family: <family>``
and ``-- end family``, which may nest: sql/queries/events_store.sql). Each
routine is created (by the migrator, server/core/migrations.py) under a name that carries a hash of its text
(``<base>_<hash>``): a release that changes a statement creates a function of its own next to the old one,
and processes of both releases run side by side during a rolling restart, each calling its own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache, cached_property

from server.core.errors import ConfigError
from server.core.resources import sql_dir

INCLUDE_RE = re.compile(r"^-- include: (queries/[a-z0-9_]+\.sql)(?: without((?: [a-z]+)+))?$", re.MULTILINE)
FAMILY_RE = re.compile(r"^ *-- family: ([a-z]+)\b")
FAMILY_END = "-- end family"


@dataclass(frozen=True)
class Routine:
    """A function of ``sql/routines/``: ``sql`` creates it, with ``:routine`` for its name and ``:app_role``."""

    base: str
    sql: str

    @cached_property
    def name(self) -> str:
        """The function's name: its base and the first 12 hex digits of its text's SHA-256."""
        return f"{self.base}_{hashlib.sha256(self.sql.encode()).hexdigest()[:12]}"

    def create(self, app_role: str) -> str:
        return self.sql.replace(":routine", self.name).replace(":app_role", app_role)

    def call(self, arguments: int) -> str:
        """``SELECT * FROM`` the function over ``$1`` … ``$arguments``."""
        return f"SELECT * FROM {self.name}({', '.join(f'${n}' for n in range(1, arguments + 1))})"


@cache
def routines() -> tuple[Routine, ...]:
    """The routines of ``sql/routines/``, their included queries in place (read once)."""
    found = []
    for path in sorted((sql_dir() / "routines").glob("*.sql")):
        text = INCLUDE_RE.sub(lambda m: _included(m.group(1), (m.group(2) or "").split()), path.read_text())
        found.append(Routine(path.stem, text))
    return tuple(found)


def routine(base: str) -> Routine:
    """The routine called ``base`` (its file ``sql/routines/<base>.sql``)."""
    for found in routines():
        if found.base == base:
            return found
    raise ConfigError(f"sql/routines/{base}.sql is missing: the installed package is incomplete, reinstall it")


def _included(query: str, without: list[str]) -> str:
    """The text of ``query`` (``queries/<name>.sql``) without the lines of the families named."""
    kept: list[str] = []
    open_families: list[str] = []
    found: set[str] = set()
    for line in (sql_dir() / query).read_text().rstrip().split("\n"):
        family = FAMILY_RE.match(line)
        if family is not None:
            open_families.append(family.group(1))
            found.add(family.group(1))
        elif line.strip() == FAMILY_END:
            if not open_families:
                raise ConfigError(f"sql/{query}: {FAMILY_END!r} without its '-- family:' line: mend the query")
            open_families.pop()
        elif not any(name in without for name in open_families):
            kept.append(line)
    if open_families or not set(without) <= found:
        raise ConfigError(f"sql/{query}: families {sorted(set(without) - found) or open_families} are not closed "
                          f"or not there: mend the query or the routine that includes it")
    return "\n".join(kept)
