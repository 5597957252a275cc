import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../../credentials/token.js';
import { createTestNamespace } from '../../devenv/kube.js';
import {
  applyAccessPolicy,
  KeywardObjects,
  type OperatorProcess,
  operatorKubeconfig,
  startOperator,
} from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import { repoRoot } from '../../devenv/repo.js';
import { FAILPOINTS, type FailpointName } from '../../operator/failpoints.js';
import { requestTimeout } from '../../operator/objects.js';
import { migrate } from '../../store/migrate.js';
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { testKubeConfig } from '../harness/kube.js';
import {
  isReady,
  keyInvariantViolations,
  namespaceView,
  verifyThroughWebhook,
} from '../support/key-invariants.js';
import { poolFor, tokenVerifies } from '../support/store.js';
import { runReadyWebhook, testConfig } from '../support/webhook.js';

/**
 * Crash points (issue 10): for each named point in the issue, rotation, repair and revocation
 * sequences, the operator is started with that failpoint armed, the scenario is driven until the
 * operator kills itself there, and it is started again unarmed. The invariants of
 * test/support/key-invariants.ts (Ready keys verify through the real webhook, no live key's Secret
 * holds a rejected token, no valid hash held by nobody beyond the grace) are checked at the crash,
 * before the restart, and once the restarted operator has answered the scenario.
 */
let kc: KubeConfig;
let core: CoreV1Api;
let storeUrl: string;
let pool: pg.Pool;
let webhook: RunningWebhook;
const running = new Set<OperatorProcess>();

beforeAll(async () => {
  kc = testKubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  storeUrl = await testDatabase();
  await migrate(storeUrl);
  pool = poolFor(storeUrl);
  webhook = await runReadyWebhook(testConfig(storeUrl));
});

afterAll(async () => {
  await Promise.all([...running].map((op) => op.stop()));
  await webhook?.close();
  await pool?.end();
});

/** One (scenario, point) cell: its own namespace, AccessPolicy, operator identity and RBAC. */
interface Cell {
  readonly ns: string;
  readonly objects: KeywardObjects;
  readonly kubeconfigPath: string;
  /** Tokens seen before the scenario's step, by ApiKey name. */
  readonly before: Map<string, string>;
  /** ApiKeys whose Secret the scenario itself deleted or edited. */
  readonly tampered: Set<string>;
  operator?: OperatorProcess;
}

const USER = 'app';
const ROTATE_ANNOTATION = 'keyward.dev/rotate';
const FAILPOINT_LOG = (point: string): string => `failpoint ${point}: killing the operator`;
/** Generous: the machine is shared; an armed operator normally reaches its point in a second. */
const DEATH_TIMEOUT_MS = 45_000;
const CONVERGE_TIMEOUT_MS = 60_000;

async function newCell(scenario: string, point: string): Promise<Cell> {
  const ns = await createTestNamespace(kc, `cp-${scenario}-${point.split('.').slice(1).join('-')}`);
  await applyAccessPolicy(kc, ns, { namespaces: [ns], usernames: ['*'], scopes: ['*'] });
  return {
    ns,
    objects: new KeywardObjects(kc, ns),
    kubeconfigPath: await operatorKubeconfig(kc, ns),
    before: new Map(),
    tampered: new Set(),
  };
}

async function start(cell: Cell, failpoint?: FailpointName): Promise<OperatorProcess> {
  const op = await startOperator({
    kubeconfigPath: cell.kubeconfigPath,
    storeUrl,
    namespace: cell.ns,
    watchNamespace: cell.ns,
    // One identity per cell: a restart after SIGKILL renews its own Lease instead of waiting it out.
    identity: `crash-points-${cell.ns}`,
    env: { KEYWARD_LEASE_DURATION_SECONDS: '2', KEYWARD_FAILPOINTS: failpoint ?? '' },
  });
  running.add(op);
  cell.operator = op;
  return op;
}

async function stop(cell: Cell): Promise<void> {
  const op = cell.operator;
  if (!op) return;
  await op.stop();
  running.delete(op);
  cell.operator = undefined;
}

async function diedAt(cell: Cell, point: FailpointName): Promise<void> {
  const op = cell.operator;
  if (!op) throw new Error('no operator running');
  await eventually(
    `the operator to kill itself at ${point}`,
    () => op.process.hasExited,
    DEATH_TIMEOUT_MS,
    () => op.process.logTail(30),
  );
  expect(op.process.logTail(200)).toContain(FAILPOINT_LOG(point));
  running.delete(op);
  cell.operator = undefined;
}

