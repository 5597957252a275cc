import { z } from 'zod';
import { DURATION_PATTERN, NONZERO_DURATION_CEL, parseDuration } from './duration.js';

/** Limits per list: each costs a counter per request, and a header entry per answer. */
const MAX_RATE_LIMITS = 8;
/** Large enough for any real quota, small enough that counts stay exact in a double and a bigint. */
const MAX_LIMIT = 1_000_000_000;
/**
 * A limit name appears in the RateLimit headers as a structured-field string and in metrics,
 * so it is held to a DNS-label-like grammar: nothing that needs escaping.
 */
const LIMIT_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function windowField(field: string): z.ZodString {
  const message = `${field} must be greater than zero`;
  return z
    .string()
    .max(32)
    .regex(DURATION_PATTERN, `${field} must be a duration such as 1s, 1m, 1h or 30d`)
    .refine((d) => (parseDuration(d) ?? 0) > 0, message)
    .meta({ 'x-kubernetes-validations': [{ rule: NONZERO_DURATION_CEL, message }] });
}

function countField(field: string): z.ZodInt {
  return z
    .int(`${field} must be a whole number`)
    .min(1, `${field} must be at least 1`)
    .max(MAX_LIMIT, `${field} must be at most ${MAX_LIMIT}`);
}

const rateLimitSchema = z
  .strictObject({
    name: z
      .string()
      .min(1)
      .max(63)
      .regex(LIMIT_NAME, 'a limit name is lowercase letters, digits and inner "-"')
      .describe('Name of the limit, unique in the list; clients see it in the RateLimit headers.'),
    limit: countField('limit').describe('Requests allowed per period (at least 1).'),
    period: windowField('period').describe(
      'Length of the window the limit counts in, e.g. 1s, 1m, 1h; windows start at multiples of it since the Unix epoch.',
    ),
  })
  .describe('A named limit: at most `limit` allowed requests per `period`.');

const UNIQUE_NAMES_MESSAGE = 'limit names must be unique';

/** `spec.rateLimits` of an ApiKey (per key) or a ServiceUser (shared by all its keys). */
export const rateLimitListSchema = z
  .array(rateLimitSchema)
  .max(MAX_RATE_LIMITS)
  .superRefine((limits, ctx) => {
    const seen = new Set<string>();
    limits.forEach((l, i) => {
      if (seen.has(l.name))
        ctx.addIssue({ code: 'custom', path: [i, 'name'], message: UNIQUE_NAMES_MESSAGE });
      seen.add(l.name);
    });
  })
  // A list-map keyed by name: the API server refuses a duplicate name (naming it) and server-side
  // apply merges entries by name, as for containers.
  .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] });
export type RateLimit = z.infer<typeof rateLimitSchema>;

/** `spec.quota` of an ApiKey. */
export const quotaSchema = z
  .strictObject({
    limit: countField('spec.quota.limit').describe('Allowed requests in total, or per refill period.'),
    refillEvery: windowField('spec.quota.refillEvery')
      .optional()
      .describe(
        'Restore the full quota this often, e.g. 1d or 30d; periods start at multiples of it since the Unix epoch ' +
          '(1d refills at 00:00 UTC). Unset: the quota never refills, and an exhausted key stays refused until the ' +
          'limit is raised.',
      ),
  })
  .describe('Total uses of the key. Remaining uses are shown in status.quota.');
export type Quota = z.infer<typeof quotaSchema>;

export const quotaStatusSchema = z
  .strictObject({
    limit: z.int().min(0).max(MAX_LIMIT).describe('The quota in effect.'),
    remaining: z
      .int()
      .min(0)
      .max(MAX_LIMIT)
      .describe(
        'Uses left as the credential store counted them when status was written; webhook replicas report their ' +
          'counts every KEYWARD_RATE_LIMIT_SYNC_INTERVAL, and status follows within a minute.',
      ),
    resetsAt: z.iso
      .datetime({ offset: true })
      .optional()
      .describe('When the quota refills next; unset for a quota that never refills.'),
  })
  .describe('Remaining uses of spec.quota.');
export type QuotaStatus = z.infer<typeof quotaStatusSchema>;

/** A limit as the store and the webhook hold it: the window in milliseconds, already parsed. */
export interface LimitDefinition {
  readonly name: string;
  readonly limit: number;
  /** Window length in ms; null: the window never ends (a quota without refill). */
  readonly periodMs: number | null;
}

export function rateLimitDefinitions(limits: readonly RateLimit[] | undefined): LimitDefinition[] {
  return (limits ?? []).map((l) => ({
    name: l.name,
    limit: l.limit,
    periodMs: parseDuration(l.period) ?? 0,
  }));
}

export function quotaDefinition(quota: Quota | undefined): LimitDefinition | null {
  if (!quota) return null;
  return {
    name: 'quota',
    limit: quota.limit,
    periodMs: quota.refillEvery === undefined ? null : (parseDuration(quota.refillEvery) ?? 0),
  };
}
