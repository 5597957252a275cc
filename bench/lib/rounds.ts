// Side-by-side comparisons: every side runs once per round, the order reversed every other round,
// so drift in machine load and warm-up effects hit all sides alike; ratios are taken per round.
import { median, type ResultRow, spreadOf } from './results.js';

type Sides<T> = Readonly<Record<string, () => Promise<T>>>;
type OnRound<T> = (round: number, results: Readonly<Record<string, T>>) => void;

/**
 * Runs each side once per round, one after the other, the order reversed every other round, and
 * returns each side's results in round order.
 */
export async function alternate<T>(
  rounds: number,
  sides: Sides<T>,
  onRound?: OnRound<T>,
): Promise<Record<string, T[]>> {
  const names = Object.keys(sides);
  const out: Record<string, T[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < rounds; i++) {
    const results: Record<string, T> = {};
    for (const name of i % 2 === 0 ? names : [...names].reverse()) results[name] = await sides[name]!();
    for (const name of names) out[name]!.push(results[name]!);
    onRound?.(i + 1, results);
  }
  return out;
}

/** A row whose figure is the median of per-round ratios `numerator[i] / denominator[i]`. */
export function ratioRow(
  row: Omit<ResultRow, 'value' | 'unit' | 'met' | 'spread' | 'rounds'> & { atLeast?: number },
  numerator: readonly number[],
  denominator: readonly number[],
): ResultRow {
  const { atLeast, ...rest } = row;
  const ratios = numerator.map((n, i) => round3(n / denominator[i]!));
  const value = round3(median(ratios));
  return {
    ...rest,
    value,
    unit: '×',
    met: atLeast === undefined ? null : value >= atLeast,
    spread: spreadOf(ratios),
    rounds: ratios,
  };
}

/** A row whose figure is the median of rounds of one measure. */
export function medianRow(
  row: Omit<ResultRow, 'value' | 'spread' | 'rounds' | 'met'> & { met?: (value: number) => boolean },
  values: readonly number[],
  digits = 3,
): ResultRow {
  const { met, ...rest } = row;
  const keep = (v: number): number =>
    Number(v.toPrecision(Math.max(digits, String(Math.round(Math.abs(v))).length)));
  const rounds = values.map(keep);
  const value = keep(median(rounds));
  return {
    ...rest,
    value,
    met: met ? met(value) : null,
    ...(rounds.length > 1 ? { spread: spreadOf(rounds), rounds } : {}),
  };
}

/** Keeps the JSON readable; the report rounds further to what the spread resolves. */
const round3 = (x: number): number => Math.round(x * 1000) / 1000;
