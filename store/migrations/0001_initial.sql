-- keyward credential store, version 1. Applied once by `keyward migrate` inside a transaction;
-- never edit an applied migration: add the next numbered file instead.

CREATE TABLE service_users (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  namespace   text NOT NULL,
  name        text NOT NULL,
  uid         text NOT NULL UNIQUE,
  username    text NOT NULL
              CHECK (username ~ '^[A-Za-z0-9]+([-_][A-Za-z0-9]+)*$' AND char_length(username) <= 63),
  description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 1024),
  contact     jsonb CHECK (contact IS NULL OR jsonb_typeof(contact) = 'object'),
  groups      text[] NOT NULL DEFAULT '{}' CHECK (array_position(groups, NULL) IS NULL),
  scopes      text[] NOT NULL DEFAULT '{}' CHECK (array_position(scopes, NULL) IS NULL),
  suspended   boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  deleted_at  timestamptz,
  -- Target of api_keys' (service_user_id, namespace) key: a key lives in its user's namespace.
  UNIQUE (id, namespace)
);

-- A username belongs to at most one live user in the whole store; deleted rows keep theirs for audit.
CREATE UNIQUE INDEX service_users_username_live ON service_users (username) WHERE deleted_at IS NULL;
-- Kubernetes allows one object per namespace/name at a time.
CREATE UNIQUE INDEX service_users_object_live ON service_users (namespace, name) WHERE deleted_at IS NULL;

CREATE TABLE api_keys (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  key_id          text NOT NULL UNIQUE CHECK (key_id ~ '^key_[0-9A-Za-z]{16}$'),
  service_user_id uuid NOT NULL,
  namespace       text NOT NULL,
  name            text NOT NULL,
  uid             text NOT NULL UNIQUE,
  description     text NOT NULL DEFAULT '' CHECK (char_length(description) <= 256),
  -- NULL inherits the user's scopes; an empty array grants nothing.
  scopes          text[] CHECK (array_position(scopes, NULL) IS NULL),
  disabled        boolean NOT NULL DEFAULT false,
  expires_at      timestamptz,
  issued_at       timestamptz NOT NULL DEFAULT now(),
  rotated_at      timestamptz,
  revoked_at      timestamptz,
  last_used_at    timestamptz,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (service_user_id, namespace) REFERENCES service_users (id, namespace)
);

CREATE INDEX api_keys_service_user ON api_keys (service_user_id);
CREATE UNIQUE INDEX api_keys_object_live ON api_keys (namespace, name) WHERE revoked_at IS NULL;

CREATE TABLE api_key_secrets (
  hash           bytea PRIMARY KEY CHECK (octet_length(hash) = 32),
  api_key_id     uuid NOT NULL REFERENCES api_keys (id),
  display_prefix text NOT NULL CHECK (display_prefix ~ '^[a-z]{1,8}_[0-9A-Za-z]{4}$'),
  created_at     timestamptz NOT NULL DEFAULT now(),
  -- NULL: the current secret. Otherwise the end of the previous secret's grace period.
  not_after      timestamptz
);

-- "At most one current and one previous secret per key" holds by construction, whatever the
-- code does and however transactions interleave.
CREATE UNIQUE INDEX api_key_secrets_one_current ON api_key_secrets (api_key_id) WHERE not_after IS NULL;
CREATE UNIQUE INDEX api_key_secrets_one_previous ON api_key_secrets (api_key_id) WHERE not_after IS NOT NULL;

CREATE TABLE audit_events (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at              timestamptz NOT NULL DEFAULT now(),
  actor           text NOT NULL CHECK (actor <> ''),
  action          text NOT NULL CHECK (action ~ '^[a-z]+\.[a-z_]+$'),
  namespace       text,
  name            text,
  -- No foreign keys: the trail outlives what it describes.
  service_user_id uuid,
  key_id          text,
  detail          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object')
);

CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_key ON audit_events (key_id) WHERE key_id IS NOT NULL;
CREATE INDEX audit_events_user ON audit_events (service_user_id) WHERE service_user_id IS NOT NULL;

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END;
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TABLE api_key_usage (
  api_key_id uuid NOT NULL REFERENCES api_keys (id),
  minute     timestamptz NOT NULL,
  allowed    bigint NOT NULL DEFAULT 0 CHECK (allowed >= 0),
  denied     bigint NOT NULL DEFAULT 0 CHECK (denied >= 0),
  PRIMARY KEY (api_key_id, minute)
);
