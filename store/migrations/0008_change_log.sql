-- keyward credential store: the change log. Every verification-affecting change is appended here
-- in the same transaction that makes it (store/change-log.ts, the one writer), and announced with
-- a NOTIFY carrying its seq. NOTIFY is the fast path; this table is what a webhook reads to catch
-- up after a gap, and the only feed a webhook on a streaming replica has (NOTIFY is not replicated).
--
-- Writers serialise on a transaction-scoped advisory lock before taking a seq, so seq order is
-- commit order and a reader that has seen seq N has seen every committed change below N; holes are
-- rolled-back transactions, never changes still in flight.
--
-- Retention: the operator leader deletes rows older than KEYWARD_CHANGE_LOG_RETENTION (default
-- 24h), always keeping the newest row; a webhook whose last applied seq is gone drops its cache.

CREATE TABLE change_log (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- The change as store/changes.ts encodes it (entity, op, ids): no secret, no hash.
  change jsonb NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX change_log_recorded_at ON change_log (recorded_at);

-- Append-only for the operator (pruning deletes); the webhook reads it and nothing more.
REVOKE UPDATE ON change_log FROM keyward_operator;
GRANT SELECT ON change_log TO keyward_webhook;
