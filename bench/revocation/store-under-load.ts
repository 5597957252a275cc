// Revocation through the store while two webhook replicas serve half of their maximum load: from
// the return of the revoking commit to both replicas answering 401 (NOTIFY → each replica's
// listener → cache entry marked revoked → the next request is refused from the cache). Beside it,
// when the same NOTIFY reaches a bare LISTEN connection in this process: the floor Postgres and
// the machine's scheduling set for any listener.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { eventually } from '../../devenv/poll.js';
import { latestSeq } from '../../store/change-log.js';
import { CHANGES_CHANNEL, parseChange } from '../../store/changes.js';
import type { PinnedProcesses } from '../lib/processes.js';
import { epochMs } from '../lib/samples.js';
import { BenchStore } from '../lib/store.js';
import { startWebhook, verifyStatus, type Webhook } from '../lib/webhook.js';
import { pacedLua, Wrk, type WrkOptions, type WrkResult } from '../lib/wrk.js';

/** Keep-alive connections per replica for the maximum, as in the throughput benchmark. */
const MAX_CONNECTIONS = 100;
/** JIT and cache warm-up before the maximum is measured. */
const WARM_UP_SECONDS = 2;
/**
 * wrk is closed-loop: each connection pauses this long after every response (wrk's Lua `delay()`),
 * so the offered rate is about connections / (pause + response time). A pause long against the
 * response time keeps the rate from falling much when responses slow down (the trials' own work,
 * neighbours on the machine): with 3 ms, a loaded run fell from the calibrated 50 % to 33 %.
 */
const PACE_DELAY_MS = 10;
/** A first guess at the response time at half load; one calibration run corrects the guess. */
const GUESSED_RESPONSE_MS = 0.3;
const CALIBRATION_SECONDS = 2;
/** The response time grows with the load, so a second pass corrects what the first one changed. */
const CALIBRATION_PASSES = 2;
/** The load settles (connections open, JIT warm) before the first trial. */
const LOAD_SETTLE_MS = 1000;
/** Far beyond any trial; only bounds a paced run whose stop() was never reached. */
const PACED_UPPER_BOUND_SECONDS = 600;
/**
 * Each trial waits until both replicas have applied the key's own `issued` change before it
 * verifies the key: applied later, that change would drop the entry the verify cached, and the
 * trial would time a cold lookup instead of a cached key's revocation.
 */
const APPLIED_TIMEOUT_MS = 10_000;
const APPLIED_POLL_MS = 1;
/** Far beyond the target; only stops a run whose replica never sees the revocation. */
const TRIAL_TIMEOUT_MS = 30_000;

export interface StoreRevocationResult {
  /** Trials on idle replicas, for comparison. */
  unloaded: number[];
  /** Trials while wrk offered half of the measured maximum to each replica. */
  loaded: number[];
  /** Per trial, commit return → the NOTIFY at a bare LISTEN connection in this process (may be < 0). */
  notifyIdle: number[];
  notifyLoaded: number[];
  maxRps: number;
  targetRps: number;
  /** What wrk achieved over the loaded trials (both replicas). */
  achievedRps: number;
  /** wrk's own latency figures paced the loaded trials, per replica. */
  paced: WrkResult[];
  connections: number[];
}

