import type { LimitDefinition } from '../api/ratelimits.js';
import { effectiveScopes } from '../api/scopes.js';
import type { KeyLimits, KeyLookup } from '../store/lookup.js';
import { groupsHeaderOf, type KeyRecord, type KeyState } from './decision.js';

/** A key's scopes as the hot path needs them; shared by every key of a user that lists the same. */
interface Narrowed {
  readonly keyScopes: string[] | null;
  readonly scopes: readonly string[];
  readonly header: string;
}

const NO_LIMITS: readonly LimitDefinition[] = Object.freeze([]);
const CURRENT_SECRET = Object.freeze({ current: true as const });

/**
 * What keys of one user with the same flags, scope list and no limits of their own share: most
 * of a user's keys, so a cached key holds one reference instead of four fields.
 */
export interface KeyProfile {
  readonly user: UserRecord;
  readonly notPermitted: boolean;
  readonly disabled: boolean;
  readonly narrowed: Narrowed;
  readonly limits: KeyLimits | undefined;
}

/**
 * What every cached key of one ServiceUser shares: the user's half of the store row and what is
 * derived from it (groups header, scopes narrowed per distinct key scope list, key profiles). The
 * cache keeps one per user and state (VerifyCache interns them by user id and content), so 100,000
 * keys of one user hold one copy of its groups, scopes, acting globs and headers instead of 100,000.
 */
export class UserRecord {
  readonly userId: string;
  readonly username: string;
  readonly groups: string[];
  readonly userScopes: string[];
  readonly suspended: boolean;
  readonly kubernetesAuthentication: boolean;
  readonly userDeleted: boolean;
  readonly actAs: KeyLookup['actAs'];
  readonly userLimits: readonly LimitDefinition[];
  readonly groupsHeader: string;
  /** The limits of a key with none of its own: shared; undefined when the user has none either. */
  readonly #inheritedLimits: KeyLimits | undefined;
  readonly #inherited: Narrowed;
  /** By the key's scope list (JSON): bounded by the distinct lists among this user's keys. */
  readonly #narrowed = new Map<string, Narrowed>();
  /** The profile of a key with the user's scopes, no limits of its own and neither flag: the common case. */
  readonly #plainProfile: KeyProfile;
  /** Other shared profiles, by flags and scope list: bounded like #narrowed (times four). */
  readonly #profiles = new Map<string, KeyProfile>();

