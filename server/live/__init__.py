"""Live state in Redis: per-tenant agents, queues and today's counters."""