export async function measureStoreRevocation(options: {
  storeUrl: string;
  processes: PinnedProcesses;
  trials: number;
  seconds: number;
  print: (line: string) => void;
}): Promise<StoreRevocationResult> {
  const { print, processes } = options;
  const bench = await BenchStore.open(options.storeUrl, {
    name: 'revocation-user',
    description: 'revocation benchmark',
    groups: ['team-a'],
  });
  const listener = new pg.Client({ connectionString: options.storeUrl });
  try {
    // The trials' polls fail on purpose until the revocation lands; the failed-attempt limit
    // would answer 429 to this one client address after 30 of them.
    const env = { KEYWARD_FAILED_ATTEMPTS_LIMIT: '0' };
    const replicas: Webhook[] = [
      await startWebhook(processes, { name: 'webhook-a', storeUrl: options.storeUrl, cpu: 0, env }),
      await startWebhook(processes, { name: 'webhook-b', storeUrl: options.storeUrl, cpu: 1, env }),
    ];

    // The floor: the revocation's NOTIFY at a connection that does nothing else.
    listener.on('error', () => undefined);
    await listener.connect();
    let revokeHeard: number | undefined;
    listener.on('notification', (msg) => {
      const change = parseChange(msg.payload);
      if (change.entity === 'key' && change.op === 'revoked') revokeHeard = epochMs();
    });
    await listener.query(`LISTEN ${CHANGES_CHANNEL}`);
    const appliedEverywhere = async (seq: number): Promise<void> => {
      for (const r of replicas) {
        await eventually(
          `${r.url} applied change ${seq}`,
          async () => (await changeSeq(r.metricsUrl)) >= seq,
          APPLIED_TIMEOUT_MS,
          { intervalMs: APPLIED_POLL_MS },
        );
      }
    };

    const trial = async (): Promise<{ refused: number; notified: number }> => {
      const key = await bench.issue();
      await appliedEverywhere(await latestSeq(bench.pool));
      for (const r of replicas) {
        const status = await verifyStatus(r.url, key.token);
        if (status !== 200) throw new Error(`a fresh key got ${status} from ${r.url}`);
      }
      revokeHeard = undefined;
      await bench.store.revokeKey(key.uid);
      const committed = epochMs();
      const refused = await Promise.all(
        replicas.map(async (r) => {
          while ((await verifyStatus(r.url, key.token)) !== 401) {
            if (epochMs() - committed > TRIAL_TIMEOUT_MS)
              throw new Error(`${r.url} still accepts a revoked key`);
          }
          return epochMs();
        }),
      );
      await eventually('the revocation NOTIFY', () => revokeHeard !== undefined, TRIAL_TIMEOUT_MS, {
        intervalMs: APPLIED_POLL_MS,
      });
      return { refused: Math.max(...refused) - committed, notified: revokeHeard! - committed };
    };
    const runTrials = async (n: number): Promise<{ refused: number[]; notified: number[] }> => {
      const refused: number[] = [];
      const notified: number[] = [];
      for (let i = 0; i < n; i++) {
        const t = await trial();
        refused.push(t.refused);
        notified.push(t.notified);
      }
      return { refused, notified };
    };

    const idle = await runTrials(options.trials);
    print(`${options.trials} trials on idle replicas done`);

    // The load: one cached key, one wrk per replica, each wrk on the other replica's CPU.
    const loadKey = await bench.issue();
    const wrk = new Wrk(processes.work);
    const headers = [`Authorization: Bearer ${loadKey.token}`];
    const wrkFor = (i: number, connections: number, seconds: number, lua?: string): WrkOptions => ({
      headers,
      connections,
      seconds,
      cpu: 1 - i,
      ...(lua ? { lua } : {}),
    });
    const url = (i: number): string => `${replicas[i]!.url}/verify`;
    const both = async (make: (i: number) => WrkOptions): Promise<WrkResult[]> =>
      await Promise.all([0, 1].map((i) => wrk.run(url(i), make(i))));
    await both((i) => wrkFor(i, MAX_CONNECTIONS, WARM_UP_SECONDS));
    const max = await both((i) => wrkFor(i, MAX_CONNECTIONS, options.seconds));
    const maxRps = max[0]!.rps + max[1]!.rps;
    print(
      `maximum, cache hits, ${MAX_CONNECTIONS} connections per replica: ${max.map((r) => Math.round(r.rps)).join(' + ')} = ${Math.round(maxRps)} req/s`,
    );

    const pacing = pacedLua(PACE_DELAY_MS);
    const targets = max.map((r) => r.rps / 2);
    let connections = targets.map((t) =>
      Math.max(1, Math.round((t * (PACE_DELAY_MS + GUESSED_RESPONSE_MS)) / 1000)),
    );
    for (let pass = 0; pass < CALIBRATION_PASSES; pass++) {
      const calibration = await both((i) => wrkFor(i, connections[i]!, CALIBRATION_SECONDS, pacing));
      connections = connections.map((c, i) =>
        Math.max(1, Math.round((c * targets[i]!) / calibration[i]!.rps)),
      );
    }

    const load = await Promise.all(
      [0, 1].map((i) => wrk.start(url(i), wrkFor(i, connections[i]!, PACED_UPPER_BOUND_SECONDS, pacing))),
    );
    let loaded: { refused: number[]; notified: number[] };
    let paced: WrkResult[];
    try {
      await sleep(LOAD_SETTLE_MS);
      loaded = await runTrials(options.trials);
    } finally {
      paced = await Promise.all(load.map((l) => l.stop()));
    }
    const achievedRps = paced[0]!.rps + paced[1]!.rps;
    print(
      `paced load: ${connections.join(' + ')} connections pausing ${PACE_DELAY_MS} ms, target ${Math.round(maxRps / 2)} req/s, achieved ${Math.round(achievedRps)} req/s (${((achievedRps / maxRps) * 100).toFixed(0)} % of max); wrk p50 ${paced.map((p) => p.p50ms.toFixed(2)).join('/')} ms, p99 ${paced.map((p) => p.p99ms.toFixed(2)).join('/')} ms, non-2xx ${paced[0]!.non2xx + paced[1]!.non2xx}`,
    );
    return {
      unloaded: idle.refused,
      loaded: loaded.refused,
      notifyIdle: idle.notified,
      notifyLoaded: loaded.notified,
      maxRps,
      targetRps: maxRps / 2,
      achievedRps,
      paced,
      connections,
    };
  } finally {
    await listener.end().catch(() => undefined);
    await bench.end();
  }
}

/** The last change-log seq a replica has applied (keyward_webhook_change_seq). */
async function changeSeq(metricsUrl: string): Promise<number> {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text();
  return Number(/^keyward_webhook_change_seq (\d+)/m.exec(text)?.[1] ?? -1);
}
