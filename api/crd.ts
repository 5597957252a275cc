import { stringify } from 'yaml';
import { z } from 'zod';
import { accessPolicySpecSchema } from './accesspolicy.js';
import { apiKeySpecSchema, apiKeyStatusSchema } from './apikey.js';
import { GROUP, VERSION } from './common.js';
import { SERVICE_USER_NAME_RULE, serviceUserSpecSchema, serviceUserStatusSchema } from './serviceuser.js';

type JsonSchema = { [key: string]: unknown };

/**
 * A zod schema as a structural OpenAPI v3 schema the API server accepts: every node typed, no $ref,
 * no `additionalProperties: false` (structural schemas prune unknown fields; kubectl and
 * client-side apply reject them with strict field validation), no regex where a format says it.
 */
export function structuralSchema(schema: z.ZodType): JsonSchema {
  const json = z.toJSONSchema(schema, {
    target: 'openapi-3.0',
    io: 'input',
    unrepresentable: 'throw',
  }) as JsonSchema;
  delete json.$schema;
  return clean(json, '');
}

function clean(node: JsonSchema, path: string): JsonSchema {
  if ('$ref' in node || 'anyOf' in node || 'oneOf' in node || 'allOf' in node) {
    throw new Error(`schema at ${path || '/'} is not structural: ${JSON.stringify(node).slice(0, 200)}`);
  }
  if (typeof node.type !== 'string') throw new Error(`schema at ${path || '/'} has no type`);
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === 'additionalProperties' && value === false) continue;
    // zod emits a huge regex for date-time; the API server validates the format itself.
    if (key === 'pattern' && node.format === 'date-time') continue;
    // Safe-integer bounds zod adds by default say nothing to a reader.
    if (
      (key === 'maximum' && value === Number.MAX_SAFE_INTEGER) ||
      (key === 'minimum' && value === Number.MIN_SAFE_INTEGER)
    )
      continue;
    if (key === 'properties') {
      out.properties = Object.fromEntries(
        Object.entries(value as Record<string, JsonSchema>).map(([name, child]) => [
          name,
          clean(child, `${path}.${name}`),
        ]),
      );
    } else if (key === 'items') {
      out.items = clean(value as JsonSchema, `${path}[]`);
    } else if (key === 'additionalProperties' && typeof value === 'object' && value !== null) {
      out.additionalProperties = clean(value as JsonSchema, `${path}{}`);
    } else {
      out[key] = value;
    }
  }
  return out;
}

interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'boolean' | 'date';
  jsonPath: string;
  description: string;
  priority?: number;
}

const READY_COLUMN: PrinterColumn = {
  name: 'Ready',
  type: 'string',
  jsonPath: '.status.conditions[?(@.type=="Ready")].status',
  description: 'Whether the object is reconciled and usable.',
};
const AGE_COLUMN: PrinterColumn = {
  name: 'Age',
  type: 'date',
  jsonPath: '.metadata.creationTimestamp',
  description: 'Age of the object.',
};

interface CrdInput {
  kind: string;
  plural: string;
  shortName: string;
  description: string;
  /** Default Namespaced. */
  scope?: 'Namespaced' | 'Cluster';
  spec: z.ZodType;
  /** Omitted for kinds the operator only reads: no status, no status subresource. */
  status?: z.ZodType;
  rootRules?: ReadonlyArray<Record<string, string>>;
  columns: PrinterColumn[];
}

