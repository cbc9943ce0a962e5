"""``analytics_audit_log``: who exported, wrote or changed settings, what and when.

Entries are written in the caller's tenant transaction (row-level security applies, so an
entry can only ever land under the token's own tenant) and read by admins through
``GET /api/analytics/audit``.
"""

from __future__ import annotations

from typing import Any

import orjson

from server.core.auth import Principal
from server.core.db import Database, query

MAX_PARAMETER_BYTES = 4096
MAX_VALUE_BYTES = 1024


def _kept(value: Any) -> Any:
    """A parameter as stored: long text cut to 256 characters, a large structure to 256 of its JSON."""
    if isinstance(value, str):
        return value if len(value) <= 256 else f"{value[:256]}…"
    encoded = orjson.dumps(value, default=str)
    return value if len(encoded) <= MAX_VALUE_BYTES else f"{encoded[:256].decode(errors='ignore')}…"


async def record(db: Database, who: Principal, action: str, route: str, parameters: dict[str, Any]) -> None:
    """Write one entry: the token's ``sub`` and role, the action, the route, what it was given or
    changed; the time is the database's. Long values are cut so one request cannot bloat the log."""
    await _write(db, who.tenant, who.sub or "", who.role.value, action, route, parameters)


async def record_system(db: Database, tenant: str, job: str, action: str, parameters: dict[str, Any]) -> None:
    """Write one entry of a server-owned job (``sub`` = the job, ``role`` = ``system``) under ``tenant``."""
    await _write(db, tenant, job, "system", action, f"job:{job}", parameters)


async def _write(db: Database, tenant: str, sub: str, role: str, action: str, route: str,
                 parameters: dict[str, Any]) -> None:
    kept = {k: _kept(v) for k, v in parameters.items()}
    encoded = orjson.dumps(kept, default=str)
    if len(encoded) > MAX_PARAMETER_BYTES:
        encoded = orjson.dumps({"truncated": True, "keys": sorted(kept)[:50]}, default=str)
    async with db.tenant(tenant) as conn:
        await conn.execute(query("audit_insert"), tenant, sub, role, action, route, encoded.decode())
