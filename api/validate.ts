import type { z } from 'zod';
import { type AccessPolicy, accessPolicySchema } from './accesspolicy.js';
import { type ApiKey, apiKeySchema } from './apikey.js';
import { type ServiceUser, serviceUserObjectSchema } from './serviceuser.js';

export type Parsed<T> = { ok: true; value: T } | { ok: false; errors: string[] };

/** `['spec', 'scopes', 0]` → `spec.scopes[0]`, the way the API server names fields. */
function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

function describeIssues(error: z.ZodError): string[] {
  return error.issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => `${fieldPath([...issue.path, key])}: unknown field`);
    }
    return [`${fieldPath(issue.path)}: ${issue.message}`];
  });
}

function parseWith<T>(schema: z.ZodType<T>, object: unknown): Parsed<T> {
  const result = schema.safeParse(object);
  return result.success
    ? { ok: true, value: result.data }
    : { ok: false, errors: describeIssues(result.error) };
}

/**
 * Parses a ServiceUser as the operator sees it. An object that slipped past admission (created
 * before a CRD upgrade, say) comes back as errors naming the fields, for Ready=False InvalidSpec.
 */
export function parseServiceUser(object: unknown): Parsed<ServiceUser> {
  return parseWith(serviceUserObjectSchema, object);
}

export function parseApiKey(object: unknown): Parsed<ApiKey> {
  return parseWith(apiKeySchema, object);
}

export function parseAccessPolicy(object: unknown): Parsed<AccessPolicy> {
  return parseWith(accessPolicySchema, object);
}

/**
 * The immutability rules the CRD enforces with CEL transition rules, for the operator's side:
 * it compares the spec with what it recorded and refuses to act on a changed identity.
 */
export function immutableFieldChanges(
  kind: 'ServiceUser' | 'ApiKey',
  before: { spec?: Record<string, unknown> },
  after: { spec?: Record<string, unknown> },
): string[] {
  const get = (o: { spec?: Record<string, unknown> }, path: string[]): unknown =>
    path.reduce<unknown>(
      (v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined),
      o.spec,
    );
  // spec.username is changeable (a rename); a ServiceUser has no immutable spec field.
  const fields =
    kind === 'ServiceUser'
      ? []
      : [
          ['serviceUserRef', 'name'],
          ['secret', 'name'],
        ];
  return fields
    .filter((path) => get(before, path) !== get(after, path))
    .map((path) => `spec.${path.join('.')}: field is immutable`);
}
