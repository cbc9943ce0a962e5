"""Every tenant table could be a Citus table distributed by client_id as it stands (docs/SCALING.md)."""

from __future__ import annotations

import asyncpg

# Tables without a client_id: server bookkeeping, each a Citus reference table (copied to every node).
REFERENCE_TABLES = {"schema_migrations", "tenant_binding_key"}
# Tenant tables without a primary key, and why: events' uniqueness lives in event_ids (a key on a partitioned
# table must hold its partition key ts); another index would cost every ingested event. docs/SCALING.md.
NO_PRIMARY_KEY = {"events", "agent_scorecards"}  # agent_scorecards: a materialized view (unique index only)

TABLES = """
SELECT c.oid, c.relname, EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'client_id'
                                 AND NOT a.attisdropped) AS tenant
FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition
"""
KEYS = """
SELECT i.relname AS name, x.indisprimary AS primary, (SELECT attname FROM pg_attribute
       WHERE attrelid = x.indrelid AND attnum = x.indkey[0]) AS first_column
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = $1 AND (x.indisunique OR x.indisprimary)
"""
FOREIGN_KEYS = """
SELECT conname, (SELECT array_agg(attname) FROM pg_attribute WHERE attrelid = conrelid AND attnum = ANY (conkey)) AS mine,
       (SELECT array_agg(attname) FROM pg_attribute WHERE attrelid = confrelid AND attnum = ANY (confkey)) AS theirs
FROM pg_constraint WHERE contype = 'f' AND conrelid = $1
"""


async def test_every_key_starts_with_client_id(database: str) -> None:
    """Each table with client_id has a primary key (tables) and unique indexes that start with it, and foreign keys
    that include it on both sides; the tables without one are the known reference tables."""
    conn = await asyncpg.connect(database)
    try:
        problems: list[str] = []
        tables = await conn.fetch(TABLES)
        assert {t["relname"] for t in tables if not t["tenant"]} == REFERENCE_TABLES
        for table in (t for t in tables if t["tenant"]):
            keys = await conn.fetch(KEYS, table["oid"])
            if not any(k["primary"] for k in keys) and table["relname"] not in NO_PRIMARY_KEY:
                problems.append(f"{table['relname']}: no primary key")
            problems += [f"{table['relname']}.{k['name']} starts with {k['first_column']}"
                         for k in keys if k["first_column"] != "client_id"]
            problems += [f"{table['relname']}.{fk['conname']} misses client_id"
                         for fk in await conn.fetch(FOREIGN_KEYS, table["oid"])
                         if "client_id" not in fk["mine"] or "client_id" not in fk["theirs"]]
        assert len(tables) >= 18 and problems == [], problems
    finally:
        await conn.close()
