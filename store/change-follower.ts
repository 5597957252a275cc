import type pg from 'pg';
import { type LoggedChange, latestSeq, readChanges } from './change-log.js';
import type { StoreChange } from './changes.js';

type Queryable = Pick<pg.ClientBase, 'query'>;

/** What to do with a NOTIFY, given the last seq applied (pure; see ChangeFollower). */
export type NotificationDecision =
  /** The next change: apply it and move on. */
  | 'apply'
  /** Already applied (read from the log first). */
  | 'duplicate'
  /** Changes between last and this one were not announced to us (a gap): read them from the log. */
  | 'catch-up'
  /** No seq (a writer from before the change log): apply it, it is in no log. */
  | 'apply-unlogged';

export function decideNotification(last: number, seq: number | undefined): NotificationDecision {
  if (seq === undefined) return 'apply-unlogged';
  if (seq <= last) return 'duplicate';
  // Writers draw seqs in commit order, so last + 1 is the next commit; anything beyond is a gap
  // (missed notifications, or a rolled-back seq, which the log read settles).
  return seq === last + 1 ? 'apply' : 'catch-up';
}

export type CatchUpPlan =
  /** Apply `changes` in order; `last` is then the newest seq seen; `more` asks for another page. */
  | {
      readonly kind: 'apply';
      readonly changes: readonly LoggedChange[];
      readonly last: number;
      readonly more: boolean;
    }
  /** The log no longer reaches back to `last` (pruned, or another database): drop the cache. */
  | { readonly kind: 'reset' };

/**
 * Judges one page read with `seq >= last` (pure). The row `last` itself must still be there: only
 * then is nothing between it and the page missing. `last` 0 means "followed since the log was
 * empty", so the page must start at the first seq ever drawn.
 */
export function planCatchUp(last: number, page: readonly LoggedChange[], limit: number): CatchUpPlan {
  const first = page[0];
  if (last === 0) {
    if (first !== undefined && first.seq !== 1) return { kind: 'reset' };
  } else if (first?.seq !== last) {
    return { kind: 'reset' };
  }
  const changes = page.filter((c) => c.seq > last);
  return { kind: 'apply', changes, last: page.at(-1)?.seq ?? last, more: page.length >= limit };
}

/** How a change reached the follower: by NOTIFY, by reading the log, or by a NOTIFY without a seq. */
export type ChangeSource = 'notify' | 'log' | 'unlogged';

export interface FollowerTarget {
  /** One change the cache missed or has just been told about. */
  apply(change: StoreChange, source: ChangeSource): void;
  /**
   * The cache cannot be brought up to date change by change: distrust everything it holds.
   * `initial` is the first sync (nothing to bridge), `pruned` a gap the log no longer covers.
   */
  reset(reason: 'initial' | 'pruned'): void;
  /** After every sync, and after every change applied from a NOTIFY: the last seq applied. */
  synced?(last: number): void;
}

export interface FollowerCounts {
  /** Changes applied from NOTIFY payloads. */
  readonly notified: number;
  /** Changes applied from log reads (missed notifications, polling on a replica). */
  readonly caughtUp: number;
  /** Times the cache was dropped because the log could not bridge the gap. */
  readonly resets: number;
}

const DEFAULT_PAGE = 1000;

/**
 * Keeps a cache in step with the change log: applies each seq exactly once, whether it comes by
 * NOTIFY or by reading the log, and drops the cache only when the log no longer reaches back to
 * the last seq applied. Not synced yet (start, or after a reset) it jumps to the newest seq.
 */
export class ChangeFollower {
  #last: number | undefined;
  #syncing: Promise<void> | undefined;
  #again = false;
  #counts = { notified: 0, caughtUp: 0, resets: 0 };

  constructor(
    private readonly target: FollowerTarget,
    private readonly pageSize = DEFAULT_PAGE,
  ) {}

  /** The last seq applied, undefined before the first sync. */
  get last(): number | undefined {
    return this.#last;
  }

  get counts(): FollowerCounts {
    return { ...this.#counts };
  }

  /**
   * A NOTIFY arrived. Returns true if a log read is needed (the caller runs sync), false if the
   * change was settled here.
   */
  notified(seq: number | undefined, change: StoreChange): boolean {
    if (this.#syncing !== undefined || this.#last === undefined) {
      // A read is under way; its page may end before this seq, so read once more after it.
      this.#again = true;
      if (seq === undefined) this.target.apply(change, 'unlogged');
      return false;
    }
    switch (decideNotification(this.#last, seq)) {
      case 'apply':
        this.target.apply(change, 'notify');
        this.#last = seq;
        this.#counts.notified += 1;
        this.target.synced?.(seq!);
        return false;
      case 'apply-unlogged':
        this.target.apply(change, 'unlogged');
        return false;
      case 'duplicate':
        return false;
      default:
        return true;
    }
  }

  /** Reads the log until it is current. One read at a time; concurrent callers share it. */
  sync(client: Queryable): Promise<void> {
    this.#syncing ??= this.#run(client).finally(() => {
      this.#syncing = undefined;
    });
    return this.#syncing;
  }

  async #run(client: Queryable): Promise<void> {
    do {
      this.#again = false;
      await this.#catchUp(client);
    } while (this.#again);
  }

  async #catchUp(client: Queryable): Promise<void> {
    let reason: 'initial' | 'pruned' = 'initial';
    for (;;) {
      if (this.#last === undefined) {
        const latest = await latestSeq(client);
        this.target.reset(reason);
        this.#last = latest;
        this.target.synced?.(latest);
        return;
      }
      const page = await readChanges(client, this.#last, this.pageSize);
      const plan = planCatchUp(this.#last, page, this.pageSize);
      if (plan.kind === 'reset') {
        this.#counts.resets += 1;
        this.#last = undefined;
        reason = 'pruned';
        continue;
      }
      for (const { change } of plan.changes) this.target.apply(change, 'log');
      this.#counts.caughtUp += plan.changes.length;
      this.#last = plan.last;
      this.target.synced?.(plan.last);
      if (!plan.more) return;
    }
  }
}
