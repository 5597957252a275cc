import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken, tokenHash } from '../credentials/token.js';
import { testDatabase } from '../test/harness/database.js';
import { type StoreFixture, storeFixture } from '../test/support/webhook.js';
import { recordLeakReports } from './leak-reports.js';
import { lookupByHash } from './lookup.js';

let fx: StoreFixture;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase(), 3);
});
afterAll(async () => {
  await fx?.close();
});

const row = (token: string) => ({
  hash: tokenHash(token),
  tokenType: 'keyward_api_key',
  url: 'https://github.com/o/r/blob/1/f',
  source: 'content',
  reportedBy: '192.0.2.1',
});

async function outcomes(): Promise<Array<[string, string | null]>> {
  const { rows } = await fx.pool.query<{ outcome: string | null; key_id: string | null }>(
    `SELECT detail->>'outcome' AS outcome, key_id FROM audit_events WHERE action = 'key.leak_reported' ORDER BY id`,
  );
  return rows.map((r) => [r.outcome ?? '', r.key_id]);
}

describe('leak reports', () => {
  it('revokes reported live keys in the given namespaces, once, and audits every report', async () => {
    const mine = await fx.createUser({ namespace: 'team-a' });
    const theirs = await fx.createUser({ namespace: 'team-b' });
    const a = await fx.issueKey(mine);
    const b = await fx.issueKey(theirs);
    const unknown = generateToken().token;
    await recordLeakReports(fx.pool, [row(a.token), row(unknown), row(b.token), row(a.token)]);

    const revoked = await fx.store.processLeakReports(['team-a']);
    expect(revoked.map((k) => k.keyId)).toEqual([a.keyId]);
    expect((await lookupByHash(fx.pool, tokenHash(a.token)))?.revokedAt).toBeInstanceOf(Date);
    expect((await fx.store.getKey(a.uid))?.revokedReason).toBe('leaked');
    // team-b's report waits for the operator that watches team-b.
    expect((await lookupByHash(fx.pool, tokenHash(b.token)))?.revokedAt).toBeNull();
    expect(await outcomes()).toEqual([
      ['revoked', a.keyId],
      ['unknown', null],
      ['already_revoked', a.keyId],
    ]);
    expect(await fx.store.processLeakReports(['team-a'])).toEqual([]);

    expect((await fx.store.processLeakReports(null)).map((k) => k.keyId)).toEqual([b.keyId]);
    const { rows } = await fx.pool.query(
      'SELECT count(*)::int AS n FROM leak_reports WHERE processed_at IS NULL',
    );
    expect(rows[0].n).toBe(0);
  });
});
