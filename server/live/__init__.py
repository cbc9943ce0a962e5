"""The live path from a stored event to a socket: the recorder (PostgreSQL commit, then the
Redis apply), per-tenant state in Redis (keys, Lua scripts, views), the hub (one subscription
per process, the tick) and each client's outbox.

May import: ``server.core``, ``server.ingest``, ``server.history``.
"""
