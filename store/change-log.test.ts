import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../credentials/token.js';
import { eventually } from '../devenv/poll.js';
import { testDatabase } from '../test/harness/database.js';
import { ChangeFollower, type ChangeSource } from './change-follower.js';
import { latestSeq, pruneChangeLog, readChanges, recordChange } from './change-log.js';
import { CHANGES_CHANNEL, parseChange, parseSeq, type StoreChange } from './changes.js';
import { migrate } from './migrate.js';
import { OperatorStore } from './operator-store.js';

let url: string;
let pool: pg.Pool;
let store: OperatorStore;

beforeAll(async () => {
  url = await testDatabase();
  await migrate(url);
  pool = new pg.Pool({ connectionString: url, max: 4 });
  store = new OperatorStore(pool);
});

afterAll(async () => {
  await pool?.end();
});

async function userWithKey(): Promise<{ userId: string; keyId: string; keyUid: string }> {
  const namespace = `ns-${randomUUID().slice(0, 8)}`;
  const user = await store.upsertServiceUser({
    ref: { namespace, name: 'svc', uid: randomUUID() },
    username: namespace,
    description: '',
    contact: null,
    groups: [],
    scopes: [],
    suspended: false,
  });
  if (user.kind !== 'ok') throw new Error(user.kind);
  const t = generateToken();
  const keyUid = randomUUID();
  const key = await store.issueKey({
    ref: { namespace, name: 'k', uid: keyUid },
    serviceUserName: 'svc',
    hash: t.hash,
    displayPrefix: t.displayPrefix,
  });
  if (key.kind !== 'ok') throw new Error(key.kind);
  return { userId: user.user.id, keyId: key.key.keyId, keyUid };
}

/** A follower whose target records what it was given. */
function recordingFollower(pageSize?: number): {
  follower: ChangeFollower;
  applied: { change: StoreChange; source: ChangeSource }[];
  resets: string[];
  synced: number[];
} {
  const applied: { change: StoreChange; source: ChangeSource }[] = [];
  const resets: string[] = [];
  const synced: number[] = [];
  const follower = new ChangeFollower(
    {
      apply: (change, source) => applied.push({ change, source }),
      reset: (reason) => resets.push(reason),
      synced: (last) => synced.push(last),
    },
    pageSize,
  );
  return { follower, applied, resets, synced };
}

