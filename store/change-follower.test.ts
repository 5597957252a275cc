import { describe, expect, it } from 'vitest';
import { decideNotification, planCatchUp } from './change-follower.js';
import type { LoggedChange } from './change-log.js';

const row = (seq: number): LoggedChange => ({
  seq,
  change: { entity: 'user', op: 'updated', userId: `u${seq}` },
});
const rows = (...seqs: number[]): LoggedChange[] => seqs.map(row);

describe('decideNotification', () => {
  it('applies the next seq, skips what was applied, and reads the log past a gap', () => {
    expect(decideNotification(7, 8)).toBe('apply');
    expect(decideNotification(7, 7)).toBe('duplicate');
    expect(decideNotification(7, 3)).toBe('duplicate');
    expect(decideNotification(7, 9)).toBe('catch-up');
    expect(decideNotification(0, 1)).toBe('apply');
    expect(decideNotification(0, 5)).toBe('catch-up');
  });

  it('applies a payload without a seq (a writer from before the log) without moving on', () => {
    expect(decideNotification(7, undefined)).toBe('apply-unlogged');
  });
});

describe('planCatchUp', () => {
  it('applies only what follows the last seq, in order, when the last row is still there', () => {
    expect(planCatchUp(4, rows(4, 5, 7, 8), 100)).toEqual({
      kind: 'apply',
      changes: rows(5, 7, 8),
      last: 8,
      more: false,
    });
  });

  it('has nothing to do when the last row is the newest', () => {
    expect(planCatchUp(4, rows(4), 100)).toEqual({ kind: 'apply', changes: [], last: 4, more: false });
  });

  it('asks for another page when the page is full', () => {
    expect(planCatchUp(4, rows(4, 5, 6), 3)).toEqual({
      kind: 'apply',
      changes: rows(5, 6),
      last: 6,
      more: true,
    });
  });

  it('resets when the last row was pruned, even if the next seqs are there', () => {
    expect(planCatchUp(4, rows(5, 6), 100)).toEqual({ kind: 'reset' });
    expect(planCatchUp(4, rows(9), 100)).toEqual({ kind: 'reset' });
  });

  it('resets when the log holds nothing at or after the last seq (another database, a restore)', () => {
    expect(planCatchUp(4, [], 100)).toEqual({ kind: 'reset' });
  });

  it('from an empty start, trusts a log that still begins at the first seq, and an empty one', () => {
    expect(planCatchUp(0, rows(1, 2), 100)).toEqual({
      kind: 'apply',
      changes: rows(1, 2),
      last: 2,
      more: false,
    });
    expect(planCatchUp(0, [], 100)).toEqual({ kind: 'apply', changes: [], last: 0, more: false });
    expect(planCatchUp(0, rows(3, 4), 100)).toEqual({ kind: 'reset' });
  });
});
