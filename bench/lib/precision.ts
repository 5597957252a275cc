// Figures in the report carry no more digits than their spread resolves: a figure whose rounds
// range over 0.88–0.97 is 0.93, not 0.9342; one measured once keeps three significant digits.
// The step comes from half the spread's width, the most a median can be off from the rounds on
// either side: from the whole width, a median of 6.4 over −2.0–10 would read "10", a figure no
// round gave.

/** Significant digits of a figure with no spread (a single measurement). */
const SINGLE_MEASUREMENT_DIGITS = 3;
/** Significant digits kept of a spread's ends, which are measured rounds, not estimates. */
const SPREAD_END_DIGITS = 2;

/**
 * The rounding step a spread resolves: the power of ten of its half-width's leading digit
 * (0.88–0.97 → 0.01, 40,100–45,400 → 1,000, −2.0–10 → 1); undefined without a spread or with a
 * zero width.
 */
export function stepOf(spread: readonly [number, number] | undefined): number | undefined {
  if (!spread) return undefined;
  const half = Math.abs(spread[1] - spread[0]) / 2;
  if (!(half > 0) || !Number.isFinite(half)) return undefined;
  return 10 ** Math.floor(Math.log10(half));
}

/** The step of `digits` significant digits of `value`. */
function digitsStep(value: number, digits: number): number {
  if (value === 0 || !Number.isFinite(value)) return 1;
  return 10 ** (Math.floor(Math.log10(Math.abs(value))) - digits + 1);
}

function decimalsOf(value: number): number {
  const text = String(value);
  if (text.includes('e')) return 20;
  return text.split('.')[1]?.length ?? 0;
}

/** `value` rounded to `step`, written with thousands separators and only the decimals the step has. */
export function formatAt(value: number, step: number): string {
  if (!Number.isFinite(value)) return String(value);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const rounded = Math.round(value / step) * step;
  return rounded.toLocaleString('en', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

export interface Figure {
  readonly value: string;
  /** `lo–hi`, or undefined for a single measurement. */
  readonly spread: string | undefined;
}

/**
 * A figure rounded to what its spread resolves, and the spread's ends to that step, or to two
 * significant digits where the step would turn a small end into 0 (0.004–0.9 shows as 0.0040–0.9, not 0.0–0.9).
 */
export function figure(value: number, spread?: readonly [number, number]): Figure {
  const step = stepOf(spread);
  if (step === undefined) {
    // Never more decimals than the benchmark recorded (an integer stays an integer).
    const s = Math.max(digitsStep(value, SINGLE_MEASUREMENT_DIGITS), 10 ** -decimalsOf(value));
    return {
      value: formatAt(value, s),
      spread: spread ? `${formatAt(spread[0], s)}–${formatAt(spread[1], s)}` : undefined,
    };
  }
  const end = (x: number): string =>
    formatAt(x, x !== 0 && Math.round(x / step) === 0 ? digitsStep(x, SPREAD_END_DIGITS) : step);
  return { value: formatAt(value, step), spread: `${end(spread![0])}–${end(spread![1])}` };
}