  constructor(row: KeyLookup) {
    this.userId = row.userId;
    this.username = row.username;
    this.groups = row.groups;
    this.userScopes = row.userScopes;
    this.suspended = row.suspended;
    this.kubernetesAuthentication = row.kubernetesAuthentication;
    this.userDeleted = row.userDeleted;
    this.actAs = row.actAs;
    this.userLimits = row.limits?.user.length ? row.limits.user : NO_LIMITS;
    this.groupsHeader = groupsHeaderOf(row.groups);
    this.#inheritedLimits =
      this.userLimits.length === 0 ? undefined : { key: NO_LIMITS, user: this.userLimits, quota: null };
    const scopes = effectiveScopes(row.userScopes, null);
    this.#inherited = { keyScopes: null, scopes, header: scopes.join(',') };
    this.#plainProfile = {
      user: this,
      notPermitted: false,
      disabled: false,
      narrowed: this.#inherited,
      limits: this.#inheritedLimits,
    };
  }

  /** Whether `row` says the same about this user: only then may its key share this record. */
  matches(row: KeyLookup): boolean {
    return (
      row.userId === this.userId &&
      row.username === this.username &&
      row.suspended === this.suspended &&
      row.kubernetesAuthentication === this.kubernetesAuthentication &&
      row.userDeleted === this.userDeleted &&
      sameList(row.groups, this.groups) &&
      sameList(row.userScopes, this.userScopes) &&
      sameList(row.actAs?.serviceUsers, this.actAs?.serviceUsers) &&
      sameList(row.actAs?.externalSubjects, this.actAs?.externalSubjects) &&
      sameLimits(row.limits?.user ?? NO_LIMITS, this.userLimits)
    );
  }

  narrow(keyScopes: string[] | null): Narrowed {
    if (keyScopes === null) return this.#inherited;
    const id = JSON.stringify(keyScopes);
    let narrowed = this.#narrowed.get(id);
    if (narrowed === undefined) {
      const scopes = effectiveScopes(this.userScopes, keyScopes);
      narrowed = { keyScopes, scopes, header: scopes.join(',') };
      this.#narrowed.set(id, narrowed);
    }
    return narrowed;
  }

  limitsFor(limits: KeyLimits | undefined): KeyLimits | undefined {
    if (!hasOwnLimits(limits)) return this.#inheritedLimits;
    return { key: limits.key, user: this.userLimits, quota: limits.quota };
  }

  /** The key's half of `row` that other keys of this user may share; a key's own limits are its own. */
  profile(row: KeyRow): KeyProfile {
    const { notPermitted, disabled, keyScopes } = row;
    if (hasOwnLimits(row.limits)) {
      return {
        user: this,
        notPermitted,
        disabled,
        narrowed: this.narrow(keyScopes),
        limits: this.limitsFor(row.limits),
      };
    }
    if (!notPermitted && !disabled && keyScopes === null) return this.#plainProfile;
    const id = `${notPermitted ? 1 : 0}${disabled ? 1 : 0}${keyScopes === null ? '' : JSON.stringify(keyScopes)}`;
    let profile = this.#profiles.get(id);
    if (profile === undefined) {
      profile = {
        user: this,
        notPermitted,
        disabled,
        narrowed: this.narrow(keyScopes),
        limits: this.#inheritedLimits,
      };
      this.#profiles.set(id, profile);
    }
    return profile;
  }
}

/** The key's own half of a store row: what a CachedKey reads from it. */
type KeyRow = Pick<
  KeyLookup,
  | 'apiKeyId'
  | 'keyId'
  | 'keyScopes'
  | 'notPermitted'
  | 'disabled'
  | 'limits'
  | 'revokedAt'
  | 'expiresAt'
  | 'issuedAt'
  | 'rotatedAt'
  | 'secret'
>;

/**
 * The instants of a key that most keys lack (revoked, rotated, a previous secret's grace end), as
 * epoch ms or null; a key with none of them holds null instead of an object.
 */
export interface RareInstants {
  readonly revokedAt: number | null;
  readonly rotatedAt: number | null;
  /** Grace end of a previous secret; null for the current one. */
  readonly notAfter: number | null;
}

/** A key's own half of a store row in the form the cache keeps it (webhook/cache-columns.ts holds it in columns). */
export interface KeyColumns {
  readonly profile: KeyProfile;
  readonly issuedAt: number;
  /** Epoch ms; null: never expires. */
  readonly expiresAt: number | null;
  readonly rare: RareInstants | null;
}

export function keyColumns(user: UserRecord, row: KeyRow): KeyColumns {
  const notAfter = row.secret.current ? null : row.secret.notAfter.getTime();
  return {
    profile: user.profile(row),
    issuedAt: row.issuedAt.getTime(),
    expiresAt: row.expiresAt?.getTime() ?? null,
    rare:
      row.revokedAt === null && row.rotatedAt === null && notAfter === null
        ? null
        : {
            revokedAt: row.revokedAt?.getTime() ?? null,
            rotatedAt: row.rotatedAt?.getTime() ?? null,
            notAfter,
          },
  };
}

/**
 * A key as the request path reads it: the key's own fields, a profile shared with its user's like
 * keys (which holds the user's shared record), and when the store confirmed it. It is its own
 * `key` (a getter on the prototype, as are the user's and the profile's fields), and times are
 * epoch ms: a Date costs 96 bytes, a number 16. What the webhook never reads (the key's namespace
 * and name, the secret's display prefix: logs use the token's own) is not kept.
 */
