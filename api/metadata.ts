import { z } from 'zod';

/**
 * Label and annotation syntax as the API server enforces it on a Secret's metadata, checked when an
 * ApiKey is admitted instead of when the operator writes the Secret (a 422 there would only be a
 * condition on the key; here `kubectl apply` refuses it and names the field).
 */

/** A qualified name's name part: ≤63 characters, alphanumeric at both ends, `-_.` inside. */
const NAME = '[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?';
/** A DNS-1123 subdomain; its ≤253 length is checked separately. */
const PREFIX = '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*';
const QUALIFIED_NAME_PATTERN = new RegExp(`^(${PREFIX}/)?${NAME}$`);
const PREFIX_MAX_LENGTH = 253;
const LABEL_VALUE_PATTERN = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_VALUE_MAX_LENGTH = 63;
/** Keys under keyward.dev (and its subdomains) carry keyward's own state, e.g. the rotation request. */
const RESERVED_KEY_PATTERN = /^([^/]*\.)?keyward\.dev\//;
/** Labels keyward sets on every Secret it writes; a user value would be overwritten. */
const OPERATOR_LABELS = ['app.kubernetes.io/managed-by'] as const;
/** Entries per map: bounds the CEL cost estimate, and far more than a Secret needs. */
const MAX_ENTRIES = 64;

const KEY_SYNTAX_MESSAGE =
  'keys must be qualified names: an optional DNS subdomain prefix (at most 253 characters) and "/", ' +
  'then at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit';
const RESERVED_MESSAGE = 'keys under keyward.dev/ are reserved for keyward';

function keyProblem(key: string): string | undefined {
  if (!QUALIFIED_NAME_PATTERN.test(key) || key.indexOf('/') > PREFIX_MAX_LENGTH)
    return `key ${JSON.stringify(key)} is invalid: ${KEY_SYNTAX_MESSAGE}`;
  if (RESERVED_KEY_PATTERN.test(key)) return `key ${JSON.stringify(key)} is invalid: ${RESERVED_MESSAGE}`;
  return undefined;
}

/** A regex as a CEL single-quoted string body: CEL, unlike JS, has no `\.` escape, so backslashes double. */
function cel(pattern: RegExp): string {
  return pattern.source.replaceAll('\\', '\\\\');
}

/** CEL rules on a map whose keys must be qualified names outside keyward.dev/. */
function keyRules(extra: Array<{ rule: string; message: string }> = []): Array<Record<string, string>> {
  return [
    {
      rule: `self.all(k, k.matches('${cel(QUALIFIED_NAME_PATTERN)}') && k.indexOf('/') <= ${PREFIX_MAX_LENGTH})`,
      message: KEY_SYNTAX_MESSAGE,
    },
    { rule: `self.all(k, !k.matches('${cel(RESERVED_KEY_PATTERN)}'))`, message: RESERVED_MESSAGE },
    ...extra,
  ];
}

/** A map of label or annotation keys to values, with the key rules on both the zod and the CEL side. */
function metadataMap(value: z.ZodString, what: 'labels' | 'annotations'): z.ZodType<Record<string, string>> {
  const operatorKeys: readonly string[] = what === 'labels' ? OPERATOR_LABELS : [];
  const operatorMessage = `${operatorKeys.join(', ')} is set by keyward`;
  return z
    .record(z.string(), value)
    .meta({
      maxProperties: MAX_ENTRIES,
      'x-kubernetes-validations': keyRules(
        operatorKeys.map((k) => ({ rule: `!('${k}' in self)`, message: operatorMessage })),
      ),
    })
    .superRefine((map, ctx) => {
      const keys = Object.keys(map);
      if (keys.length > MAX_ENTRIES)
        ctx.addIssue({ code: 'custom', message: `at most ${MAX_ENTRIES} ${what}` });
      for (const key of keys) {
        const problem = operatorKeys.includes(key) ? operatorMessage : keyProblem(key);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      }
    });
}

export const secretLabelsSchema = metadataMap(
  z
    .string()
    .max(LABEL_VALUE_MAX_LENGTH)
    .regex(
      LABEL_VALUE_PATTERN,
      'a label value is empty or at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit',
    ),
  'labels',
);

export const secretAnnotationsSchema = metadataMap(z.string().max(65536), 'annotations');
