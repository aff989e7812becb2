-- drivetag schema, version 6: device ids compare byte by byte on PostgreSQL. SQLite already
-- compares text as bytes, so this version changes nothing there: lines starting {postgres} run
-- on PostgreSQL only.
-- A device id is an identifier, not words: the database's locale collation ("en_US.UTF-8" and
-- the like) sorts it no better and costs ingest a locale-aware comparison at every step down
-- every (device_id, ...) key. Under load about a seventh of PostgreSQL's CPU went there
-- (strcoll, varstr_cmp, pg_newlocale_from_collation).
-- Every device_id column changes together, so joins between them keep one collation.
{postgres} ALTER TABLE envelopes ALTER COLUMN device_id TYPE TEXT COLLATE "C";
{postgres} ALTER TABLE trips ALTER COLUMN device_id TYPE TEXT COLLATE "C";
{postgres} ALTER TABLE days ALTER COLUMN device_id TYPE TEXT COLLATE "C";
{postgres} ALTER TABLE styles ALTER COLUMN device_id TYPE TEXT COLLATE "C";
{postgres} ALTER TABLE places ALTER COLUMN device_id TYPE TEXT COLLATE "C";
{postgres} ALTER TABLE store_distances ALTER COLUMN device_id TYPE TEXT COLLATE "C";
{postgres} ALTER TABLE poi_visits ALTER COLUMN device_id TYPE TEXT COLLATE "C";
{postgres} ALTER TABLE reported_vehicles ALTER COLUMN device_id TYPE TEXT COLLATE "C";
{postgres} ALTER TABLE device_status ALTER COLUMN device_id TYPE TEXT COLLATE "C";
{postgres} ALTER TABLE dead_letters ALTER COLUMN device_id TYPE TEXT COLLATE "C";
{postgres} ALTER TABLE vehicles ALTER COLUMN device_id TYPE TEXT COLLATE "C";
{postgres} ALTER TABLE profiles ALTER COLUMN device_id TYPE TEXT COLLATE "C";
{postgres} ALTER TABLE preview_profiles ALTER COLUMN device_id TYPE TEXT COLLATE "C";

