// What rate limits cost on the hit path: a key with two rate limits and a quota (never reached, so
// every request pays for counting and none is refused) against a key without, on the same webhook;
// then RequestLimits.admit() alone in this process, without HTTP.
import type { KeyLookup } from '../../store/lookup.js';
import { RateLimitDefinitions } from '../../store/rate-limits.js';
import { RequestLimits } from '../../webhook/limits.js';
import { alternate, medianRow, ratioRow } from '../lib/rounds.js';
import { describe } from '../lib/wrk.js';
import { type Harness, WARM_UP_SECONDS } from './harness.js';

/** Limits no benchmark reaches: the counting is paid, the refusal never happens. */
const NEVER_REACHED = 1_000_000_000;
const ADMIT_WARM_UP_CALLS = 100_000;
const ADMIT_CALLS = 1_000_000;

export async function limits(h: Harness): Promise<void> {
  const webhook = await h.webhook();
  const plainKey = await h.issue();
  const limitedKey = await h.issue();
  await new RateLimitDefinitions(h.pool).define({
    uid: limitedKey.uid,
    kind: 'ApiKey',
    rateLimits: [
      { name: 'burst', limit: NEVER_REACHED, periodMs: 60_000 },
      { name: 'daily', limit: NEVER_REACHED, periodMs: 86_400_000 },
    ],
    quota: { name: 'quota', limit: NEVER_REACHED, periodMs: null },
  });
  const plain = [`Authorization: Bearer ${plainKey.token}`];
  const limited = [`Authorization: Bearer ${limitedKey.token}`];
  const url = `${webhook.url}/verify`;
  await h.wrk.run(url, { headers: plain, seconds: WARM_UP_SECONDS });
  await h.wrk.run(url, { headers: limited, seconds: WARM_UP_SECONDS });
  const seconds = h.sizes.duration;
  h.print(
    '## rate limits on the hit path: a key with 2 rate limits and a quota vs a key without, same webhook',
  );
  const r = await alternate(
    h.sizes.rounds,
    {
      plain: () => h.wrk.run(url, { headers: plain, seconds }),
      limited: () => h.wrk.run(url, { headers: limited, seconds }),
    },
    (round, x) =>
      h.print(`round ${round}: no limits ${describe(x.plain!)} | limited ${describe(x.limited!)}`),
  );
  h.writer.row(
    ratioRow(
      {
        id: 'limits-vs-plain',
        measure: 'cache hits of a key with 2 rate limits and a quota vs a key without',
        target: 'reported',
        note: `same webhook, ${h.sizes.rounds} alternating rounds of ${seconds} s, limits never reached.`,
      },
      r.limited!.map((x) => x.rps),
      r.plain!.map((x) => x.rps),
    ),
  );
  for (const withLimits of [false, true]) {
    const ns = admitNanoseconds(withLimits);
    const what = withLimits ? '2 rate limits and a quota' : 'no limits';
    h.print(`admit() in-process, ${what}: ${ns.toFixed(0)} ns per call`);
    h.writer.row(
      medianRow(
        {
          id: withLimits ? 'admit-limited-ns' : 'admit-plain-ns',
          measure: `\`RequestLimits.admit()\` in-process, ${what}`,
          target: 'reported',
          unit: 'ns',
          note: `${ADMIT_CALLS.toLocaleString('en')} calls after ${ADMIT_WARM_UP_CALLS.toLocaleString('en')} warm-up calls, in the benchmark's own process.`,
        },
        [ns],
      ),
    );
  }
}

function admitNanoseconds(withLimits: boolean): number {
  const requestLimits = new RequestLimits({ now: Date.now, syncSoon: () => undefined });
  const key = {
    apiKeyId: '00000000-0000-4000-8000-000000000001',
    userId: '00000000-0000-4000-8000-000000000002',
    limits: withLimits
      ? {
          key: [
            { name: 'burst', limit: NEVER_REACHED, periodMs: 60_000 },
            { name: 'daily', limit: NEVER_REACHED, periodMs: 86_400_000 },
          ],
          user: [],
          quota: { name: 'quota', limit: NEVER_REACHED, periodMs: null },
        }
      : { key: [], user: [], quota: null },
  } as unknown as KeyLookup;
  for (let i = 0; i < ADMIT_WARM_UP_CALLS; i++) requestLimits.admit(key);
  const started = process.hrtime.bigint();
  for (let i = 0; i < ADMIT_CALLS; i++) requestLimits.admit(key);
  return Number(process.hrtime.bigint() - started) / ADMIT_CALLS;
}
