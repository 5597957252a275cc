import { describe, expect, it } from 'vitest';
import type { KeyLookup } from '../store/lookup.js';
import { keyLookup } from '../test/support/key-lookup.js';
import { SlotColumns } from './cache-columns.js';
import { keyColumns, UserRecord } from './key-state.js';

function row(overrides: Partial<KeyLookup> = {}): KeyLookup {
  return keyLookup({
    apiKeyId: '0b7e4c1e-5a3f-4d2b-9c8e-1f2a3b4c5d6e',
    keyId: 'key_AbCdEfGh01234567',
    expiresAt: new Date(5_000),
    issuedAt: new Date(1_000),
    ...overrides,
  });
}

function written(columns: SlotColumns, slot: number, key: KeyLookup) {
  return columns.write(slot, key.apiKeyId, key.keyId, keyColumns(new UserRecord(key), key), 7, 3);
}

describe('SlotColumns', () => {
  it('gives back the ids, instants and stamps it was written, packed or not', () => {
    const columns = new SlotColumns(4);
    const packed = row();
    const other = row({ apiKeyId: 'not-a-uuid', keyId: 'legacy-id', expiresAt: null });
    written(columns, 0, packed);
    written(columns, 1, other);
    for (const [slot, key] of [
      [0, packed],
      [1, other],
    ] as const) {
      // Read from the columns, not from the view write() returned and memoized.
      columns.clear(2);
      const view = columns.view(slot);
      expect([view.apiKeyId, view.keyId, view.expiresAt, view.issuedAt]).toEqual([
        key.apiKeyId,
        key.keyId,
        key.expiresAt,
        key.issuedAt,
      ]);
      expect([view.verifiedAt, view.epoch, columns.verifiedAt(slot), columns.epoch(slot)]).toEqual([
        7, 3, 7, 3,
      ]);
      expect(columns.keyIdIs(slot, key.keyId)).toBe(true);
    }
    expect(columns.keyIdIs(0, 'key_AbCdEfGh01234568')).toBe(false);
    expect(columns.keyIdIs(0, 'legacy-id')).toBe(false);
    expect(columns.keyIdIs(1, packed.keyId)).toBe(false);
  });

  it('answers a revoked key as revoked from then on, keeping what else it knew', () => {
    const columns = new SlotColumns(1);
    const before = written(columns, 0, row({ secret: { current: false, notAfter: new Date(9_000) } }));
    columns.revoke(0, 8_000, 8_000, 4);
    const after = columns.view(0);
    expect([before.revoked, after.revoked, after.revokedAt?.getTime(), after.graceEnd]).toEqual([
      false,
      true,
      8_000,
      9_000,
    ]);
    expect([after.verifiedAt, after.epoch]).toEqual([8_000, 4]);
  });

  it('does not serve a cleared slot from its memo of recent reads', () => {
    const columns = new SlotColumns(2);
    const first = written(columns, 0, row());
    expect(columns.view(0)).toBe(first);
    columns.clear(0);
    const second = written(columns, 0, row({ keyId: 'key_ZZZZZZZZZZZZZZZZ' }));
    expect(second).not.toBe(first);
    expect(columns.view(0).keyId).toBe('key_ZZZZZZZZZZZZZZZZ');
  });
});
