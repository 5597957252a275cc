import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../credentials/token.js';
import { startPostgres, type TestPostgres } from '../devenv/postgres.js';
import { testDatabase } from '../test/harness/database.js';
import { ChangeFollower } from './change-follower.js';
import { CHANGES_CHANNEL, type StoreChange } from './changes.js';
import { ChangeListener, type ChangeSubscriber } from './listener.js';
import { migrate } from './migrate.js';
import { OperatorStore, type ServiceUserSpec } from './operator-store.js';
import { UsageBatcher } from './usage.js';

type Event =
  | { type: 'connected' }
  | { type: 'disconnected'; reason: string }
  | { type: 'change'; change: StoreChange };

/** A subscriber that records what it is told, in order. */
class Recorder implements ChangeSubscriber {
  readonly events: Event[] = [];
  onChange(change: StoreChange): void {
    this.events.push({ type: 'change', change });
  }
  onConnected(): void {
    this.events.push({ type: 'connected' });
  }
  onDisconnected(reason: string): void {
    this.events.push({ type: 'disconnected', reason });
  }
  count(type: Event['type']): number {
    return this.events.filter((e) => e.type === type).length;
  }
  changes(): StoreChange[] {
    return this.events.flatMap((e) => (e.type === 'change' ? [e.change] : []));
  }
}

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

async function userAndKey(
  s: OperatorStore,
): Promise<{ userSpec: ServiceUserSpec; keyId: string; userId: string }> {
  const namespace = `ns-${randomUUID().slice(0, 8)}`;
  const userSpec: ServiceUserSpec = {
    ref: { namespace, name: 'svc', uid: randomUUID() },
    username: namespace,
    description: '',
    contact: null,
    groups: [],
    scopes: [],
    suspended: false,
  };
  const user = await s.upsertServiceUser(userSpec);
  if (user.kind !== 'ok') throw new Error(user.kind);
  const t = generateToken();
  const key = await s.issueKey({
    ref: { namespace, name: 'k', uid: randomUUID() },
    serviceUserName: 'svc',
    hash: t.hash,
    displayPrefix: t.displayPrefix,
  });
  if (key.kind !== 'ok') throw new Error(key.kind);
  return { userSpec, keyId: key.key.keyId, userId: user.user.id };
}

