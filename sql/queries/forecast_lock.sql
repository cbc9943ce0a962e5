-- Take the tenant's forecast lock for the rest of the transaction, if no other process holds it:
-- one refresh of a tenant at a time, across every server process. $1 tenant.
SELECT pg_try_advisory_xact_lock(hashtextextended('wallboard.forecast:' || $1, 0))
