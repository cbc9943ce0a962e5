-- Mark a batch as committed and not yet applied to the live state (in the batch's transaction).
-- $1 tenant, $2 batch id
INSERT INTO live_pending (client_id, batch) VALUES ($1, $2)