describe('change log', () => {
  it('records every change in its transaction and announces it with the same seq', async () => {
    const listener = new pg.Client({ connectionString: url });
    await listener.connect();
    const heard: { seq: number | undefined; change: StoreChange }[] = [];
    listener.on('notification', (msg) => {
      if (msg.channel === CHANGES_CHANNEL)
        heard.push({ seq: parseSeq(msg.payload), change: parseChange(msg.payload) });
    });
    await listener.query(`LISTEN ${CHANGES_CHANNEL}`);
    try {
      const before = await latestSeq(pool);
      const { userId, keyId, keyUid } = await userWithKey();
      await store.revokeKey(keyUid);
      const logged = await readChanges(pool, before + 1, 100);
      expect(logged.map((l) => l.change)).toEqual([
        { entity: 'key', op: 'issued', keyId, userId },
        { entity: 'key', op: 'revoked', keyId, userId },
      ]);
      await eventually('both notifications', () => heard.length === 2, 10_000);
      expect(heard).toEqual(logged);
    } finally {
      await listener.end();
    }
  });

  it('leaves nothing in the log when the transaction rolls back', async () => {
    const before = await latestSeq(pool);
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await recordChange(client, { entity: 'user', op: 'updated', userId: randomUUID() });
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    expect(await latestSeq(pool)).toBe(before);
  });

  it('orders seqs by commit: a second writer waits for the first to commit before drawing one', async () => {
    const first = await pool.connect();
    const second = await pool.connect();
    try {
      await first.query('BEGIN');
      const firstSeq = await recordChange(first, { entity: 'user', op: 'updated', userId: randomUUID() });
      await second.query('BEGIN');
      const secondPid = (await second.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      const secondSeq = recordChange(second, { entity: 'user', op: 'updated', userId: randomUUID() });
      await eventually(
        'second writer waiting on the log lock',
        async () =>
          (
            await pool.query(
              `SELECT 1 FROM pg_locks WHERE pid = $1 AND locktype = 'advisory' AND NOT granted`,
              [secondPid],
            )
          ).rowCount === 1,
        10_000,
      );
      await first.query('COMMIT');
      expect(await secondSeq).toBe(firstSeq + 1);
      await second.query('COMMIT');
    } finally {
      first.release();
      second.release();
    }
  });

  it('prunes rows past the retention but always keeps the newest', async () => {
    await userWithKey();
    const newest = await latestSeq(pool);
    // Backdate everything (as the owner; nobody else may update the log) past a one-hour retention.
    await pool.query(`UPDATE change_log SET recorded_at = now() - interval '2 hours'`);
    const deleted = await pruneChangeLog(pool, 60 * 60_000);
    expect(deleted).toBeGreaterThan(0);
    const left = await readChanges(pool, 0, 100);
    expect(left.map((l) => l.seq)).toEqual([newest]);
    expect(await pruneChangeLog(pool, 60 * 60_000)).toBe(0);
  });
});

describe('ChangeFollower against the log', () => {
  it('starts at the newest seq, then applies each later change once, by log or by NOTIFY', async () => {
    const { follower, applied, resets, synced } = recordingFollower();
    await follower.sync(pool);
    expect(resets).toEqual(['initial']);
    const start = follower.last ?? -1;
    expect(start).toBe(await latestSeq(pool));

    const { userId, keyId, keyUid } = await userWithKey();
    await store.revokeKey(keyUid);
    await follower.sync(pool);
    expect(applied).toEqual([
      { change: { entity: 'key', op: 'issued', keyId, userId }, source: 'log' },
      { change: { entity: 'key', op: 'revoked', keyId, userId }, source: 'log' },
    ]);
    expect(follower.last).toBe(start + 2);
    // Their NOTIFYs, arriving late, are duplicates; the next one is applied without a read.
    expect(follower.notified(start + 2, applied[1]!.change)).toBe(false);
    const next = { entity: 'user', op: 'updated', userId } as const;
    expect(follower.notified(start + 3, next)).toBe(false);
    // One seq skipped: the follower asks for a log read rather than guessing.
    expect(follower.notified(start + 5, next)).toBe(true);
    expect(applied.map((a) => a.source)).toEqual(['log', 'log', 'notify']);
    expect(follower.counts).toEqual({ notified: 1, caughtUp: 2, resets: 0 });
    // What keyward_webhook_change_seq shows: every seq applied, not only those read from the log.
    expect(synced).toEqual([start, start + 2, start + 3]);
  });

  it('reads a long gap page by page', async () => {
    const { follower, applied } = recordingFollower(2);
    await follower.sync(pool);
    for (let i = 0; i < 5; i++) await userWithKey();
    await follower.sync(pool);
    expect(applied).toHaveLength(5);
    expect(follower.last).toBe(await latestSeq(pool));
  });

  it('resets, then follows on, when the log was pruned past its last seq', async () => {
    const { follower, applied, resets } = recordingFollower();
    await follower.sync(pool);
    await userWithKey();
    await userWithKey();
    await pool.query(`UPDATE change_log SET recorded_at = now() - interval '2 hours'`);
    await pruneChangeLog(pool, 60 * 60_000);
    await follower.sync(pool);
    expect(applied).toEqual([]);
    expect(resets).toEqual(['initial', 'pruned']);
    expect(follower.last).toBe(await latestSeq(pool));
    expect(follower.counts.resets).toBe(1);
  });
});
