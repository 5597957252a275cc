-- Request log: one row per verification decision (/verify, /tokenreview, /introspect), kept for
-- audit so a leaked key's use can be traced (docs/request-log.md). Never a token, never a query
-- string: the webhook strips both before a row is written.
--
-- Day partitions (UTC) so retention is a DROP of whole days, not a DELETE that bloats the table.
-- Partitions are created and dropped only by keyward_request_log_maintain() below, which runs as
-- the migrating role (SECURITY DEFINER): the operator's leader calls it hourly, so neither the
-- operator nor the webhook role needs any DDL right. The webhook may only INSERT through the
-- parent; the operator (and whoever runs `keyward audit` as it) may only SELECT.

CREATE TABLE request_log (
  at             timestamptz NOT NULL,
  route          text NOT NULL CHECK (route IN ('verify', 'tokenreview', 'introspect')),
  key_id         text CHECK (length(key_id) <= 64),
  username       text CHECK (length(username) <= 63),
  -- Who presented the key, and on whose behalf it acted (null: for itself).
  actor          text CHECK (length(actor) <= 63),
  subject        text CHECK (length(subject) <= 256),
  method         text CHECK (length(method) <= 32),
  path           text CHECK (length(path) <= 2048),
  client_address text CHECK (length(client_address) <= 64),
  result         text NOT NULL CHECK (length(result) <= 32),
  reason         text NOT NULL CHECK (length(reason) <= 64)
) PARTITION BY RANGE (at);

CREATE INDEX request_log_at ON request_log (at);
CREATE INDEX request_log_key ON request_log (key_id, at) WHERE key_id IS NOT NULL;
CREATE INDEX request_log_user ON request_log (username, at) WHERE username IS NOT NULL;

-- Creates the partitions of today and the next `ahead_days` days (UTC) and drops every partition
-- whose whole day lies more than `retention_days` days back. Idempotent; concurrent callers are
-- serialized by a transaction advisory lock. Only partitions it named itself (request_log_YYYYMMDD)
-- are ever dropped.
CREATE FUNCTION keyward_request_log_maintain(retention_days integer, ahead_days integer)
  RETURNS TABLE (created integer, dropped integer)
  LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
  today date := (now() AT TIME ZONE 'UTC')::date;
  day date;
  part text;
BEGIN
  IF retention_days IS NULL OR retention_days < 1 OR retention_days > 3650 THEN
    RAISE EXCEPTION 'retention_days must be 1 to 3650, got %', retention_days;
  END IF;
  IF ahead_days IS NULL OR ahead_days < 1 OR ahead_days > 60 THEN
    RAISE EXCEPTION 'ahead_days must be 1 to 60, got %', ahead_days;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtextextended('keyward:request_log', 0));
  created := 0;
  dropped := 0;
  FOR day IN SELECT generate_series(today, today + ahead_days, interval '1 day')::date LOOP
    part := 'request_log_' || to_char(day, 'YYYYMMDD');
    IF to_regclass(quote_ident(part)) IS NULL THEN
      EXECUTE format(
        'CREATE TABLE %I PARTITION OF request_log FOR VALUES FROM (%L) TO (%L)',
        part, (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
      -- Default privileges gave the operator every right on the new table; rows are reached only
      -- through the parent, whose grants are the whole story.
      EXECUTE format('REVOKE ALL ON %I FROM PUBLIC, keyward_operator, keyward_webhook', part);
      created := created + 1;
    END IF;
  END LOOP;
  FOR part IN
    SELECT c.relname FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'request_log'::regclass AND c.relname ~ '^request_log_[0-9]{8}$'
       AND to_date(substr(c.relname, 13), 'YYYYMMDD') < today - retention_days
  LOOP
    EXECUTE format('DROP TABLE %I', part);
    dropped := dropped + 1;
  END LOOP;
  RETURN NEXT;
END
$$;

-- A SECURITY DEFINER function must not resolve names through a caller-controlled search_path.
DO $$
BEGIN
  EXECUTE format(
    'ALTER FUNCTION keyward_request_log_maintain(integer, integer) SET search_path = %I, pg_temp',
    current_schema());
END
$$;

REVOKE ALL ON FUNCTION keyward_request_log_maintain(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keyward_request_log_maintain(integer, integer) TO keyward_operator;

-- Append-only for both roles: the operator reads, the webhook writes and cannot read back.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON request_log FROM keyward_operator;
GRANT SELECT ON request_log TO keyward_operator;
GRANT INSERT ON request_log TO keyward_webhook;

-- A fresh install records from its first request, before the operator has run maintenance.
SELECT * FROM keyward_request_log_maintain(30, 7);
