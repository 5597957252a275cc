-- Rate limits and quotas (docs/rate-limits.md). Definitions are the operator's: one row per
-- ServiceUser or ApiKey that sets any, keyed by the object's Kubernetes uid so the operator can
-- write them before the user or key exists in the store (a key is never verifiable without its
-- limits). Counters are the webhooks': each replica counts locally and adds its counts here in
-- batches, reading back everyone's total.

CREATE TABLE rate_limit_definitions (
  uid         text PRIMARY KEY CHECK (char_length(uid) <= 128),
  kind        text NOT NULL CHECK (kind IN ('ServiceUser', 'ApiKey')),
  -- [{name, limit, periodMs}], already parsed: the webhook does no duration parsing.
  rate_limits jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(rate_limits) = 'array'),
  -- {name: 'quota', limit, periodMs (null: never refills)} or NULL.
  quota       jsonb CHECK (quota IS NULL OR jsonb_typeof(quota) = 'object'),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per limit and subject: the current window only. A later window replaces the count,
-- so rows never pile up per window. `subject` is api_keys.id or service_users.id; no foreign
-- key, the operator removes a subject's rows when it goes.
CREATE TABLE rate_limit_counters (
  subject      uuid NOT NULL,
  name         text NOT NULL CHECK (char_length(name) <= 80),
  window_start timestamptz NOT NULL,
  count        bigint NOT NULL CHECK (count >= 0),
  PRIMARY KEY (subject, name)
);

-- The webhook reads definitions (lookup) and upserts counters; nothing else.
GRANT SELECT ON rate_limit_definitions TO keyward_webhook;
GRANT SELECT, INSERT, UPDATE ON rate_limit_counters TO keyward_webhook;
