import { z } from 'zod';
import { labelSelectorSchema } from './accesspolicy.js';
import {
  API_VERSION,
  conditionsSchema,
  DNS_SUBDOMAIN,
  objectMetaSchema,
  observedGenerationSchema,
} from './common.js';
import { DURATION_PATTERN, NONZERO_DURATION_CEL, parseDuration } from './duration.js';
import { secretAnnotationsSchema, secretLabelsSchema } from './metadata.js';
import { quotaSchema, quotaStatusSchema, rateLimitListSchema } from './ratelimits.js';
import { scopeListSchema } from './serviceuser.js';

export const ROTATE_ANNOTATION = 'keyward.dev/rotate';
const DEFAULT_GRACE_PERIOD = '1h';
export const DEFAULT_TOKEN_KEY = 'token';

const dateTime = z.iso.datetime({ offset: true });

function duration(what: string, allowZero: boolean): z.ZodString {
  const base = z
    .string()
    .max(32)
    .regex(DURATION_PATTERN, `${what} must be a duration such as 90d, 12h, 30m or 1h30m`);
  if (allowZero) return base;
  return base
    .refine((d) => (parseDuration(d) ?? 0) > 0, `${what} must be greater than zero`)
    .meta({
      'x-kubernetes-validations': [
        { rule: NONZERO_DURATION_CEL, message: `${what} must be greater than zero` },
      ],
    });
}

const secretKeyName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[-._a-zA-Z0-9]+$/);

const RESTART_KINDS = ['Deployment', 'StatefulSet', 'DaemonSet'] as const;
export type RestartKind = (typeof RESTART_KINDS)[number];
/** Bounded so one ApiKey cannot make a reconcile patch an unbounded number of workloads. */
const MAX_RESTART_TARGETS = 16;

const TARGET_NAME_OR_SELECTOR = {
  rule: 'has(self.name) != has(self.selector)',
  message: 'a restart target names exactly one of name or selector',
};
const TARGET_SELECTOR_NOT_EMPTY = {
  rule:
    '!has(self.selector) || (has(self.selector.matchLabels) && size(self.selector.matchLabels) > 0) || ' +
    '(has(self.selector.matchExpressions) && size(self.selector.matchExpressions) > 0)',
  message: 'a restart target selector must not be empty (it would select every workload of the kind)',
  fieldPath: '.selector',
};

const restartTargetSchema = z
  .strictObject({
    kind: z.enum(RESTART_KINDS).describe('Deployment, StatefulSet or DaemonSet (group apps).'),
    name: z
      .string()
      .min(1)
      .max(253)
      .regex(DNS_SUBDOMAIN)
      .optional()
      .describe("Name of the workload in the ApiKey's namespace. Exclusive with selector."),
    selector: labelSelectorSchema
      .optional()
      .describe(
        "Every workload of the kind in the ApiKey's namespace whose labels match (not empty). Exclusive with name.",
      ),
  })
  .meta({ 'x-kubernetes-validations': [TARGET_NAME_OR_SELECTOR, TARGET_SELECTOR_NOT_EMPTY] })
  .superRefine((t, ctx) => {
    if ((t.name === undefined) === (t.selector === undefined))
      ctx.addIssue({ code: 'custom', message: TARGET_NAME_OR_SELECTOR.message });
    const s = t.selector;
    if (s && Object.keys(s.matchLabels ?? {}).length === 0 && (s.matchExpressions ?? []).length === 0)
      ctx.addIssue({ code: 'custom', path: ['selector'], message: TARGET_SELECTOR_NOT_EMPTY.message });
  })
  .describe('A workload restarted (as kubectl rollout restart does) after the token in the Secret changes.');
export type RestartTarget = z.infer<typeof restartTargetSchema>;

const PREVIOUS_KEY_DIFFERS = {
  rule: "!has(self.previousTokenKey) || self.previousTokenKey != (has(self.tokenKey) ? self.tokenKey : 'token')",
  message: 'spec.secret.previousTokenKey must differ from spec.secret.tokenKey',
  fieldPath: '.previousTokenKey',
};

