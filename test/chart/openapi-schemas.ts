import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

interface Gvk {
  group: string;
  version: string;
  kind: string;
}

/**
 * The API server's OpenAPI v3 documents turned into kubeconform's schema registry: one file of
 * component schemas per group-version, and per kind a file that refers into it, at
 * `<dir>/<group or "v1">/<kind>_<version>.json` (the layout of {@link kubeconformLocation}).
 *
 * Strict like kubectl's client-side validation (what kubeconform's openapi2jsonschema does for
 * its published schemas): an object schema that lists properties admits no others unless it
 * preserves unknown fields; int-or-string and nullable become JSON Schema types.
 */
export function writeKubeconformSchemas(kubectl: string, kubeconfig: string, dir: string): Gvk[] {
  const get = (path: string): JsonObject =>
    JSON.parse(
      execFileSync(kubectl, ['--kubeconfig', kubeconfig, 'get', '--raw', path], {
        encoding: 'utf8',
        maxBuffer: 256 * 1024 * 1024,
      }),
    ) as JsonObject;
  const index = get('/openapi/v3') as { paths: Record<string, { serverRelativeURL: string }> };
  const written: Gvk[] = [];
  for (const [path, { serverRelativeURL }] of Object.entries(index.paths)) {
    // "api/v1" and "apis/<group>/<version>"; the rest ("apis", "version", …) holds no kinds.
    const match = /^(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/.exec(path);
    if (!match) continue;
    const group = match[2] ?? '';
    const version = match[1] ?? match[3] ?? '';
    const doc = get(serverRelativeURL) as { components?: { schemas?: Record<string, JsonObject> } };
    const schemas = doc.components?.schemas ?? {};
    const folder = join(dir, group || version);
    mkdirSync(folder, { recursive: true });
    const componentsFile = `_components_${version}.json`;
    writeFileSync(
      join(folder, componentsFile),
      JSON.stringify({ components: { schemas: strict(schemas as Json) } }),
    );
    for (const [name, schema] of Object.entries(schemas)) {
      const gvks = (schema['x-kubernetes-group-version-kind'] ?? []) as unknown as Gvk[];
      for (const gvk of gvks) {
        if (gvk.group !== group || gvk.version !== version) continue;
        const ref = `${componentsFile}#/components/schemas/${name.replaceAll('~', '~0').replaceAll('/', '~1')}`;
        writeFileSync(
          join(folder, `${gvk.kind.toLowerCase()}_${version}.json`),
          JSON.stringify({ $ref: ref }),
        );
        written.push(gvk);
      }
    }
  }
  return written;
}

/** kubeconform's `-schema-location` for the files {@link writeKubeconformSchemas} writes. */
export function kubeconformLocation(dir: string): string {
  return `${dir}/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json`;
}

function strict(node: Json): Json {
  if (Array.isArray(node)) return node.map(strict);
  if (node === null || typeof node !== 'object') return node;
  if (node.format === 'int-or-string') {
    const { type: _type, format: _format, ...rest } = node;
    return { ...strictEntries(rest), oneOf: [{ type: 'string' }, { type: 'integer' }] };
  }
  const out = strictEntries(node);
  if (out.nullable === true && typeof out.type === 'string') out.type = [out.type, 'null'];
  const preserves = out['x-kubernetes-preserve-unknown-fields'] === true;
  if (out.properties && !('additionalProperties' in out) && !preserves) out.additionalProperties = false;
  return out;
}

/** Values, not schemas: left as they are. */
const literalKeys = new Set(['default', 'example', 'enum', 'x-kubernetes-group-version-kind']);

function strictEntries(node: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(node)) {
    if (literalKeys.has(key)) {
      out[key] = value;
      continue;
    }
    // `properties` maps names to schemas: recurse into each schema, never treat the map as one.
    out[key] =
      key === 'properties' && value && typeof value === 'object' && !Array.isArray(value)
        ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, strict(v)]))
        : strict(value);
  }
  return out;
}
