import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parseToken, TOKEN_SHAPE, tokenHash } from '../../credentials/token.js';
import { type LeakReportRow, recordLeakReports } from '../../store/leak-reports.js';
import { requireCaller } from '../callers.js';
import { safeError } from '../logger.js';
import { FailureLimiter } from '../ratelimit.js';
import { type LeakLabel, leakReport } from '../schemas/leaks.js';

const CALLER = requireCaller({
  route: 'leaks',
  accepts: (callers, request) => callers.leakReport(request),
  challenge: 'Bearer realm="keyward-leaks"',
  error: { error: 'unauthorized', error_description: 'Caller authentication failed.' },
});

/** Reports an authenticated caller may send per minute from one address; GitHub batches matches. */
const REPORTS_PER_MINUTE = 60;
/** What is kept of free text from the report: only values of a harmless shape, else nothing. */
const SOURCE = /^[a-z0-9_]{1,64}$/;
const TOKEN_TYPE = /^[A-Za-z0-9_.:-]{1,128}$/;
/** A token-like or hash-like run: a URL carrying one is not kept (audit rows are forever). */
const SECRET_LIKE = new RegExp(`${TOKEN_SHAPE}|[0-9a-fA-F]{64}`);

function keptUrl(url: string | undefined): string | null {
  if (url === undefined || SECRET_LIKE.test(url)) return null;
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'https:' || parsed.protocol === 'http:' ? parsed.toString() : null;
  } catch {
    return null;
  }
}

/**
 * `POST /leaks`: GitHub's secret-scanning partner payload (a JSON array of `{token, type, url,
 * source}`), from a caller holding a KEYWARD_LEAK_REPORT_CREDENTIALS bearer. Every token with a
 * valid keyward checksum (and the configured prefix) is recorded as a leak report for the operator,
 * which revokes the key if one has it. The answer labels each token by its format alone and the
 * same work is done whether or not a key has it, so the route says nothing about which keys exist:
 * it cannot be used to test stolen keys. Tokens are never logged, stored or answered.
 */
export async function leakRoutes(app: FastifyInstance): Promise<void> {
  // Counted per address for every authenticated request: a valid caller still cannot flood the
  // store with reports (unauthenticated ones are limited by requireCaller's failure limiter).
  const requests = new FailureLimiter({ limit: REPORTS_PER_MINUTE, windowMs: 60_000, now: app.keyward.now });
  app.post(
    '/leaks',
    {
      bodyLimit: 1024 * 1024,
      onRequest: [
        CALLER,
        function limit(this: FastifyInstance, request, reply, done): void {
          const client = this.keyward.clientAddress(request);
          const blockedMs = requests.blockedFor(client);
          if (blockedMs > 0) {
            this.keyward.metrics.decision('leaks', 'limited', 'too_many_reports');
            reply
              .code(429)
              .header('retry-after', String(Math.max(1, Math.ceil(blockedMs / 1000))))
              .send({ error: 'too_many_requests', error_description: 'Too many reports; retry later.' });
            return;
          }
          requests.recordFailure(client);
          done();
        },
      ],
    },
    report,
  );
}

async function report(
  this: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const k = this.keyward;
  const parsed = leakReport.safeParse(request.body);
  if (!parsed.success) {
    k.metrics.decision('leaks', 'invalid_request', 'payload');
    return reply.code(400).send({
      error: 'invalid_request',
      error_description: 'Expected a JSON array of {token, type, url, source}.',
    });
  }
  const reportedBy = k.clientAddress(request).slice(0, 64);
  const rows: LeakReportRow[] = [];
  const labels: LeakLabel[] = parsed.data.map((leak) => {
    const hash = tokenHash(leak.token);
    const ok = parseToken(
      leak.token,
      k.config.tokenPrefix === undefined ? {} : { prefix: k.config.tokenPrefix },
    ).ok;
    if (ok) {
      rows.push({
        hash,
        tokenType: TOKEN_TYPE.test(leak.type) ? leak.type : 'unknown',
        url: keptUrl(leak.url),
        source: leak.source !== undefined && SOURCE.test(leak.source) ? leak.source : null,
        reportedBy,
      });
    }
    return {
      token_hash: hash.toString('hex'),
      token_type: leak.type,
      label: ok ? 'true_positive' : 'false_positive',
    };
  });
  try {
    await recordLeakReports(this.store.writePool, rows);
  } catch (err) {
    this.log.error({ err: safeError(err) }, 'leak reports could not be recorded');
    // The reporter retries; nothing about the keys is implied.
    return reply.code(503).header('retry-after', '5').send({
      error: 'temporarily_unavailable',
      error_description: 'Reports cannot be recorded right now; retry later.',
    });
  }
  k.metrics.decision('leaks', 'recorded', rows.length > 0 ? 'true_positive' : 'false_positive');
  this.log.warn({ reported: rows.length, received: labels.length, reportedBy }, 'leak report received');
  return reply.code(200).header('cache-control', 'no-store').send(labels);
}
