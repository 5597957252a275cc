import { isKeyId } from '../credentials/token.js';
import { CachedKey, type KeyColumns, type KeyProfile, type RareInstants } from './key-state.js';

/** The store's ids are UUIDs as Postgres prints them: kept as their 16 bytes. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const UUID_BYTES = 16;
/** A public key id is `key_` and 16 ASCII characters: kept as those 16 bytes. */
const KEY_ID_PREFIX = 'key_';
const KEY_ID_BYTES = 16;
/** Recently read slots keep their CachedKey, so a hot key's hits allocate nothing. */
const VIEWS = 1024;

/**
 * What the cache keeps of each key besides its hash, one column per field, by slot (HashSlots):
 * the store id and the public key id as 16 bytes each, instants as float64s, the listener epoch
 * as an int32, all outside V8's heap, and on the heap only a reference to a profile shared with
 * the user's like keys. A CachedKey is built from the columns when a request
 * reads the slot, and kept for the next request in a small table of recent ones.
 */
export class SlotColumns {
  readonly #profiles: (KeyProfile | undefined)[] = [];
  readonly #apiKeyIds: Buffer;
  /** Store ids that are not UUIDs (tests, another store): rare, so kept as they are. */
  readonly #otherApiKeyIds = new Map<number, string>();
  readonly #keyIds: Buffer;
  readonly #otherKeyIds = new Map<number, string>();
  readonly #verifiedAt: Float64Array;
  readonly #epochs: Int32Array;
  readonly #issuedAt: Float64Array;
  /** NaN: never expires. */
  readonly #expiresAt: Float64Array;
  /** Revoked, rotated or a previous secret: few keys, so a map. */
  readonly #rare = new Map<number, RareInstants>();
  readonly #views: (CachedKey | undefined)[] = new Array<CachedKey | undefined>(VIEWS).fill(undefined);
  readonly #viewSlots = new Int32Array(VIEWS).fill(-1);

  constructor(capacity: number) {
    const slots = Math.max(1, capacity);
    this.#apiKeyIds = Buffer.alloc(slots * UUID_BYTES);
    this.#keyIds = Buffer.alloc(slots * KEY_ID_BYTES);
    this.#verifiedAt = new Float64Array(slots);
    this.#epochs = new Int32Array(slots);
    this.#issuedAt = new Float64Array(slots);
    this.#expiresAt = new Float64Array(slots);
  }

  /** Fills `slot` (empty, or cleared) and returns the key as a request reads it. */
  write(
    slot: number,
    apiKeyId: string,
    keyId: string,
    columns: KeyColumns,
    verifiedAt: number,
    epoch: number,
  ): CachedKey {
    this.#profiles[slot] = columns.profile;
    if (isKeyId(keyId)) this.#keyIds.write(keyId.slice(KEY_ID_PREFIX.length), slot * KEY_ID_BYTES, 'latin1');
    else this.#otherKeyIds.set(slot, keyId);
    if (UUID.test(apiKeyId)) this.#apiKeyIds.write(apiKeyId.replaceAll('-', ''), slot * UUID_BYTES, 'hex');
    else this.#otherApiKeyIds.set(slot, apiKeyId);
    this.#issuedAt[slot] = columns.issuedAt;
    this.#expiresAt[slot] = columns.expiresAt ?? Number.NaN;
    if (columns.rare !== null) this.#rare.set(slot, columns.rare);
    this.#stamp(slot, verifiedAt, epoch);
    return this.view(slot);
  }

  /** Marks the key in `slot` revoked at `at` (epoch ms), confirmed then (verifiedAt, epoch). */
  revoke(slot: number, at: number, verifiedAt: number, epoch: number): void {
    const rare = this.#rare.get(slot);
    this.#rare.set(slot, {
      revokedAt: at,
      rotatedAt: rare?.rotatedAt ?? null,
      notAfter: rare?.notAfter ?? null,
    });
    this.#stamp(slot, verifiedAt, epoch);
  }

  /** Lets go of what `slot` holds on the heap. */
  clear(slot: number): void {
    this.#profiles[slot] = undefined;
    this.#otherApiKeyIds.delete(slot);
    this.#otherKeyIds.delete(slot);
    this.#rare.delete(slot);
    this.#forgetView(slot);
  }

  /** Lets go of what every slot holds on the heap. */
  clearAll(): void {
    this.#profiles.length = 0;
    this.#otherApiKeyIds.clear();
    this.#otherKeyIds.clear();
    this.#rare.clear();
    this.#views.fill(undefined);
    this.#viewSlots.fill(-1);
  }

  keyId(slot: number): string {
    const other = this.#otherKeyIds.get(slot);
    if (other !== undefined) return other;
    const offset = slot * KEY_ID_BYTES;
    return KEY_ID_PREFIX + this.#keyIds.toString('latin1', offset, offset + KEY_ID_BYTES);
  }

  /** Whether `slot` holds key `keyId`, without building its id. */
  keyIdIs(slot: number, keyId: string): boolean {
    const other = this.#otherKeyIds.get(slot);
    if (other !== undefined) return other === keyId;
    if (keyId.length !== KEY_ID_PREFIX.length + KEY_ID_BYTES || !keyId.startsWith(KEY_ID_PREFIX))
      return false;
    const offset = slot * KEY_ID_BYTES - KEY_ID_PREFIX.length;
    for (let i = KEY_ID_PREFIX.length; i < keyId.length; i++) {
      if (this.#keyIds[offset + i] !== keyId.charCodeAt(i)) return false;
    }
    return true;
  }

  userId(slot: number): string {
    return (this.#profiles[slot] as KeyProfile).user.userId;
  }

  verifiedAt(slot: number): number {
    return this.#verifiedAt[slot]!;
  }

  epoch(slot: number): number {
    return this.#epochs[slot]!;
  }

  view(slot: number): CachedKey {
    const at = slot & (VIEWS - 1);
    if (this.#viewSlots[at] === slot) return this.#views[at] as CachedKey;
    const expiresAt = this.#expiresAt[slot]!;
    const view = new CachedKey(
      this.#apiKeyId(slot),
      this.keyId(slot),
      {
        profile: this.#profiles[slot] as KeyProfile,
        issuedAt: this.#issuedAt[slot]!,
        expiresAt: Number.isNaN(expiresAt) ? null : expiresAt,
        rare: this.#rare.get(slot) ?? null,
      },
      this.#verifiedAt[slot]!,
      this.#epochs[slot]!,
    );
    this.#views[at] = view;
    this.#viewSlots[at] = slot;
    return view;
  }

  #stamp(slot: number, verifiedAt: number, epoch: number): void {
    this.#verifiedAt[slot] = verifiedAt;
    this.#epochs[slot] = epoch;
    this.#forgetView(slot);
  }

  #forgetView(slot: number): void {
    const at = slot & (VIEWS - 1);
    if (this.#viewSlots[at] !== slot) return;
    this.#viewSlots[at] = -1;
    this.#views[at] = undefined;
  }

  #apiKeyId(slot: number): string {
    const other = this.#otherApiKeyIds.get(slot);
    if (other !== undefined) return other;
    const hex = this.#apiKeyIds.toString('hex', slot * UUID_BYTES, (slot + 1) * UUID_BYTES);
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
}
