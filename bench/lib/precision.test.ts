import { describe, expect, it } from 'vitest';
import { figure, formatAt, stepOf } from './precision.js';

describe('figures rounded to what their spread resolves', () => {
  it('drops the digits a narrow spread cannot tell apart', () => {
    expect(figure(0.9342, [0.88, 0.97])).toEqual({ value: '0.93', spread: '0.88–0.97' });
  });

  it('rounds thousands when the rounds are thousands apart', () => {
    expect(figure(41_887, [40_120, 45_410])).toEqual({ value: '42,000', spread: '40,000–45,000' });
  });

  it('keeps a wide spread honest: the issue’s 0.57–1.05 resolves tenths only', () => {
    expect(figure(0.75, [0.57, 1.05])).toEqual({ value: '0.8', spread: '0.6–1.1' });
  });

  it('never rounds a spread’s small end to zero', () => {
    expect(figure(0.42, [0.004, 0.9])).toEqual({ value: '0.4', spread: '0.0040–0.9' });
  });

  it('rounds to what half the spread resolves, so a median never reads as a figure outside its rounds', () => {
    // The request log's cost in the 2026-12-01 report: the whole width's step (10) made it "10 %".
    expect(figure(6.4, [-2.0, 10.1])).toEqual({ value: '6', spread: '-2–10' });
    expect(figure(0.75, [0.61, 0.79])).toEqual({ value: '0.75', spread: '0.61–0.79' });
  });

  it('gives a single measurement three significant digits and no spread', () => {
    expect(figure(334.4)).toEqual({ value: '334', spread: undefined });
    expect(figure(0.012345)).toEqual({ value: '0.0123', spread: undefined });
    expect(figure(255)).toEqual({ value: '255', spread: undefined });
    expect(figure(37)).toEqual({ value: '37', spread: undefined });
  });

  it('treats identical rounds like a single measurement', () => {
    expect(stepOf([5, 5])).toBeUndefined();
    expect(figure(5.25, [5.25, 5.25])).toEqual({ value: '5.25', spread: '5.25–5.25' });
  });

  it('writes negative figures and decimals of the step only', () => {
    expect(formatAt(-3.26, 0.1)).toBe('-3.3');
    expect(formatAt(123_456, 1000)).toBe('123,000');
  });
});
