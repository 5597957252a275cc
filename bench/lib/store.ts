// A benchmark's keyward store: a migrated database with one service user, whose keys are issued
// through the operator's store API (real tokens, real hashes), as the operator issues them.
import pg from 'pg';
import { generateToken } from '../../credentials/token.js';
import { migrate } from '../../store/migrate.js';
import { OperatorStore } from '../../store/operator-store.js';

const NAMESPACE = 'bench';
/** Connections the benchmark itself needs: set-up, trials, bulk loads; never the load. */
const POOL_SIZE = 4;

export class BenchStore {
  readonly pool: pg.Pool;
  readonly store: OperatorStore;
  readonly user: { readonly namespace: string; readonly name: string; readonly uid: string };
  #keys = 0;

  private constructor(storeUrl: string, userName: string) {
    this.pool = new pg.Pool({ connectionString: storeUrl, max: POOL_SIZE });
    // Idle clients see the cluster's own shutdown at the end; that is not a failure of the run.
    this.pool.on('error', () => undefined);
    this.store = new OperatorStore(this.pool, { actor: 'bench' });
    this.user = { namespace: NAMESPACE, name: userName, uid: `${userName}-uid` };
  }

  /** Migrates the database at `storeUrl` and creates the user (scopes `projects:*`). */
  static async open(
    storeUrl: string,
    user: { name: string; description: string; groups: string[] },
  ): Promise<BenchStore> {
    await migrate(storeUrl);
    const bench = new BenchStore(storeUrl, user.name);
    const created = await bench.store.upsertServiceUser({
      ref: bench.user,
      username: user.name,
      description: user.description,
      contact: null,
      groups: user.groups,
      scopes: ['projects:*'],
      suspended: false,
    });
    if (created.kind !== 'ok') {
      await bench.end();
      throw new Error(`upsertServiceUser: ${created.kind}`);
    }
    return bench;
  }

  /** Issues one more key of the user, without scopes of its own, expiry or disabling. */
  async issue(): Promise<{ token: string; uid: string }> {
    this.#keys += 1;
    const n = this.#keys;
    const generated = generateToken();
    const ref = { namespace: NAMESPACE, name: `key-${n}`, uid: `key-uid-${n}` };
    const result = await this.store.issueKey({
      ref,
      serviceUserName: this.user.name,
      hash: generated.hash,
      displayPrefix: generated.displayPrefix,
      scopes: null,
      expiresAt: null,
      disabled: false,
    });
    if (result.kind !== 'ok') throw new Error(`issueKey: ${result.kind}`);
    return { token: generated.token, uid: ref.uid };
  }

  async end(): Promise<void> {
    await this.pool.end();
  }
}
