import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from './duration.js';

describe('parseDuration', () => {
  it.each([
    ['0s', 0],
    ['30m', 1_800_000],
    ['12h', 43_200_000],
    ['90d', 7_776_000_000],
    ['1h30m', 5_400_000],
    ['1d2h3m4s', 93_784_000],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '1', 'h', '-1h', '1.5h', '90 days', '1y', '1w', ' 1h', '1h ', '1H', '1234567h', '1d1d1d1d1d'])(
    '%j is not a duration',
    (text) => {
      expect(parseDuration(text)).toBeUndefined();
    },
  );
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [-5, '0s'],
    [1_000, '1s'],
    [93_784_000, '1d2h3m4s'],
    [7_776_000_000, '90d'],
  ])('%d ms is %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('round-trips through parseDuration', () => {
    for (const text of ['1d2h3m4s', '90d', '12h', '30m', '45s']) {
      expect(formatDuration(parseDuration(text) ?? -1)).toBe(text);
    }
  });
});
