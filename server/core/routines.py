"""The routines: PL/pgSQL functions of ``sql/routines/<base>.sql``, built from the statements of ``sql/queries``.

A template may name a query file on a line ``-- include: queries/<name>.sql``, replaced by its text. Each
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

INCLUDE_RE = re.compile(r"^-- include: (queries/[a-z0-9_]+\.sql)$", re.MULTILINE)


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
        text = INCLUDE_RE.sub(lambda m: (sql_dir() / m.group(1)).read_text().rstrip(), path.read_text())
        found.append(Routine(path.stem, text))
    return tuple(found)


def routine(base: str) -> Routine:
    """The routine called ``base`` (its file ``sql/routines/<base>.sql``)."""
    for found in routines():
        if found.base == base:
            return found
    raise ConfigError(f"sql/routines/{base}.sql is missing: the installed package is incomplete, reinstall it")
