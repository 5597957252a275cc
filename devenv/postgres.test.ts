import { existsSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDatabase } from '../test/harness/database.js';
import { startPostgres, type TestPostgres } from './postgres.js';

describe('startPostgres', () => {
  let own: TestPostgres;

  beforeAll(async () => {
    own = await startPostgres();
  });

  afterAll(async () => {
    await own?.stop();
  });

  it('delivers a NOTIFY sent on one connection to a listener on another', async () => {
    const listener = new pg.Client({ connectionString: own.adminUrl });
    const sender = new pg.Client({ connectionString: own.adminUrl });
    await listener.connect();
    await sender.connect();
    try {
      await listener.query('LISTEN smoke');
      const received = new Promise<string | undefined>((resolve) => {
        listener.on('notification', (msg) => resolve(msg.payload));
      });
      await sender.query(`SELECT pg_notify('smoke', 'hello')`);
      expect(await received).toBe('hello');
    } finally {
      await listener.end();
      await sender.end();
    }
  });

  it('pauses (clients lose their connection) and resumes on the same port', async () => {
    const client = new pg.Client({ connectionString: own.adminUrl });
    await client.connect();
    const lost = new Promise<void>((resolve) => client.on('error', () => resolve()));
    await own.pause();
    await lost;
    await expect(new pg.Client({ connectionString: own.adminUrl }).connect()).rejects.toThrow();
    await own.resume();
    const again = new pg.Client({ connectionString: own.adminUrl });
    await again.connect();
    const { rows } = await again.query<{ port: string }>('SHOW port');
    expect(Number(rows[0]?.port)).toBe(own.port);
    await again.end();
  });

  it('fails at once, naming the tool and its install command, when a binary is missing', async () => {
    const started = Date.now();
    await expect(startPostgres({ binDir: '/nonexistent' })).rejects.toThrow(
      /initdb not found.*apt-get install -y postgresql/,
    );
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('fails with the server log tail when the port is taken', async () => {
    await expect(startPostgres({ port: own.port })).rejects.toThrow(
      /could not (bind|create)|already in use/i,
    );
  });

  it('stop() ends the server and removes its files', async () => {
    const other = await startPostgres();
    const pid = await (async () => {
      const client = new pg.Client({ connectionString: other.adminUrl });
      await client.connect();
      const { rows } = await client.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'`,
      );
      await client.end();
      return rows[0]?.pid;
    })();
    await other.stop();
    expect(existsSync(other.dataDir)).toBe(false);
    expect(pid).toBeTypeOf('number');
    expect(() => process.kill(pid as number, 0)).toThrow();
  });
});

describe('testDatabase', () => {
  it('returns a fresh database each call', async () => {
    const [a, b] = await Promise.all([testDatabase(), testDatabase()]);
    expect(a).not.toBe(b);
    const client = new pg.Client({ connectionString: a });
    await client.connect();
    const { rows } = await client.query<{ n: string }>(
      `SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'`,
    );
    expect(rows[0]?.n).toBe('0');
    await client.end();
  });
});
