"""Real-time contact-center wallboard server.

Layers, lowest first; a package imports only from the packages before it (checked by
tests/test_layout.py):

1. ``core``      settings, PostgreSQL and Redis clients, auth, errors, logs, background tasks,
                 embedded servers, tenant settings, the audit log
2. ``ingest``    what an event is: kinds, fields and validation; the queue_log translation
3. ``history``   rollups read back: periods, figures, the METRICS.md formulas, reports, costs
4. ``live``      Redis state, the recorder (PostgreSQL then Redis), the hub, outboxes
5. ``analytics`` forecast, Erlang C staffing, anomalies, threshold alerts
6. ``api``       thin HTTP and WebSocket endpoints: parse, authorise, call the layers below
7. ``app``, ``runtime``  the ASGI app and its lifespan; running it (embedded services, uvicorn)
8. ``tools``     bench, seed, simulate, the queue_log follower: imported by the command line only
9. ``cli``, ``__main__``  ``wallboard …``: the only place that parses argv
"""

__version__ = "0.1.0"