describe('ChangeListener', () => {
  it('hands committed changes to its subscriber', async () => {
    const recorder = new Recorder();
    const listener = new ChangeListener({ connection: { connectionString: url }, subscriber: recorder });
    listener.start();
    try {
      await expect.poll(() => listener.connected).toBe(true);
      expect(recorder.events).toEqual([{ type: 'connected' }]);
      const { userSpec, keyId, userId } = await userAndKey(store);
      await store.upsertServiceUser({ ...userSpec, suspended: true });
      await pool.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, 'not json']);
      await expect.poll(() => recorder.changes().length).toBe(3);
      expect(recorder.changes()).toEqual([
        { entity: 'key', op: 'issued', keyId, userId },
        { entity: 'user', op: 'updated', userId },
        { entity: 'unknown' },
      ]);
    } finally {
      await listener.close();
    }
    expect(listener.connected).toBe(false);
  });

  it('reports a terminated connection, reconnects with backoff, and listens again', async () => {
    const recorder = new Recorder();
    const listener = new ChangeListener({
      connection: { connectionString: url, application_name: 'keyward-listener-test' },
      subscriber: recorder,
      initialBackoffMs: 50,
    });
    listener.start();
    try {
      await expect.poll(() => listener.connected).toBe(true);
      await pool.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'keyward-listener-test'`,
      );
      await expect.poll(() => recorder.count('connected'), { timeout: 10_000 }).toBe(2);
      expect(recorder.events.map((e) => e.type)).toEqual(['connected', 'disconnected', 'connected']);
      const { userId } = await userAndKey(store);
      await expect
        .poll(() => recorder.changes().some((c) => 'userId' in c && c.userId === userId))
        .toBe(true);
    } finally {
      await listener.close();
    }
  });

  it('notices a connection that went silent (heartbeat) and replaces it', async () => {
    const recorder = new Recorder();
    const listener = new ChangeListener({
      connection: { connectionString: url, application_name: 'keyward-listener-silent' },
      subscriber: recorder,
      initialBackoffMs: 20,
      heartbeatMs: 200,
    });
    listener.start();
    let frozen: number | undefined;
    try {
      await expect.poll(() => listener.connected).toBe(true);
      const { rows } = await pool.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE application_name = 'keyward-listener-silent'`,
      );
      frozen = rows[0]!.pid;
      // A stopped backend keeps its socket open but never answers: what a network partition looks like.
      process.kill(frozen, 'SIGSTOP');
      await expect.poll(() => recorder.count('connected'), { timeout: 10_000 }).toBe(2);
      expect(recorder.events[1]).toEqual({ type: 'disconnected', reason: 'heartbeat timed out' });
    } finally {
      if (frozen !== undefined) process.kill(frozen, 'SIGCONT');
      await listener.close();
    }
  });

  it('re-attaches after a silent connection even while a log read hangs on it', async () => {
    let connected = 0;
    const follower = new ChangeFollower({ apply: () => undefined, reset: () => undefined });
    const listener = new ChangeListener({
      connection: { connectionString: url, application_name: 'keyward-listener-silent-sync' },
      initialBackoffMs: 20,
      heartbeatMs: 200,
      subscriber: {
        onChange: (change, seq) => follower.notified(seq, change),
        synchronise: (client) => follower.sync(client),
        onConnected: () => {
          connected += 1;
        },
        onDisconnected: () => undefined,
      },
    });
    listener.start();
    let frozen: number | undefined;
    try {
      await expect.poll(() => listener.connected).toBe(true);
      const { rows } = await pool.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE application_name = 'keyward-listener-silent-sync'`,
      );
      frozen = rows[0]!.pid;
      // The heartbeat's log read is sent to a backend that never answers: the follower's one read
      // in flight must not outlive the connection, or every later session would wait on it.
      process.kill(frozen, 'SIGSTOP');
      await expect.poll(() => connected, { timeout: 10_000 }).toBe(2);
    } finally {
      if (frozen !== undefined) process.kill(frozen, 'SIGCONT');
      await listener.close();
    }
  });

  it('attaches only once synchronise succeeded, runs it on every heartbeat, and hands over seqs', async () => {
    let syncs = 0;
    let failFirst = true;
    let connected = 0;
    const seqs: (number | undefined)[] = [];
    const listener = new ChangeListener({
      connection: { connectionString: url },
      initialBackoffMs: 20,
      heartbeatMs: 100,
      subscriber: {
        onChange: (_change, seq) => {
          seqs.push(seq);
          return true;
        },
        synchronise: async (client) => {
          syncs += 1;
          await client.query('SELECT 1 FROM change_log LIMIT 1');
          if (failFirst) {
            failFirst = false;
            throw new Error('first read fails');
          }
        },
        onConnected: () => {
          connected += 1;
        },
        onDisconnected: () => undefined,
      },
    });
    listener.start();
    try {
      await expect.poll(() => listener.connected).toBe(true);
      expect(listener.mode).toBe('notify');
      expect(connected).toBe(1);
      // The failed first read was a failed connect: told nothing, then a second attempt.
      expect(syncs).toBeGreaterThanOrEqual(2);
      const afterAttach = syncs;
      await expect.poll(() => syncs, { timeout: 5_000 }).toBeGreaterThan(afterAttach + 2);
      // One announced change each (the key issue); the seqs follow each other.
      await userAndKey(store);
      await userAndKey(store);
      await expect.poll(() => seqs.length).toBe(2);
      expect(seqs.every((seq) => typeof seq === 'number')).toBe(true);
      expect(seqs[1]).toBe((seqs[0] ?? 0) + 1);
      expect(connected).toBe(1);
    } finally {
      await listener.close();
    }
  });

  it('survives a subscriber that throws', async () => {
    const seen: StoreChange[] = [];
    const listener = new ChangeListener({
      connection: { connectionString: url },
      subscriber: {
        onChange: (change) => {
          seen.push(change);
          throw new Error('subscriber bug');
        },
        onConnected: () => {
          throw new Error('subscriber bug');
        },
        onDisconnected: () => undefined,
      },
    });
    listener.start();
    try {
      await expect.poll(() => listener.connected).toBe(true);
      await userAndKey(store);
      await userAndKey(store);
      await expect.poll(() => seen.length).toBe(2);
      expect(listener.connected).toBe(true);
    } finally {
      await listener.close();
    }
  });
});

describe('a Postgres outage (private cluster, stopped and started again)', () => {
  let own: TestPostgres;
  let ownPool: pg.Pool;
  let ownStore: OperatorStore;

  beforeAll(async () => {
    own = await startPostgres();
    await migrate(own.adminUrl);
    ownPool = new pg.Pool({ connectionString: own.adminUrl, max: 2 });
    // Idle pooled connections die with the server; the pool's owner must expect that.
    ownPool.on('error', () => undefined);
    ownStore = new OperatorStore(ownPool);
  });

  afterAll(async () => {
    await ownPool?.end();
    await own?.stop();
  });

  it('is reported to the listener subscriber, which is told again once the store is back', async () => {
    const recorder = new Recorder();
    const random = { calls: 0 };
    const listener = new ChangeListener({
      connection: { connectionString: own.adminUrl },
      subscriber: recorder,
      initialBackoffMs: 20,
      maxBackoffMs: 200,
      random: () => {
        random.calls += 1;
        return 0.5;
      },
    });
    listener.start();
    try {
      await expect.poll(() => listener.connected).toBe(true);
      await own.pause();
      await expect.poll(() => recorder.count('disconnected')).toBe(1);
      expect(listener.connected).toBe(false);
      // Several failed attempts, each after a jittered delay.
      await expect.poll(() => random.calls, { timeout: 10_000 }).toBeGreaterThan(3);
      expect(recorder.count('connected')).toBe(1);

      await own.resume();
      await expect.poll(() => recorder.count('connected'), { timeout: 10_000 }).toBe(2);
      const { keyId } = await userAndKey(ownStore);
      await expect.poll(() => recorder.changes().some((c) => 'keyId' in c && c.keyId === keyId)).toBe(true);
    } finally {
      await listener.close();
    }
  });

  it('keeps usage counts through a failed flush and writes them once the store is back', async () => {
    const [{ keyId }] = [await userAndKey(ownStore)];
    const { rows } = await ownPool.query<{ id: string }>('SELECT id FROM api_keys WHERE key_id = $1', [
      keyId,
    ]);
    const apiKeyId = rows[0]!.id;
    const errors: Error[] = [];
    const batcher = new UsageBatcher(ownPool, { flushIntervalMs: 3_600_000, onError: (e) => errors.push(e) });
    batcher.record(apiKeyId, 'allowed');
    batcher.record(apiKeyId, 'denied');
    await own.pause();
    try {
      await expect(batcher.flush()).rejects.toMatchObject({ name: 'StoreError', transient: true });
      batcher.record(apiKeyId, 'allowed');
      expect(batcher.pending).toBe(1);
    } finally {
      await own.resume();
    }
    await batcher.close();
    const usage = await ownPool.query<{ allowed: string; denied: string }>(
      'SELECT sum(allowed) AS allowed, sum(denied) AS denied FROM api_key_usage WHERE api_key_id = $1',
      [apiKeyId],
    );
    expect(usage.rows[0]).toEqual({ allowed: '2', denied: '1' });
  });
});
