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


async def record(db: Database, who: Principal, action: str, route: str, parameters: dict[str, Any]) -> None:
    """Write one entry; long parameter values are cut so one export cannot bloat the log."""
    kept = {k: (v if len(str(v)) <= 256 else f"{str(v)[:256]}…") for k, v in parameters.items()}
    encoded = orjson.dumps(kept)
    if len(encoded) > MAX_PARAMETER_BYTES:
        encoded = orjson.dumps({"truncated": True, "keys": sorted(kept)[:50]})
    async with db.tenant(who.tenant) as conn:
        await conn.execute(query("audit_insert"), who.tenant, who.sub or "", who.role.value, action, route,
                           encoded.decode())