function verify(token: string): ReturnType<typeof verifyThroughWebhook> {
  return verifyThroughWebhook(webhook.url, token);
}

async function violations(cell: Cell, phase: 'crash' | 'converged'): Promise<string[]> {
  return await keyInvariantViolations({
    kc,
    pool,
    webhookUrl: webhook.url,
    namespace: cell.ns,
    phase,
    premise: cell.tampered,
  });
}

async function createUser(cell: Cell): Promise<void> {
  await cell.objects.create('serviceusers', {
    kind: 'ServiceUser',
    metadata: { name: USER },
    // Usernames are unique across the store, which every cell of this file shares.
    spec: { username: cell.ns, scopes: ['*'] },
  });
}

async function createKey(cell: Cell, name: string, spec: object = {}): Promise<void> {
  await cell.objects.create('apikeys', {
    kind: 'ApiKey',
    metadata: { name },
    spec: { serviceUserRef: { name: USER }, ...spec },
  });
}

/** Waits until the key is Ready with a token in its Secret that the store accepts; returns it. */
async function readyToken(cell: Cell, name: string, not?: string): Promise<string> {
  return await eventually(
    `ApiKey ${name} Ready with a token the store accepts${not ? ' (a new one)' : ''}`,
    async () => {
      const v = await namespaceView(kc, cell.ns);
      const key = v.keys.find((k) => k.metadata.name === name);
      const token = v.token.get(name);
      if (!key || !isReady(key) || !token || token === not) return undefined;
      return (await tokenVerifies(pool, token)) ? token : undefined;
    },
    CONVERGE_TIMEOUT_MS,
    () => cell.operator?.process.logTail(20) ?? '',
  );
}

async function rotate(cell: Cell, name: string, value: string): Promise<void> {
  await cell.objects.patch('apikeys', name, { metadata: { annotations: { [ROTATE_ANNOTATION]: value } } });
}

async function gone(cell: Cell, what: string, check: () => Promise<boolean>): Promise<void> {
  await eventually(what, check, CONVERGE_TIMEOUT_MS, () => cell.operator?.process.logTail(20) ?? '');
}

async function exists(fn: () => Promise<unknown>): Promise<boolean> {
  try {
    await fn();
    return true;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return false;
    throw err;
  }
}

interface Scenario {
  name: string;
  points: FailpointName[];
  /** Builds the state before the step, with an unarmed operator. */
  prepare(cell: Cell): Promise<void>;
  /** The user's change that the armed operator answers by reaching the point. */
  act(cell: Cell): Promise<void>;
  /** Waits until the restarted operator has answered it, and checks what the user asked for. */
  settle(cell: Cell): Promise<void>;
}

function rotation(grace: '1h' | '0s'): Scenario {
  return {
    name: `rotation, grace ${grace}`,
    points: [FAILPOINTS.rotateAfterStore, FAILPOINTS.rotateAfterSecret],
    async prepare(cell) {
      await createUser(cell);
      await createKey(cell, 'k1', { rotation: { gracePeriod: grace } });
      cell.before.set('k1', await readyToken(cell, 'k1'));
    },
    act: (cell) => rotate(cell, 'k1', 'r1'),
    async settle(cell) {
      const old = cell.before.get('k1') ?? '';
      const fresh = await readyToken(cell, 'k1', old);
      expect((await verify(fresh)).status).toBe(200);
      // Within a 1h grace the token workloads still hold keeps working. With 0s it stops once the
      // Secret holds the new token: a crash right after that write leaves the hold (at most
      // ZERO_GRACE_HOLD_MS) to the restarted operator's first pass over the key, which ends it.
      if (grace === '1h') {
        expect((await verify(old)).status, 'the replaced token, within a 1h grace').toBe(200);
      } else {
        await eventually(
          'the replaced token refused once the 0s-grace rotation is done',
          async () => (await verify(old)).status === 401,
          30_000,
        );
      }
    },
  };
}