function customResourceDefinition(input: CrdInput): JsonSchema {
  const root: JsonSchema = {
    type: 'object',
    description: input.description,
    required: ['spec'],
    properties: {
      apiVersion: {
        type: 'string',
        description: 'Versioned schema of this representation: keyward.dev/v1alpha1.',
      },
      kind: { type: 'string', description: `The kind of this object: ${input.kind}.` },
      // Declared so a root CEL rule can name metadata.name as its fieldPath.
      metadata: { type: 'object', properties: { name: { type: 'string' } } },
      spec: structuralSchema(input.spec),
      ...(input.status && { status: structuralSchema(input.status) }),
    },
  };
  if (input.rootRules) root['x-kubernetes-validations'] = input.rootRules;
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${input.plural}.${GROUP}`,
      labels: { 'app.kubernetes.io/name': 'keyward', 'app.kubernetes.io/part-of': 'keyward' },
    },
    spec: {
      group: GROUP,
      scope: input.scope ?? 'Namespaced',
      names: {
        kind: input.kind,
        listKind: `${input.kind}List`,
        plural: input.plural,
        singular: input.kind.toLowerCase(),
        shortNames: [input.shortName],
        categories: ['keyward'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          ...(input.status && { subresources: { status: {} } }),
          additionalPrinterColumns: input.columns,
          schema: { openAPIV3Schema: root },
        },
      ],
    },
  };
}

function serviceUserCrd(): JsonSchema {
  return customResourceDefinition({
    kind: 'ServiceUser',
    plural: 'serviceusers',
    shortName: 'su',
    description:
      'A non-human identity with scopes and groups that owns ApiKeys. Reconciled into the keyward credential store.',
    spec: serviceUserSpecSchema,
    status: serviceUserStatusSchema,
    rootRules: [SERVICE_USER_NAME_RULE],
    columns: [
      {
        name: 'Username',
        type: 'string',
        jsonPath: '.status.username',
        description: 'The username in effect.',
      },
      {
        name: 'Suspended',
        type: 'boolean',
        jsonPath: '.spec.suspended',
        description: 'Whether all keys are rejected.',
      },
      { name: 'Keys', type: 'integer', jsonPath: '.status.keys', description: 'ApiKeys of this user.' },
      READY_COLUMN,
      {
        name: 'Active',
        type: 'integer',
        jsonPath: '.status.activeKeys',
        description: 'Keys that verify.',
        priority: 1,
      },
      AGE_COLUMN,
    ],
  });
}

function apiKeyCrd(): JsonSchema {
  return customResourceDefinition({
    kind: 'ApiKey',
    plural: 'apikeys',
    shortName: 'ak',
    description:
      'An API key of a ServiceUser. The operator generates the token, writes it into a Secret and stores only its hash.',
    spec: apiKeySpecSchema,
    status: apiKeyStatusSchema,
    columns: [
      {
        name: 'User',
        type: 'string',
        jsonPath: '.spec.serviceUserRef.name',
        description: 'The owning ServiceUser.',
      },
      { name: 'Key-ID', type: 'string', jsonPath: '.status.keyId', description: 'Public key identifier.' },
      READY_COLUMN,
      // A string, not a date: kubectl renders future dates as <invalid>.
      {
        name: 'Expires',
        type: 'string',
        jsonPath: '.status.expiresAt',
        description: 'When the key stops verifying.',
      },
      {
        name: 'Last-Used',
        type: 'date',
        jsonPath: '.status.lastUsedAt',
        description: 'Last successful verification.',
      },
      {
        name: 'Key-Age',
        type: 'date',
        jsonPath: '.status.rotatedAt',
        description: 'Time since issue or last rotation.',
      },
      {
        name: 'Prefix',
        type: 'string',
        jsonPath: '.status.tokenPrefix',
        description: 'Token prefix.',
        priority: 1,
      },
      {
        name: 'Secret',
        type: 'string',
        jsonPath: '.status.secretName',
        description: 'Secret holding the token.',
        priority: 1,
      },
      AGE_COLUMN,
    ],
  });
}

function accessPolicyCrd(): JsonSchema {
  return customResourceDefinition({
    kind: 'AccessPolicy',
    plural: 'accesspolicies',
    shortName: 'ap',
    scope: 'Cluster',
    description:
      'Written by cluster admins only: what ServiceUsers and ApiKeys in the selected namespaces may claim ' +
      '(usernames, scopes, groups, key lifetime, Kubernetes authentication). Without one, a namespace gets only ' +
      'its own <namespace>_* usernames and <namespace>:* scopes, no groups and no Kubernetes authentication.',
    spec: accessPolicySpecSchema,
    columns: [
      {
        name: 'Namespaces',
        type: 'string',
        jsonPath: '.spec.namespaces',
        description: 'Namespaces selected by name.',
      },
      {
        name: 'Kube-Auth',
        type: 'boolean',
        jsonPath: '.spec.kubernetesAuthentication',
        description: 'Whether keys authenticate to the Kubernetes API.',
      },
      {
        name: 'Max-Lifetime',
        type: 'string',
        jsonPath: '.spec.maxKeyLifetime',
        description: 'Longest key lifetime.',
      },
      {
        name: 'Selector',
        type: 'string',
        jsonPath: '.spec.namespaceSelector',
        description: 'Namespaces selected by label.',
        priority: 1,
      },
      AGE_COLUMN,
    ],
  });
}

/** Every CRD of keyward, as file name → YAML, in a stable order. */
export function crdFiles(): Array<{ file: string; yaml: string }> {
  const header = '# Generated by `keyward crds` from the zod schemas in api/. Do not edit.\n';
  return [
    { file: 'keyward.dev_serviceusers.yaml', yaml: header + stringify(serviceUserCrd(), { lineWidth: 0 }) },
    { file: 'keyward.dev_apikeys.yaml', yaml: header + stringify(apiKeyCrd(), { lineWidth: 0 }) },
    {
      file: 'keyward.dev_accesspolicies.yaml',
      yaml: header + stringify(accessPolicyCrd(), { lineWidth: 0 }),
    },
  ];
}
