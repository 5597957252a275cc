import { z } from 'zod';
import { actAsSchema } from './actas.js';
import { API_VERSION, conditionsSchema, objectMetaSchema, observedGenerationSchema } from './common.js';
import { rateLimitListSchema } from './ratelimits.js';
import { SCOPE_MAX_LENGTH, SCOPE_PATTERN } from './scopes.js';

export const USERNAME_PATTERN = /^[A-Za-z0-9]+([-_][A-Za-z0-9]+)*$/;
export const USERNAME_MAX_LENGTH = 63;

/** Groups the API server reserves for itself; no ServiceUser or AccessPolicy may name one. */
export const RESERVED_GROUP_PREFIX = 'system:';

const RESERVED_GROUP_MESSAGE = `group names starting with "${RESERVED_GROUP_PREFIX}" are reserved for Kubernetes`;

/** A group name a ServiceUser may carry and an AccessPolicy may grant: never `system:…`. */
export const groupNameSchema = z
  .string()
  .min(1)
  .max(253)
  .refine((g) => !g.startsWith(RESERVED_GROUP_PREFIX), RESERVED_GROUP_MESSAGE)
  .meta({
    'x-kubernetes-validations': [
      { rule: `!self.startsWith('${RESERVED_GROUP_PREFIX}')`, message: RESERVED_GROUP_MESSAGE },
    ],
  })
  .describe('A group name; names starting with system: are refused.');

export const scopeListSchema = z
  .array(
    z
      .string()
      .max(SCOPE_MAX_LENGTH)
      .regex(SCOPE_PATTERN)
      .describe('A scope: `name(:name)*`, optionally ending in `:*`, or `*` for everything.'),
  )
  .max(64);

export const serviceUserSpecSchema = z
  .strictObject({
    username: z
      .string()
      .min(1)
      .max(USERNAME_MAX_LENGTH)
      .regex(USERNAME_PATTERN)
      .optional()
      .describe(
        'Login name of the service user, unique across the whole credential store. Defaults to metadata.name. ' +
          'ASCII letters and digits in runs separated by single "-" or "_", 1-63 characters. Changing it renames ' +
          'the user: its keys verify under the new name once it is stored, and the old name is released then. ' +
          'Without an AccessPolicy granting more, it must start with "<namespace>_".',
      ),
    description: z
      .string()
      .max(1024)
      .optional()
      .describe('Free text: which tools use this user and who maintains them.'),
    contact: z
      .strictObject({
        name: z.string().min(1).max(256).optional().describe('Name of the maintainer or team.'),
        email: z
          .string()
          .max(254)
          .regex(/^[^@\s]+@[^@\s]+\.[^@\s]+$/)
          .optional()
          .describe('E-mail address of the maintainer or team.'),
      })
      .optional()
      .describe('Who to contact about this service user.'),
    groups: z
      .array(groupNameSchema)
      .max(64)
      .optional()
      .describe(
        'Groups passed on with the identity (X-Keyward-Groups header; on TokenReview with the keyward: prefix). ' +
          'Only groups an AccessPolicy grants this namespace; system: groups never.',
      ),
    scopes: scopeListSchema
      .optional()
      .describe(
        'Scopes this user grants to its keys, e.g. `projects:alpha`, `projects:*`. Only `<namespace>`, ' +
          '`<namespace>:…` and scopes an AccessPolicy grants this namespace.',
      ),
    suspended: z
      .boolean()
      .optional()
      .describe('True rejects every key of this user at once; false reactivates them.'),
    actAs: actAsSchema('ServiceUser').optional(),
    maxKeys: z
      .int()
      .min(0)
      .max(10_000)
      .optional()
      .describe(
        'Most live (not revoked) keys this user may have, enforced by the credential store when a key is issued; further ApiKeys get Ready=False, reason=MaxKeysExceeded, and are issued within a minute of a slot freeing (a key deleted or revoked).',
      ),
    rateLimits: rateLimitListSchema
      .optional()
      .describe(
        'Named limits shared by all keys of this user, each `limit` requests per `period`: every key counts ' +
          'against the same budget. See docs/rate-limits.md.',
      ),
  })
  .describe('Desired state of a service user: a non-human identity that owns ApiKeys.');
export type ServiceUserSpec = z.infer<typeof serviceUserSpecSchema>;

export const serviceUserStatusSchema = z
  .object({
    observedGeneration: observedGenerationSchema.optional(),
    conditions: conditionsSchema.optional(),
    username: z.string().optional().describe('The username in effect.'),
    userId: z.string().optional().describe('Identifier of the user in the credential store.'),
    keys: z
      .int()
      .min(0)
      .max(Number.MAX_SAFE_INTEGER)
      .optional()
      .describe('ApiKeys of this user, revoked ones excluded.'),
    activeKeys: z
      .int()
      .min(0)
      .max(Number.MAX_SAFE_INTEGER)
      .optional()
      .describe('ApiKeys of this user that currently verify.'),
  })
  .describe('Observed state, written by the operator.');
export type ServiceUserStatus = z.infer<typeof serviceUserStatusSchema>;

/** The whole object as the operator parses it; the CRD root rule about metadata.name lives in crd.ts. */
const serviceUserSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('ServiceUser'),
  metadata: objectMetaSchema,
  spec: serviceUserSpecSchema,
  status: serviceUserStatusSchema.optional(),
});
export type ServiceUser = z.infer<typeof serviceUserSchema>;

/** The username in effect: spec.username, or metadata.name when unset. */
export function effectiveUsername(user: Pick<ServiceUser, 'metadata' | 'spec'>): string {
  return user.spec.username ?? user.metadata.name;
}

/** metadata.name stands in for an unset username, so it must then follow the username rule too. */
export const SERVICE_USER_NAME_RULE = {
  rule: `has(self.spec.username) || (size(self.metadata.name) <= ${USERNAME_MAX_LENGTH} && self.metadata.name.matches('${USERNAME_PATTERN.source}'))`,
  message:
    'metadata.name is not a valid username (letters and digits separated by single - or _); set spec.username',
  fieldPath: '.metadata.name',
} as const;

/** The object schema plus the metadata.name rule the CRD enforces at its root. */
export const serviceUserObjectSchema = serviceUserSchema.superRefine((user, ctx) => {
  const name = user.metadata.name;
  if (
    user.spec.username === undefined &&
    (name.length > USERNAME_MAX_LENGTH || !USERNAME_PATTERN.test(name))
  ) {
    ctx.addIssue({ code: 'custom', path: ['metadata', 'name'], message: SERVICE_USER_NAME_RULE.message });
  }
});
