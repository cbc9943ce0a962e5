"""The platform every layer stands on: settings, PostgreSQL and Redis clients, auth, errors,
logs, background tasks, the embedded servers, the files the server ships, tenant settings, the
boards (named wallboard layouts) and the audit log.

May import: the standard library and third-party packages only (no other ``server`` package).
"""