export const apiKeySpecSchema = z
  .strictObject({
    serviceUserRef: z
      .strictObject({
        name: z
          .string()
          .min(1)
          .max(253)
          .regex(DNS_SUBDOMAIN)
          .describe('Name of a ServiceUser in this namespace.'),
      })
      .describe('The ServiceUser this key belongs to, in the same namespace. Immutable.'),
    description: z.string().max(256).optional().describe('Label for humans: what this key is for.'),
    scopes: scopeListSchema
      .optional()
      .describe(
        "Narrows the user's scopes for this key; each must be covered by the user's scopes. Unset: the key has " +
          "all of the user's scopes, evaluated at verification time.",
      ),
    expiresAt: dateTime
      .optional()
      .describe('Absolute RFC 3339 time after which the key stops verifying. Exclusive with ttl.'),
    ttl: duration('spec.ttl', false)
      .optional()
      .describe(
        'Lifetime counted from issue and from every rotation, e.g. 90d or 12h. Exclusive with expiresAt.',
      ),
    disabled: z.boolean().optional().describe('True stops the key from verifying until set back to false.'),
    rotation: z
      .strictObject({
        gracePeriod: duration('spec.rotation.gracePeriod', true)
          .optional()
          .describe(
            'How long the previous secret keeps working after a rotation (default 1h; 0s makes it invalid at once).',
          ),
        every: duration('spec.rotation.every', false)
          .optional()
          .describe('Rotate automatically this long after the current secret was issued, e.g. 30d.'),
      })
      .optional()
      .describe(
        'Rotation settings. Rotate on demand by changing the annotation keyward.dev/rotate to any new value.',
      ),
    secret: z
      .strictObject({
        name: z
          .string()
          .min(1)
          .max(253)
          .regex(DNS_SUBDOMAIN)
          .optional()
          .describe("Name of the Secret that receives the token (default: the ApiKey's name). Immutable."),
        tokenKey: secretKeyName.optional().describe('Data key of the token in the Secret (default: token).'),
        previousTokenKey: secretKeyName
          .optional()
          .describe(
            'If set, during the grace period after a rotation the Secret also holds the previous token under ' +
              'this data key, for consumers that must accept both; removed when the grace period ends. Must ' +
              'differ from tokenKey. A Secret re-created after loss never holds a previous token.',
          ),
        labels: secretLabelsSchema
          .optional()
          .describe(
            'Extra labels for the Secret: Kubernetes label syntax, no keyward.dev/ keys and no ' +
              'app.kubernetes.io/managed-by (keyward sets it).',
          ),
        annotations: secretAnnotationsSchema
          .optional()
          .describe(
            'Extra annotations for the Secret: Kubernetes annotation key syntax, no keyward.dev/ keys.',
          ),
      })
      .meta({ 'x-kubernetes-validations': [PREVIOUS_KEY_DIFFERS] })
      .superRefine((secret, ctx) => {
        if (
          secret.previousTokenKey !== undefined &&
          secret.previousTokenKey === (secret.tokenKey ?? DEFAULT_TOKEN_KEY)
        )
          ctx.addIssue({ code: 'custom', path: ['previousTokenKey'], message: PREVIOUS_KEY_DIFFERS.message });
      })
      .optional()
      .describe('Where the operator writes the token.'),
    restartTargets: z
      .array(restartTargetSchema)
      .max(MAX_RESTART_TARGETS)
      .optional()
      .describe(
        'Workloads in this namespace that read the token from environment variables or subPath mounts and ' +
          'need a rolling restart when it changes (volume mounts are refreshed by the kubelet). Each gets ' +
          'one restart per token change, after a short debounce; see docs/rotation.md.',
      ),
    rateLimits: rateLimitListSchema
      .optional()
      .describe(
        'Named limits on this key alone, each `limit` requests per `period`; a request over any of them gets 429 ' +
          "(the ServiceUser's rateLimits apply as well). See docs/rate-limits.md.",
      ),
    quota: quotaSchema.optional(),
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule: '!(has(self.expiresAt) && has(self.ttl))',
        message: 'spec.expiresAt and spec.ttl are mutually exclusive',
        fieldPath: '.ttl',
      },
      {
        rule: 'self.serviceUserRef.name == oldSelf.serviceUserRef.name',
        message: 'spec.serviceUserRef is immutable',
        fieldPath: '.serviceUserRef.name',
      },
      {
        rule: 'has(self.secret) && has(self.secret.name) ? (has(oldSelf.secret) && has(oldSelf.secret.name) && oldSelf.secret.name == self.secret.name) : !(has(oldSelf.secret) && has(oldSelf.secret.name))',
        message: 'spec.secret.name is immutable',
        fieldPath: '.secret',
      },
    ],
  })
  .superRefine((spec, ctx) => {
    if (spec.expiresAt !== undefined && spec.ttl !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['ttl'],
        message: 'spec.expiresAt and spec.ttl are mutually exclusive',
      });
    }
  })
  .describe(
    'Desired state of an API key. The token itself is generated by the operator and never appears here.',
  );
