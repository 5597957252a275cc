-- Acting on behalf of a subject (spec.actAs of a ServiceUser): the username globs of other
-- ServiceUsers and the external subject id globs its keys may name in the subject header. Written
-- by the operator only within what the namespace's AccessPolicies grant; read by the webhook with
-- each key. Empty (the default, and every row before this version) means no acting at all.
ALTER TABLE service_users ADD COLUMN act_as_service_users text[] NOT NULL DEFAULT '{}'
  CHECK (cardinality(act_as_service_users) <= 64);
ALTER TABLE service_users ADD COLUMN act_as_external_subjects text[] NOT NULL DEFAULT '{}'
  CHECK (cardinality(act_as_external_subjects) <= 64);

-- The webhook already reads service_users (0003); a subject is looked up by username through the
-- existing unique index service_users_username_live.
