import { z } from 'zod';

export const GROUP = 'keyward.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Kubernetes object names a Secret or ServiceUser reference may carry (DNS-1123 subdomain). */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A condition as kstatus, Flux `wait` and Argo CD health read it. */
const conditionSchema = z
  .object({
    type: z
      .string()
      .max(316)
      .describe('Condition type: Ready, Suspended, Expired, Disabled, StoreAvailable.'),
    status: z.enum(['True', 'False', 'Unknown']).describe('True, False or Unknown.'),
    reason: z.string().max(1024).describe('Machine-readable CamelCase reason for the last transition.'),
    message: z.string().max(32768).describe('Human-readable detail.'),
    lastTransitionTime: z.iso.datetime({ offset: true }).describe('When the status last changed.'),
    observedGeneration: z
      .int()
      .min(0)
      .max(Number.MAX_SAFE_INTEGER)
      .optional()
      .describe('The metadata.generation this condition was computed from.'),
  })
  .describe('One observed aspect of the object.');
export type Condition = z.infer<typeof conditionSchema>;

export const conditionsSchema = z
  .array(conditionSchema)
  .max(16)
  .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] })
  .describe('Current state, one entry per condition type.');

export const observedGenerationSchema = z
  .int()
  .min(0)
  .max(Number.MAX_SAFE_INTEGER)
  .describe('The metadata.generation the operator last reconciled.');

/** The part of ObjectMeta the operator reads; the API server owns and validates the rest. */
export const objectMetaSchema = z.looseObject({
  name: z.string(),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  generation: z.number().optional(),
  resourceVersion: z.string().optional(),
  creationTimestamp: z.union([z.string(), z.date()]).optional(),
  deletionTimestamp: z.union([z.string(), z.date()]).optional(),
  finalizers: z.array(z.string()).optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});
