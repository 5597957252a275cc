import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import pg from 'pg';
import { expect } from 'vitest';
import { type GeneratedToken, generateToken } from '../../credentials/token.js';
import { postgresTool } from '../../devenv/postgres.js';
import { CHANGES_CHANNEL, parseChange, type StoreChange } from '../../store/changes.js';
import { migrate } from '../../store/migrate.js';
import { type ObjectRef, OperatorStore, type ServiceUserSpec } from '../../store/operator-store.js';
import { testDatabase } from '../harness/database.js';

/**
 * The store suites' common ground: a fresh migrated database, the operator's store API on it, a
 * LISTEN connection that collects the NOTIFYs, and users and keys made the way the operator makes
 * them. Every token a file hands out is remembered for the final "nothing stored in clear" check.
 */
export class StoreTestbed {
  readonly #issued: GeneratedToken[] = [];
  #changes: StoreChange[] = [];

  private constructor(
    readonly url: string,
    readonly pool: pg.Pool,
    readonly store: OperatorStore,
    private readonly listener: pg.Client,
  ) {
    listener.on('notification', (msg) => this.#changes.push(parseChange(msg.payload)));
  }

  static async open(): Promise<StoreTestbed> {
    const url = await testDatabase();
    await migrate(url);
    const pool = new pg.Pool({ connectionString: url, max: 8 });
    const listener = new pg.Client({ connectionString: url });
    await listener.connect();
    await listener.query(`LISTEN ${CHANGES_CHANNEL}`);
    return new StoreTestbed(url, pool, new OperatorStore(pool, { actor: 'test-operator' }), listener);
  }

  async close(): Promise<void> {
    await this.listener.end();
    await this.pool.end();
  }

  /** A fresh token, remembered for the final dump check. */
  token(): GeneratedToken {
    const t = generateToken();
    this.#issued.push(t);
    return t;
  }

  ref(namespace: string, name: string): ObjectRef {
    return { namespace, name, uid: randomUUID() };
  }

  userSpec(r: ObjectRef, overrides: Partial<ServiceUserSpec> = {}): ServiceUserSpec {
    return {
      ref: r,
      username: `${r.namespace}-${r.name}`,
      description: 'CI pipelines of team A',
      contact: { name: 'Team A', email: 'team-a@example.com' },
      groups: ['team-a'],
      scopes: ['projects:alpha', 'projects:beta'],
      suspended: false,
      ...overrides,
    };
  }

  async newUser(namespace = `ns-${randomUUID().slice(0, 8)}`, name = 'ci'): Promise<ServiceUserSpec> {
    const spec = this.userSpec(this.ref(namespace, name));
    const result = await this.store.upsertServiceUser(spec);
    expect(result.kind).toBe('ok');
    return spec;
  }

  async newKey(user: ServiceUserSpec, name = `key-${randomUUID().slice(0, 8)}`) {
    const t = this.token();
    const r = this.ref(user.ref.namespace, name);
    const result = await this.store.issueKey({
      ref: r,
      serviceUserName: user.ref.name,
      hash: t.hash,
      displayPrefix: t.displayPrefix,
      description: 'deploys',
    });
    if (result.kind !== 'ok') throw new Error(`issue failed: ${result.kind}`);
    return { ref: r, token: t, key: result.key };
  }

  async auditRows(where: string, values: unknown[]): Promise<Array<{ action: string; detail: object }>> {
    const { rows } = await this.pool.query(
      `SELECT action, detail FROM audit_events WHERE ${where} ORDER BY id`,
      values,
    );
    return rows;
  }

  /** Waits until the listener has seen the NOTIFYs of everything committed so far; drains them. */
  async settledChanges(): Promise<StoreChange[]> {
    const marker = randomUUID();
    const seen = new Promise<void>((resolve) => {
      const onMessage = (msg: pg.Notification): void => {
        if (msg.payload === marker) {
          this.listener.off('notification', onMessage);
          resolve();
        }
      };
      this.listener.on('notification', onMessage);
    });
    await this.pool.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, marker]);
    await seen;
    const out = this.#changes.filter((c) => c.entity !== 'unknown');
    this.#changes = [];
    return out;
  }

  /**
   * No table holds a token this file handed out, and the audit trail holds none of their hashes
   * in any encoding. Call it last: it covers everything the file did.
   */
  async expectNoTokenStored(minimumTokens: number): Promise<void> {
    expect(this.#issued.length).toBeGreaterThanOrEqual(minimumTokens);
    const { stdout: dump } = await promisify(execFile)(
      postgresTool('pg_dump'),
      ['--data-only', '--no-owner', this.url],
      { maxBuffer: 64 * 1024 * 1024 },
    );
    const audit = (
      await this.pool.query<{ row: string }>('SELECT audit_events::text AS row FROM audit_events')
    ).rows
      .map((r) => r.row)
      .join('\n');
    expect(audit.length).toBeGreaterThan(500);
    for (const t of this.#issued) {
      expect(dump.includes(t.token), `token ${t.displayPrefix}… in the dump`).toBe(false);
      for (const form of [t.hash.toString('hex'), t.hash.toString('base64'), t.hash.toString('base64url')]) {
        expect(audit.includes(form), `hash of ${t.displayPrefix}… in audit_events`).toBe(false);
      }
    }
    // The dump is real: it does hold the hashes, where they belong (a revoked user's keys keep theirs).
    expect(this.#issued.some((t) => dump.includes(t.hash.toString('hex')))).toBe(true);
  }
}