export class CachedKey implements KeyRecord, KeyState {
  readonly apiKeyId: string;
  readonly keyId: string;
  /** When the store last confirmed this row, on the cache's clock (VerifyCache). */
  readonly verifiedAt: number;
  /** The listener epoch in which it was confirmed (VerifyCache). */
  readonly epoch: number;
  readonly #profile: KeyProfile;
  readonly #issuedAt: number;
  readonly #expiresAt: number | null;
  readonly #rare: RareInstants | null;

  constructor(apiKeyId: string, keyId: string, columns: KeyColumns, verifiedAt: number, epoch: number) {
    this.apiKeyId = apiKeyId;
    this.keyId = keyId;
    this.verifiedAt = verifiedAt;
    this.epoch = epoch;
    this.#profile = columns.profile;
    this.#issuedAt = columns.issuedAt;
    this.#expiresAt = columns.expiresAt;
    this.#rare = columns.rare;
  }

  get key(): KeyRecord {
    return this;
  }
  get user(): UserRecord {
    return this.#profile.user;
  }
  get notPermitted(): boolean {
    return this.#profile.notPermitted;
  }
  get disabled(): boolean {
    return this.#profile.disabled;
  }
  get limits(): KeyLimits | undefined {
    return this.#profile.limits;
  }
  get keyScopes(): string[] | null {
    return this.#profile.narrowed.keyScopes;
  }
  get scopes(): readonly string[] {
    return this.#profile.narrowed.scopes;
  }
  get scopesHeader(): string {
    return this.#profile.narrowed.header;
  }
  get userId(): string {
    return this.user.userId;
  }
  get username(): string {
    return this.user.username;
  }
  get groups(): string[] {
    return this.user.groups;
  }
  get userScopes(): string[] {
    return this.user.userScopes;
  }
  get suspended(): boolean {
    return this.user.suspended;
  }
  get kubernetesAuthentication(): boolean {
    return this.user.kubernetesAuthentication;
  }
  get userDeleted(): boolean {
    return this.user.userDeleted;
  }
  get actAs(): KeyLookup['actAs'] {
    return this.user.actAs;
  }
  get groupsHeader(): string {
    return this.user.groupsHeader;
  }
  get revoked(): boolean {
    return (this.#rare !== null && this.#rare.revokedAt !== null) || this.user.userDeleted;
  }
  get graceEnd(): number {
    return this.#rare?.notAfter ?? Number.POSITIVE_INFINITY;
  }
  get expiry(): number {
    return this.#expiresAt ?? Number.POSITIVE_INFINITY;
  }
  get deadline(): number {
    return Math.min(this.graceEnd, this.expiry);
  }
  get revokedAt(): Date | null {
    return dateOrNull(this.#rare?.revokedAt ?? null);
  }
  get expiresAt(): Date | null {
    return dateOrNull(this.#expiresAt);
  }
  get issuedAt(): Date {
    return new Date(this.#issuedAt);
  }
  get rotatedAt(): Date | null {
    return dateOrNull(this.#rare?.rotatedAt ?? null);
  }
  get secret(): KeyLookup['secret'] {
    const notAfter = this.#rare?.notAfter ?? null;
    return notAfter === null ? CURRENT_SECRET : { current: false, notAfter: new Date(notAfter) };
  }
}

/** A key's state on its own, not shared with other keys (tests, and answers the cache refuses to keep). */
export function keyState(row: KeyLookup, verifiedAt = 0, epoch = 0): CachedKey {
  return new CachedKey(row.apiKeyId, row.keyId, keyColumns(new UserRecord(row), row), verifiedAt, epoch);
}

function hasOwnLimits(limits: KeyLimits | undefined): limits is KeyLimits {
  return limits !== undefined && (limits.key.length > 0 || limits.quota !== null);
}

function dateOrNull(ms: number | null): Date | null {
  return ms === null ? null : new Date(ms);
}

function sameList(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameLimits(a: readonly LimitDefinition[], b: readonly LimitDefinition[]): boolean {
  return a === b || (a.length === b.length && JSON.stringify(a) === JSON.stringify(b));
}
