import type pg from 'pg';
import { lookupSubject, type SubjectLookup } from '../store/act-as.js';
import { isPoolAcquireTimeout } from '../store/errors.js';
import type { UsageBatcher } from '../store/usage.js';
import { decideActing, MALFORMED_SUBJECT, mayActAs, type Subject, subjectName } from './acting.js';
import type { CacheEntry } from './cache.js';
import type { LookupQueue } from './lookup-queue.js';
import type { UnavailableReason } from './resolver.js';
import type { Outcome } from './verification.js';

/** A ServiceUser named as a subject, from the store; or why the store could not say. */
export type SubjectSource = (username: string) => Promise<SubjectLookup | null | UnavailableReason>;

/**
 * Subject rows are read from the store on every request that acts as a ServiceUser, through the
 * same bounded lookup queue as key misses: never cached, so a subject suspended or deleted a
 * moment ago is refused at once without any invalidation to get right.
 */
export function subjectSource(pool: pg.Pool, queue: LookupQueue): SubjectSource {
  return async (username) => {
    const release = await queue.acquire('known');
    if (!release) return 'overloaded';
    try {
      return await lookupSubject(pool, username);
    } catch (err) {
      return isPoolAcquireTimeout(err) ? 'overloaded' : 'store_unavailable';
    } finally {
      release();
    }
  };
}

/**
 * The acting step of the pipeline, for a key that verifies on its own (decide() allowed it with
 * no scope requirement): the subject header's form, the actor's spec.actAs, then the subject
 * itself and the required scopes against the narrowed scopes, then `admit` (the key's rate limits
 * count acting requests like any other). Usage is recorded per final answer.
 */
export function actingOutcome(
  entry: CacheEntry,
  subject: Subject | typeof MALFORMED_SUBJECT,
  requiredScopes: readonly string[],
  subjects: SubjectSource,
  usage: UsageBatcher,
  /** The last step for an allowed request (rate limits and quota, then usage), as without acting. */
  admit: (allowed: Extract<Outcome, { kind: 'allow' }>) => Outcome,
): Outcome | Promise<Outcome> {
  const { key } = entry;
  const refuse = (reason: Parameters<typeof deny>[1], named?: string): Outcome => {
    usage.record(key.apiKeyId, 'denied');
    return deny(entry, reason, named);
  };
  if (subject === MALFORMED_SUBJECT) return refuse('subject_malformed');
  const name = subjectName(subject);
  const notAllowed = mayActAs(key, subject);
  if (notAllowed) return refuse(notAllowed, name);
  const finish = (row: SubjectLookup | null): Outcome => {
    const decision = decideActing(key, entry.scopes, subject, row, requiredScopes);
    if (decision.result === 'deny') return refuse(decision.reason, name);
    if (decision.result === 'forbidden') {
      usage.record(key.apiKeyId, 'denied');
      return { kind: 'forbidden', requiredScope: decision.requiredScope, entry, acting: decision.acting };
    }
    return admit({ kind: 'allow', entry, acting: decision.acting });
  };
  if (subject.kind === 'external') return finish(null);
  return subjects(subject.username).then((row) =>
    typeof row === 'string' ? { kind: 'unavailable', reason: row } : finish(row),
  );
}

function deny(
  entry: CacheEntry,
  reason: Extract<Outcome, { kind: 'subject_refused' }>['reason'],
  subject: string | undefined,
): Outcome {
  return subject === undefined
    ? { kind: 'subject_refused', reason, entry }
    : { kind: 'subject_refused', reason, entry, subject };
}
