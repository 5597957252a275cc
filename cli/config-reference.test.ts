import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { repoRoot } from '../devenv/repo.js';
import { configurationReference, configuredComponents } from './config-reference.js';

describe('docs/configuration.md', () => {
  it('is what `keyward config-reference` generates from the schemas today (else run `npm run docs`)', () => {
    const committed = readFileSync(join(repoRoot(), 'docs', 'configuration.md'), 'utf8');
    expect(committed, 'docs/configuration.md is stale: run `npm run docs` and commit it').toBe(
      configurationReference(),
    );
  });

  it.each(configuredComponents.map((c) => [c.command, c.schema] as const))(
    'every variable of %s says what it means',
    (_command, schema) => {
      const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as {
        properties: Record<string, { description?: string }>;
      };
      const undocumented = Object.entries(json.properties)
        .filter(([, p]) => !p.description?.trim())
        .map(([name]) => name);
      expect(undocumented).toEqual([]);
      expect(Object.keys(json.properties).length).toBeGreaterThan(5);
    },
  );

  it('lists every variable of both components with its default', () => {
    const doc = configurationReference();
    expect(doc).toContain('| `KEYWARD_CACHE_TTL` | `60s` |');
    expect(doc).toContain('| `KEYWARD_STORE_URL` | (required) |');
    expect(doc).toContain('| `KEYWARD_LEASE_NAME` | `keyward-operator` |');
  });
});
