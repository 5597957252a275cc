-- keyward credential store: least-privilege roles. Two NOLOGIN group roles hold the privileges;
-- deployers create LOGIN roles that are members of them (docs/store-roles.md):
--   keyward_operator  reads and writes every keyward table (not the migrations ledger, no DDL)
--   keyward_webhook   reads users, keys and secrets; writes only usage (api_key_usage, and
--                     api_keys.last_used_at). Later migrations that add webhook-written tables
--                     (request log, rate-limit state) grant them to keyward_webhook beside the table.
-- The roles are created here only if missing, so a DBA may create them beforehand and run
-- `keyward migrate` as a role without CREATEROLE. Grants are idempotent. Whoever runs the
-- migrations owns the tables and keeps every right; the roles never own anything.

DO $$
DECLARE
  role text;
BEGIN
  FOREACH role IN ARRAY ARRAY['keyward_operator', 'keyward_webhook'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN', role);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        -- Another database of this cluster migrating at the same moment created it.
        NULL;
      END;
    END IF;
  END LOOP;
END
$$;

DO $$
DECLARE
  s text := current_schema();
BEGIN
  -- On PostgreSQL 14 every role may create tables in public; neither keyward role needs to.
  EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', s);
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO keyward_operator, keyward_webhook', s);

  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO keyward_operator', s);
  EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO keyward_operator', s);
  -- Tables later migrations create (as the same migrating role) are the operator's too.
  EXECUTE format(
    'ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO keyward_operator', s);
  EXECUTE format(
    'ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO keyward_operator', s);
END
$$;

-- The ledger is the migrating role's alone; the operator may read the schema version.
REVOKE INSERT, UPDATE, DELETE ON keyward_schema_migrations FROM keyward_operator;
-- Audit rows are append-only (a trigger refuses the rest); the grant says so too.
REVOKE UPDATE, DELETE ON audit_events FROM keyward_operator;

-- The webhook: the lookup reads these three; nothing else about users (audit, usage history).
GRANT SELECT ON service_users, api_keys, api_key_secrets TO keyward_webhook;
-- The usage flush upserts per-minute counts and moves last_used_at forward, nothing more; the
-- column grant also allows the flush's FOR NO KEY UPDATE row locks on api_keys.
GRANT SELECT, INSERT, UPDATE ON api_key_usage TO keyward_webhook;
GRANT UPDATE (last_used_at) ON api_keys TO keyward_webhook;
