"""History read back from the PostgreSQL rollups: periods in the tenant's calendar, figures,
the METRICS.md formulas (shared with the live view), reports, costs, scorecards.

May import: ``server.core``, ``server.ingest``.
"""
