import { describe, expect, it } from 'vitest';
import { setConditions } from './conditions.js';

const t0 = new Date('2026-01-01T00:00:00Z');
const t1 = new Date('2026-01-01T01:00:00Z');

describe('setConditions', () => {
  it('stamps a new condition with the generation and the time', () => {
    const out = setConditions(
      undefined,
      [{ type: 'Ready', status: 'False', reason: 'Issuing', message: 'm' }],
      3,
      t0,
    );
    expect(out).toEqual([
      {
        type: 'Ready',
        status: 'False',
        reason: 'Issuing',
        message: 'm',
        lastTransitionTime: t0.toISOString(),
        observedGeneration: 3,
      },
    ]);
  });

  it('keeps lastTransitionTime when the status does not flip, even if reason or message change', () => {
    const first = setConditions(
      undefined,
      [{ type: 'Ready', status: 'False', reason: 'A', message: 'a' }],
      1,
      t0,
    );
    const second = setConditions(
      first,
      [{ type: 'Ready', status: 'False', reason: 'B', message: 'b' }],
      2,
      t1,
    );
    expect(second[0]?.lastTransitionTime).toBe(t0.toISOString());
    expect(second[0]?.reason).toBe('B');
    expect(second[0]?.observedGeneration).toBe(2);
  });

  it('moves lastTransitionTime when the status flips', () => {
    const first = setConditions(
      undefined,
      [{ type: 'Ready', status: 'False', reason: 'A', message: 'a' }],
      1,
      t0,
    );
    const second = setConditions(
      first,
      [{ type: 'Ready', status: 'True', reason: 'Issued', message: 'ok' }],
      1,
      t1,
    );
    expect(second[0]?.lastTransitionTime).toBe(t1.toISOString());
  });

  it('is stable: the same input twice gives an identical list, Ready first', () => {
    const updates = [
      { type: 'Suspended', status: 'False', reason: 'Active', message: '' },
      { type: 'Ready', status: 'True', reason: 'Issued', message: '' },
    ] as const;
    const first = setConditions(undefined, updates, 1, t0);
    expect(first.map((c) => c.type)).toEqual(['Ready', 'Suspended']);
    expect(setConditions(first, updates, 1, t1)).toEqual(first);
  });
});
