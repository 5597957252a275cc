import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StoreTestbed } from '../test/support/store-testbed.js';
import { StoreError } from './errors.js';
import { lookupByHash } from './lookup.js';
import { OperatorStore } from './operator-store.js';

let tb: StoreTestbed;

beforeAll(async () => {
  tb = await StoreTestbed.open();
});

afterAll(async () => {
  await tb?.close();
});

beforeEach(async () => {
  await tb.settledChanges();
});

describe('constraints hold even against hand-written SQL', () => {
  it('rejects a second current secret, a key outside its user namespace, bad values, and audit edits', async () => {
    const user = await tb.newUser();
    const { key } = await tb.newKey(user);
    const t = tb.token();
    await expect(
      tb.pool.query(`INSERT INTO api_key_secrets (hash, api_key_id, display_prefix) VALUES ($1, $2, $3)`, [
        t.hash,
        key.id,
        t.displayPrefix,
      ]),
    ).rejects.toMatchObject({ constraint: 'api_key_secrets_one_current' });
    await expect(
      tb.pool.query(
        `INSERT INTO api_keys (key_id, service_user_id, namespace, name, uid) VALUES ('key_0000000000000000', $1, 'other', 'k', $2)`,
        [key.serviceUserId, randomUUID()],
      ),
    ).rejects.toMatchObject({ code: '23503' });
    await expect(
      tb.pool.query(
        `INSERT INTO service_users (namespace, name, uid, username) VALUES ('a', 'b', $1, 'bad name')`,
        [randomUUID()],
      ),
    ).rejects.toMatchObject({ code: '23514' });
    await expect(
      tb.pool.query(
        `INSERT INTO api_key_secrets (hash, api_key_id, display_prefix) VALUES ('\\x00', $1, 'kw_abcd')`,
        [key.id],
      ),
    ).rejects.toMatchObject({ code: '23514' });
    await expect(tb.pool.query(`UPDATE audit_events SET actor = 'someone else'`)).rejects.toThrow(
      /append-only/,
    );
    await expect(tb.pool.query(`DELETE FROM audit_events`)).rejects.toThrow(/append-only/);
  });

  it('keeps the values a Postgres error quotes (a hash, here) out of StoreError', async () => {
    const user = await tb.newUser();
    const { key, token: t } = await tb.newKey(user);
    const err = await tb.pool
      .query(
        `INSERT INTO api_key_secrets (hash, api_key_id, display_prefix, not_after) VALUES ($1, $2, 'kw_abcd', now())`,
        [t.hash, key.id],
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(pg.DatabaseError);
    expect((err as pg.DatabaseError).detail).toContain(t.hash.toString('hex'));
    const wrapped = StoreError.from('issue key', err);
    expect(wrapped).toMatchObject({ code: '23505', transient: false });
    expect(JSON.stringify({ ...wrapped, message: wrapped.message, stack: wrapped.stack })).not.toContain(
      t.hash.toString('hex'),
    );
  });
});

describe('connection loss mid-transaction', () => {
  /**
   * Runs `operation` on a pool of its own while another session holds audit_events locked, so
   * the operation blocks at its audit insert, after all its data writes; then terminates its
   * backend and checks nothing it did survived.
   */
  async function terminateMidway(operation: (s: OperatorStore) => Promise<unknown>): Promise<unknown> {
    const victimPool = new pg.Pool({ connectionString: tb.url, max: 1, application_name: 'keyward-victim' });
    const blocker = new pg.Client({ connectionString: tb.url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE audit_events IN EXCLUSIVE MODE');
      const outcome = operation(new OperatorStore(victimPool)).then(
        () => undefined,
        (err: unknown) => err,
      );
      let pid: number | undefined;
      for (let i = 0; i < 200 && pid === undefined; i++) {
        const { rows } = await tb.pool.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity
            WHERE application_name = 'keyward-victim' AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO audit_events%'`,
        );
        pid = rows[0]?.pid;
        if (pid === undefined) await new Promise((r) => setTimeout(r, 25));
      }
      expect(pid, 'the operation never reached its audit insert').toBeDefined();
      await tb.pool.query('SELECT pg_terminate_backend($1)', [pid]);
      return await outcome;
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      await blocker.end();
      await victimPool.end();
    }
  }

  it('deleting a user leaves no partial state', async () => {
    const user = await tb.newUser();
    const keys = [await tb.newKey(user), await tb.newKey(user), await tb.newKey(user)];
    const userRow = (await tb.store.getServiceUser(user.ref.uid))!;
    const auditBefore = await tb.auditRows('service_user_id = $1', [userRow.id]);
    await tb.settledChanges();

    const err = await terminateMidway((s) => s.deleteServiceUser(user.ref.uid));
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).transient).toBe(true);

    expect((await tb.store.getServiceUser(user.ref.uid))?.deletedAt).toBeNull();
    for (const k of keys) expect((await tb.store.getKey(k.ref.uid))?.revokedAt).toBeNull();
    expect(await tb.auditRows('service_user_id = $1', [userRow.id])).toEqual(auditBefore);
    expect(await tb.settledChanges()).toEqual([]);
    // The retry then does it all.
    expect((await tb.store.deleteServiceUser(user.ref.uid)).revokedKeyIds).toHaveLength(3);
  });

  it('rotating a key leaves no partial state', async () => {
    const user = await tb.newUser();
    const { ref: r, token: t0, key } = await tb.newKey(user);
    const t1 = tb.token();
    await tb.settledChanges();
    const rotate = {
      uid: r.uid,
      newHash: t1.hash,
      displayPrefix: t1.displayPrefix,
      graceSeconds: 60,
      reason: 'x',
    };

    const err = await terminateMidway((s) => s.rotateKey(rotate));
    expect(err).toBeInstanceOf(StoreError);

    expect(await tb.store.getKey(r.uid)).toEqual(key);
    expect(await tb.store.secretMatch(r.uid, t0.hash)).toEqual({ role: 'current' });
    expect(await lookupByHash(tb.pool, t1.hash)).toBeNull();
    expect(await tb.settledChanges()).toEqual([]);
    expect(await tb.store.rotateKey(rotate)).toMatchObject({ kind: 'ok', rotated: true });
  });

  it('issuing a key leaves no partial state', async () => {
    const user = await tb.newUser();
    const t = tb.token();
    const r = tb.ref(user.ref.namespace, 'half');
    const err = await terminateMidway((s) =>
      s.issueKey({ ref: r, serviceUserName: user.ref.name, hash: t.hash, displayPrefix: t.displayPrefix }),
    );
    expect(err).toBeInstanceOf(StoreError);
    expect(await tb.store.getKey(r.uid)).toBeNull();
    expect(await lookupByHash(tb.pool, t.hash)).toBeNull();
  });
});