function repair(how: 'deleted' | 'edited'): Scenario {
  return {
    name: `repair, Secret ${how}`,
    points: [FAILPOINTS.rotateAfterStore, FAILPOINTS.rotateAfterSecret],
    async prepare(cell) {
      await createUser(cell);
      await createKey(cell, 'k1');
      cell.before.set('k1', await readyToken(cell, 'k1'));
    },
    async act(cell) {
      cell.tampered.add('k1');
      if (how === 'deleted') {
        await core.deleteNamespacedSecret({ namespace: cell.ns, name: 'k1' });
        return;
      }
      // A token of the right shape that the store has never seen.
      const foreign = Buffer.from(generateToken().token).toString('base64');
      await core.patchNamespacedSecret(
        { namespace: cell.ns, name: 'k1', body: { data: { token: foreign } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch, requestTimeout(10_000)),
      );
    },
    async settle(cell) {
      const fresh = await readyToken(cell, 'k1', cell.before.get('k1'));
      expect((await verify(fresh)).status).toBe(200);
    },
  };
}

const SCENARIOS: Scenario[] = [
  {
    name: 'issue',
    points: [FAILPOINTS.issueAfterSecret, FAILPOINTS.issueAfterStore],
    prepare: createUser,
    act: (cell) => createKey(cell, 'k1'),
    async settle(cell) {
      expect((await verify(await readyToken(cell, 'k1'))).status).toBe(200);
    },
  },
  rotation('1h'),
  rotation('0s'),
  repair('deleted'),
  repair('edited'),
  {
    name: 'revocation, ApiKey deleted',
    points: [FAILPOINTS.revokeAfterStore, FAILPOINTS.revokeAfterSecret],
    async prepare(cell) {
      await createUser(cell);
      await createKey(cell, 'k1');
      await createKey(cell, 'k2');
      cell.before.set('k1', await readyToken(cell, 'k1'));
      cell.before.set('k2', await readyToken(cell, 'k2'));
    },
    act: (cell) => cell.objects.delete('apikeys', 'k1'),
    async settle(cell) {
      await gone(cell, 'ApiKey k1 and its Secret gone', async () => {
        const key = await exists(() => cell.objects.get('apikeys', 'k1'));
        const secret = await exists(() => core.readNamespacedSecret({ namespace: cell.ns, name: 'k1' }));
        return !key && !secret;
      });
      expect((await verify(cell.before.get('k1') ?? '')).status).toBe(401);
      // The other key of the user is untouched.
      expect(await readyToken(cell, 'k2')).toBe(cell.before.get('k2'));
    },
  },
  {
    name: 'revocation, ServiceUser deleted',
    points: [FAILPOINTS.userRevokeAfterStore],
    async prepare(cell) {
      await createUser(cell);
      await createKey(cell, 'k1');
      cell.before.set('k1', await readyToken(cell, 'k1'));
    },
    act: (cell) => cell.objects.delete('serviceusers', USER),
    async settle(cell) {
      await gone(cell, `ServiceUser ${USER} gone and ApiKey k1 not Ready`, async () => {
        if (await exists(() => cell.objects.get('serviceusers', USER))) return false;
        return !isReady(await cell.objects.get('apikeys', 'k1'));
      });
      expect((await verify(cell.before.get('k1') ?? '')).status).toBe(401);
    },
  },
];

const CELLS = SCENARIOS.flatMap((scenario) => scenario.points.map((point) => ({ scenario, point })));

describe('operator crash points', () => {
  it('an unknown failpoint stops the operator at start, naming it', () => {
    const run = spawnSync(process.execPath, [join(repoRoot(), 'dist', 'cli', 'main.js'), 'operator'], {
      encoding: 'utf8',
      timeout: 30_000,
      env: {
        PATH: process.env.PATH,
        KEYWARD_STORE_URL: storeUrl,
        KEYWARD_FAILPOINTS: 'apikey.rotate.after-stor',
      },
    });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('KEYWARD_FAILPOINTS: unknown failpoint apikey.rotate.after-stor');
  });

  it.each(CELLS)('$scenario.name, killed at $point', { timeout: 240_000 }, async ({ scenario, point }) => {
    const cell = await newCell(scenario.name.split(',')[0] ?? 'cell', point);
    await start(cell);
    await scenario.prepare(cell);
    expect(await violations(cell, 'converged')).toEqual([]);
    await stop(cell);

    await start(cell, point);
    await scenario.act(cell);
    await diedAt(cell, point);
    const atCrash = await violations(cell, 'crash');

    await start(cell);
    await scenario.settle(cell);
    const converged = await violations(cell, 'converged');
    await stop(cell);
    expect({ atCrash, converged }).toEqual({ atCrash: [], converged: [] });
  });
});
