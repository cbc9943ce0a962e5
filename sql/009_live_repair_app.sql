-- The healer's sweeps (server/live/heal.py) span tenants: they clear the pending-apply markers of
-- applied batches, find markers a dead process left, and list the active tenants. 005 let only
-- the migrating owner do that; a login role that serves (WALLBOARD_MIGRATE_DATABASE_URL set) is
-- not the owner, so its markers were never cleared nor swept. The application role gets the same
-- reach on these two tables, which hold tenant and batch ids and times only, never a figure.
CREATE POLICY live_repair_app ON live_pending TO :app_role USING (true) WITH CHECK (true);
CREATE POLICY live_repair_app ON live_active TO :app_role USING (true) WITH CHECK (true);
GRANT SELECT, DELETE ON live_pending TO :app_role;
GRANT SELECT, INSERT, UPDATE ON live_active TO :app_role;
