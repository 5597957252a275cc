-- keyward credential store, version 2: what the AccessPolicies of a user's namespace allow.
-- Written by the operator from the grants, read by the webhook at every verification.

-- Whether the user's keys authenticate to the Kubernetes API (TokenReview). Off unless a policy
-- grants it: after this migration no key is a Kubernetes credential until the operator has
-- re-evaluated its user against the policies.
ALTER TABLE service_users ADD COLUMN kubernetes_authentication boolean NOT NULL DEFAULT false;

-- A user or key whose spec asks for more than the grants: none of its keys verify until the spec
-- or the policies change. Only the granted subset of scopes and groups is kept meanwhile.
ALTER TABLE service_users ADD COLUMN not_permitted boolean NOT NULL DEFAULT false;
ALTER TABLE api_keys ADD COLUMN not_permitted boolean NOT NULL DEFAULT false;

-- Kubernetes reserves system: groups. Whatever writes here, none is ever stored; rows written
-- before this version lose theirs.
CREATE FUNCTION keyward_without_system_groups(groups text[]) RETURNS boolean
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT NOT EXISTS (SELECT 1 FROM unnest(groups) AS g WHERE g LIKE 'system:%') $$;

UPDATE service_users
   SET groups = ARRAY(SELECT g FROM unnest(groups) AS g WHERE g NOT LIKE 'system:%'), updated_at = now()
 WHERE NOT keyward_without_system_groups(groups);

ALTER TABLE service_users ADD CONSTRAINT service_users_no_system_groups
  CHECK (keyward_without_system_groups(groups));

-- Webhooks drop their whole cache on a payload they do not know, delivered at commit: no entry
-- read before this migration (with Kubernetes authentication or a system: group) survives it.
SELECT pg_notify('keyward_changes', 'migration 0002_access_policy');
