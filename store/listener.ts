import pg from 'pg';
import { backoffDelay } from '../lib/backoff.js';
import { CHANGES_CHANNEL, parseChange, parseSeq, type StoreChange } from './changes.js';

/**
 * Receives store changes. NOTIFY has no replay: whatever changed while the connection was down
 * is never announced. A subscriber without `synchronise` must therefore drop everything in
 * onDisconnected and again in onConnected; one with it reads what it missed from the change log
 * (store/change-follower.ts) before it is told it is connected.
 */
export interface ChangeSubscriber {
  /** `seq` is the change-log seq the payload carries. Returning `true` (only that) asks for a synchronise now. */
  onChange(change: StoreChange, seq: number | undefined): unknown;
  /**
   * Brings the subscriber up to date from the store over the listener's connection: after every
   * (re)connect before onConnected, and on every heartbeat (the poll when NOTIFY cannot arrive).
   * A failure counts as a lost connection.
   */
  synchronise?(client: Pick<pg.ClientBase, 'query'>): Promise<void>;
  /** LISTEN is in place: the first time, and after every reconnect. */
  onConnected(): void;
  /** The LISTEN connection was lost; a reconnect with backoff is under way. */
  onDisconnected(reason: string): void;
}

export interface ChangeListenerOptions {
  /** Connection settings for the dedicated LISTEN connection (not a pooled one). */
  readonly connection: pg.ClientConfig;
  readonly subscriber: ChangeSubscriber;
  /** First reconnect delay; doubles per failed attempt up to maxBackoffMs (defaults 200 ms, 30 s). */
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /**
   * A silent network partition leaves an idle LISTEN socket looking healthy, so the listener
   * queries every heartbeatMs and reconnects when that fails (default 15 s).
   */
  readonly heartbeatMs?: number;
  /**
   * On a hot standby LISTEN is refused and NOTIFY never arrives, so the listener only polls:
   * `synchronise` every pollIntervalMs instead of every heartbeatMs (default 500 ms).
   */
  readonly pollIntervalMs?: number;
  /** In [0, 1); injectable for tests. */
  readonly random?: () => number;
}

/**
 * LISTENs on keyward_changes on a dedicated connection, hands parsed changes to its subscriber,
 * and reconnects with exponential backoff and jitter, telling the subscriber about loss and return.
 * On a hot standby (no LISTEN there) it only polls, through the subscriber's `synchronise`.
 */
export class ChangeListener {
  private client: pg.Client | undefined;
  private running: Promise<void> | undefined;
  private stop: (() => void) | undefined;
  private readonly stopped: Promise<void>;
  private closing = false;
  private standby = false;

  constructor(private readonly options: ChangeListenerOptions) {
    this.stopped = new Promise((resolve) => {
      this.stop = resolve;
    });
  }

  /** Starts connecting in the background; `connected` tells when LISTEN is in place. */
  start(): void {
    this.running ??= this.run();
  }

  get connected(): boolean {
    return this.client !== undefined;
  }

  /** How changes arrive: NOTIFY on a primary, polling the change log on a standby. */
  get mode(): 'notify' | 'poll' {
    return this.standby ? 'poll' : 'notify';
  }

  /** Ends the connection and stops reconnecting. */
  async close(): Promise<void> {
    this.closing = true;
    this.stop?.();
    await this.running;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.closing) {
      const reason = await this.session();
      if (reason === undefined) {
        failures += 1;
      } else {
        failures = 1;
        if (!this.closing) this.notify(() => this.options.subscriber.onDisconnected(reason));
      }
      if (!this.closing) await this.sleep(this.backoff(failures));
    }
  }

  /**
   * One connection's life. Resolves with why it was lost, or undefined if it never got to LISTEN.
   */
  private async session(): Promise<string | undefined> {
    const client = new pg.Client({
      connectionTimeoutMillis: 10_000,
      ...this.options.connection,
      keepAlive: true,
    });
    let lose: (reason: string) => void = () => undefined;
    const lost = new Promise<string>((resolve) => {
      lose = resolve;
    });
    client.on('error', (err) => lose(err.message));
    client.on('end', () => lose('connection ended'));
    const synchronise = async (): Promise<void> => {
      const sync = this.options.subscriber.synchronise;
      if (sync) await sync.call(this.options.subscriber, client);
      else await client.query('SELECT 1');
    };
    client.on('notification', (msg) => {
      if (msg.channel !== CHANGES_CHANNEL) return;
      const change = parseChange(msg.payload);
      let wanted = false;
      this.notify(() => {
        wanted = this.options.subscriber.onChange(change, parseSeq(msg.payload)) === true;
      });
      if (wanted) {
        synchronise().catch((err: unknown) =>
          lose(`reading the change log failed: ${err instanceof Error ? err.message : String(err)}`),
        );
      }
    });
    try {
      await client.connect();
      const { rows } = await client.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby');
      this.standby = rows[0]?.standby === true;
      if (!this.standby) await client.query(`LISTEN ${CHANGES_CHANNEL}`);
      // After LISTEN: a change committed while the log is read is then announced, not lost.
      await synchronise();
    } catch {
      void client.end().catch(() => undefined);
      return undefined;
    }
    if (this.closing) {
      await client.end().catch(() => undefined);
      return 'closed';
    }
    this.client = client;
    this.notify(() => this.options.subscriber.onConnected());
    const heartbeatMs = this.options.heartbeatMs ?? 15_000;
    const interval = this.standby ? (this.options.pollIntervalMs ?? 500) : heartbeatMs;
    const heartbeat = setInterval(() => {
      const timeout = setTimeout(() => lose('heartbeat timed out'), heartbeatMs);
      synchronise().then(
        () => clearTimeout(timeout),
        (err: unknown) => {
          clearTimeout(timeout);
          lose(`heartbeat failed: ${err instanceof Error ? err.message : String(err)}`);
        },
      );
    }, interval);
    const reason = await Promise.race([lost, this.stopped.then(() => 'closed')]);
    clearInterval(heartbeat);
    this.client = undefined;
    // end() waits for the server's goodbye, which a dead socket never sends: don't block on it.
    const ended = client.end().catch(() => undefined);
    if (this.closing) await ended;
    return reason;
  }

  private backoff(failures: number): number {
    const baseMs = this.options.initialBackoffMs ?? 200;
    const capMs = Math.max(baseMs, this.options.maxBackoffMs ?? 30_000);
    return backoffDelay(failures - 1, { baseMs, capMs }, this.options.random ?? Math.random);
  }

  private async sleep(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
      this.stopped,
    ]);
    clearTimeout(timer);
  }

  /** A throwing subscriber must not take the listener down with it. */
  private notify(call: () => void): void {
    try {
      call();
    } catch {
      // the subscriber's own failure; the listener keeps running
    }
  }
}