export type ApiKeySpec = z.infer<typeof apiKeySpecSchema>;

export const apiKeyStatusSchema = z
  .object({
    observedGeneration: observedGenerationSchema.optional(),
    conditions: conditionsSchema.optional(),
    keyId: z.string().max(64).optional().describe('Public identifier of the key; it survives rotation.'),
    tokenPrefix: z
      .string()
      .max(32)
      .optional()
      .describe('The first, non-secret characters of the current token, for logs and secret scanners.'),
    secretName: z.string().max(253).optional().describe('The Secret that holds the current token.'),
    issuedAt: dateTime.optional().describe('When the key was first issued.'),
    rotatedAt: dateTime
      .optional()
      .describe('When the current secret was created (equals issuedAt until the first rotation).'),
    expiresAt: dateTime.optional().describe('When the key stops verifying, if it expires.'),
    previousValidUntil: dateTime
      .optional()
      .describe('Until when the secret replaced by the last rotation keeps verifying.'),
    lastUsedAt: dateTime.optional().describe('Last successful verification, as recorded by the webhook.'),
    lastRotationRequest: z
      .string()
      .max(1024)
      .optional()
      .describe('The keyward.dev/rotate annotation value last acted upon.'),
    rotationRequests: z
      .array(z.string().regex(/^[0-9a-f]{16}$/))
      .max(16)
      .optional()
      .describe(
        'The first 16 hex digits of SHA-256 of the last 16 keyward.dev/rotate values the key answered, oldest first. A value listed here never rotates the key again (a GitOps revert to it is not a request).',
      ),
    lastRestart: z
      .strictObject({
        tokenVersion: z
          .string()
          .max(64)
          .describe(
            'The keyward.dev/token-version of the Secret this record answers. A later token restarts the targets again.',
          ),
        at: dateTime
          .optional()
          .describe('When the targets were restarted; unset when nothing needed a restart.'),
        targets: z
          .array(z.string().max(512))
          .max(256)
          .optional()
          .describe('The workloads restarted, as Kind/name.'),
      })
      .optional()
      .describe(
        'The token version restartTargets were last restarted for. A token issued first, or present before ' +
          'restartTargets was set, is recorded without a restart.',
      ),
    lastRotationReason: z
      .string()
      .max(64)
      .optional()
      .describe('Why the last rotation happened: Requested, Scheduled or SecretLost.'),
    quota: quotaStatusSchema.optional(),
  })
  .describe('Observed state, written by the operator.');
export type ApiKeyStatus = z.infer<typeof apiKeyStatusSchema>;

export const apiKeySchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('ApiKey'),
  metadata: objectMetaSchema,
  spec: apiKeySpecSchema,
  status: apiKeyStatusSchema.optional(),
});
export type ApiKey = z.infer<typeof apiKeySchema>;

/** The Secret name in effect. */
export function secretNameOf(key: Pick<ApiKey, 'metadata' | 'spec'>): string {
  return key.spec.secret?.name ?? key.metadata.name;
}

/** The grace period in effect, in milliseconds. */
export function gracePeriodMs(spec: ApiKeySpec): number {
  return parseDuration(spec.rotation?.gracePeriod ?? DEFAULT_GRACE_PERIOD) ?? 0;
}
