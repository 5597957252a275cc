import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadOperatorConfig } from './config.js';

describe('operator configuration', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keyward-operator-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads the store URL from KEYWARD_STORE_URL_FILE, as the chart mounts it', () => {
    writeFileSync(join(dir, 'url'), 'postgres://op:pw@db:5432/keyward\n');
    expect(loadOperatorConfig({ KEYWARD_STORE_URL_FILE: join(dir, 'url') }).storeUrl).toBe(
      'postgres://op:pw@db:5432/keyward',
    );
  });

  it('names the variable and path of an unreadable file, and refuses a missing URL', () => {
    expect(() => loadOperatorConfig({ KEYWARD_STORE_URL_FILE: join(dir, 'nope') })).toThrow(
      `KEYWARD_STORE_URL_FILE: cannot read ${join(dir, 'nope')} (ENOENT)`,
    );
    expect(() => loadOperatorConfig({})).toThrow('KEYWARD_STORE_URL: is required');
  });
});

const base = { KEYWARD_STORE_URL: 'postgres://keyward@db/keyward' };

describe('watched namespaces', () => {
  it('are every namespace by default', () => {
    expect(loadOperatorConfig(base).watchNamespaces).toBeUndefined();
  });

  it('come from a comma-separated KEYWARD_WATCH_NAMESPACES, trimmed and without repeats', () => {
    const config = loadOperatorConfig({ ...base, KEYWARD_WATCH_NAMESPACES: ' team-a, team-b,,team-a ' });
    expect(config.watchNamespaces).toEqual(['team-a', 'team-b']);
  });

  it('accept the single-namespace KEYWARD_WATCH_NAMESPACE of earlier releases', () => {
    expect(loadOperatorConfig({ ...base, KEYWARD_WATCH_NAMESPACE: 'team-a' }).watchNamespaces).toEqual([
      'team-a',
    ]);
    expect(
      loadOperatorConfig({ ...base, KEYWARD_WATCH_NAMESPACE: 'team-a', KEYWARD_WATCH_NAMESPACES: 'team-a' })
        .watchNamespaces,
    ).toEqual(['team-a']);
  });

  it('refuse a name that is no namespace, and the two variables disagreeing', () => {
    expect(() => loadOperatorConfig({ ...base, KEYWARD_WATCH_NAMESPACES: 'team-a,Team_B' })).toThrow(
      /KEYWARD_WATCH_NAMESPACES: "Team_B" is not a namespace name/,
    );
    expect(() =>
      loadOperatorConfig({ ...base, KEYWARD_WATCH_NAMESPACE: 'team-a', KEYWARD_WATCH_NAMESPACES: 'team-b' }),
    ).toThrow(/disagree/);
  });
});
