"""Tools around the server, never imported while serving: benchmarks, history seeding, the
contact-center simulator, the queue_log follower and the HTTP poster they share.

May import: every layer below it, ``server.app`` and ``server.runtime``; only ``server.cli``
imports this package (lazily, per command).
"""
