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
