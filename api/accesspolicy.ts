import { z } from 'zod';
import { actAsSchema, USERNAME_GLOB_PATTERN } from './actas.js';
import { API_VERSION, objectMetaSchema } from './common.js';
import { DURATION_PATTERN, NONZERO_DURATION_CEL, parseDuration } from './duration.js';
import { SCOPE_MAX_LENGTH, SCOPE_PATTERN } from './scopes.js';
import { groupNameSchema, USERNAME_MAX_LENGTH } from './serviceuser.js';

/** A namespace name (DNS-1123 label), as a policy lists it. */
const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

// Label keys and values as Kubernetes defines them; the API server checks the selector again when
// it is used, but a policy that can never match should fail at admission, not silently.
const LABEL_KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

const labelKey = z.string().min(1).max(317).regex(LABEL_KEY);
const labelValue = z.string().max(63).regex(LABEL_VALUE);

const LABEL_SELECTOR_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;

const VALUES_RULE = {
  rule: "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0",
  message: 'values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist',
  fieldPath: '.values',
};

const labelSelectorRequirementSchema = z
  .strictObject({
    key: labelKey.describe('The label key the requirement applies to.'),
    operator: z
      .enum(LABEL_SELECTOR_OPERATORS)
      .describe('How the key relates to the values: In, NotIn, Exists or DoesNotExist.'),
    values: z
      .array(labelValue.describe('A label value.'))
      .max(64)
      .optional()
      .describe('Label values; non-empty for In and NotIn, empty for Exists and DoesNotExist.'),
  })
  .meta({ 'x-kubernetes-validations': [VALUES_RULE] })
  .superRefine((req, ctx) => {
    const needsValues = req.operator === 'In' || req.operator === 'NotIn';
    const hasValues = (req.values?.length ?? 0) > 0;
    if (needsValues !== hasValues)
      ctx.addIssue({ code: 'custom', path: ['values'], message: VALUES_RULE.message });
  })
  .describe('A label requirement: a key, an operator and, for In and NotIn, values.');

/** A standard Kubernetes LabelSelector; all of its requirements must hold. */
export const labelSelectorSchema = z
  .strictObject({
    matchLabels: z
      .record(labelKey, labelValue)
      .optional()
      .describe('Labels that must be present with exactly these values.'),
    matchExpressions: z
      .array(labelSelectorRequirementSchema)
      .max(32)
      .optional()
      .describe('Requirements that must all hold.'),
  })
  .describe(
    'Selects namespaces by label, as a Deployment selects Pods. An empty selector ({}) selects every namespace.',
  );
export type LabelSelector = z.infer<typeof labelSelectorSchema>;

const maxKeyLifetime = z
  .string()
  .max(32)
  .regex(DURATION_PATTERN, 'spec.maxKeyLifetime must be a duration such as 90d, 12h, 30m or 1h30m')
  .refine((d) => (parseDuration(d) ?? 0) > 0, 'spec.maxKeyLifetime must be greater than zero')
  .meta({
    'x-kubernetes-validations': [
      { rule: NONZERO_DURATION_CEL, message: 'spec.maxKeyLifetime must be greater than zero' },
    ],
  });

const ACCESS_POLICY_SELECTS_RULE = {
  rule: 'has(self.namespaceSelector) || has(self.namespaces)',
  message:
    'spec.namespaceSelector or spec.namespaces is required: a policy must say which namespaces it grants',
  fieldPath: '.namespaces',
} as const;

export const accessPolicySpecSchema = z
  .strictObject({
    namespaceSelector: labelSelectorSchema
      .optional()
      .describe(
        'Namespaces this policy applies to, by label. Combined with spec.namespaces, a namespace matching either is selected.',
      ),
    namespaces: z
      .array(z.string().min(1).max(63).regex(NAMESPACE_NAME).describe('A namespace name.'))
      .max(256)
      .optional()
      .describe('Namespaces this policy applies to, by name.'),
    usernames: z
      .array(
        z
          .string()
          .min(1)
          .max(USERNAME_MAX_LENGTH)
          .regex(USERNAME_GLOB_PATTERN)
          .describe('A username pattern; * matches any characters, e.g. ci-* or *.'),
      )
      .max(64)
      .optional()
      .describe(
        'Usernames ServiceUsers in the selected namespaces may claim, besides their own <namespace>_* names.',
      ),
    scopes: z
      .array(
        z
          .string()
          .max(SCOPE_MAX_LENGTH)
          .regex(SCOPE_PATTERN)
          .describe(
            'A scope pattern: projects:alpha grants exactly that scope, projects:* every scope under projects:, * everything.',
          ),
      )
      .max(64)
      .optional()
      .describe(
        'Scopes ServiceUsers and ApiKeys in the selected namespaces may hold, besides their own <namespace> and <namespace>:* scopes.',
      ),
    groups: z
      .array(groupNameSchema)
      .max(64)
      .optional()
      .describe(
        'Group names ServiceUsers in the selected namespaces may carry. On TokenReview every group is prefixed (keyward: by default).',
      ),
    maxKeyLifetime: maxKeyLifetime
      .optional()
      .describe(
        'Longest lifetime of an ApiKey in the selected namespaces, counted from issue or rotation (e.g. 90d). Keys ' +
          'must then set ttl or expiresAt within it. When several policies set one, the longest applies; unset ' +
          'here leaves the others in force.',
      ),
    kubernetesAuthentication: z
      .boolean()
      .default(false)
      .describe(
        'Whether keys of ServiceUsers in the selected namespaces authenticate to the Kubernetes API (TokenReview). Default false.',
      ),
    actAs: actAsSchema('AccessPolicy').optional(),
  })
  .meta({ 'x-kubernetes-validations': [ACCESS_POLICY_SELECTS_RULE] })
  .superRefine((spec, ctx) => {
    if (spec.namespaceSelector === undefined && spec.namespaces === undefined) {
      ctx.addIssue({ code: 'custom', path: ['namespaces'], message: ACCESS_POLICY_SELECTS_RULE.message });
    }
  })
  .describe(
    'What ServiceUsers and ApiKeys in the selected namespaces may claim. Several policies selecting one namespace add up.',
  );
export type AccessPolicySpec = z.infer<typeof accessPolicySpecSchema>;

export const accessPolicySchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('AccessPolicy'),
  metadata: objectMetaSchema,
  spec: accessPolicySpecSchema,
});
export type AccessPolicy = z.infer<typeof accessPolicySchema>;
