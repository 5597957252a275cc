-- Leak reports: tokens a secret scanner (GitHub's partner program, via POST /leaks on the webhook)
-- found in public. The webhook may only record them; the operator, which alone may revoke keys,
-- works through the pending ones (docs/secret-scanning.md). Never the token: its SHA-256, as
-- api_key_secrets keeps it, so a report is matched to a key by the same unique index.

CREATE TABLE leak_reports (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  reported_at  timestamptz NOT NULL DEFAULT now(),
  token_hash   bytea NOT NULL CHECK (length(token_hash) = 32),
  token_type   text NOT NULL CHECK (length(token_type) <= 256),
  url          text CHECK (length(url) <= 2048),
  source       text CHECK (length(source) <= 64),
  -- The caller's address as the webhook saw it (client-address.ts), for the audit trail.
  reported_by  text NOT NULL CHECK (length(reported_by) <= 64),
  processed_at timestamptz,
  -- What the operator did: 'revoked', 'already_revoked' or 'unknown' (no key has this hash).
  outcome      text CHECK (outcome IN ('revoked', 'already_revoked', 'unknown'))
);

CREATE INDEX leak_reports_pending ON leak_reports (id) WHERE processed_at IS NULL;

-- Why a key was revoked ('leaked', 'deleted', 'replaced'…), so status can tell a leak apart.
ALTER TABLE api_keys ADD COLUMN revoked_reason text CHECK (length(revoked_reason) <= 64);

-- keyward_operator has every table by the default privileges of 0003. The webhook appends and
-- nothing else: it cannot read back what was reported, or mark a report done.
GRANT INSERT ON leak_reports TO keyward_webhook;
