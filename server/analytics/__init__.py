"""Analytics that run as owned background jobs or pure functions: the forecast, Erlang C
staffing, anomaly detection, threshold alerts, and the service that owns their tasks.

May import: ``server.core``, ``server.ingest``, ``server.history``, ``server.live``.
"""
