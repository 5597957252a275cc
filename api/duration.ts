/**
 * Durations as users write them in manifests: one or more `<number><unit>` parts with units
 * d, h, m, s — `90d`, `12h`, `1h30m`, `0s`. Defined once here; the CRD schema, the operator and the
 * webhook all use it. Days are 24 hours (no calendars, no DST), like Go and cert-manager.
 */
export const DURATION_PATTERN = /^([0-9]{1,6}[dhms]){1,4}$/;

/** CEL that rejects an all-zero duration (`ttl`, `rotation.every`); RE2 has no lookahead. */
export const NONZERO_DURATION_CEL = "!self.matches('^(0+[dhms])+$')";

const UNIT_MS: Record<string, number> = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 };

/** Milliseconds of a duration string, or undefined when it does not follow the grammar. */
export function parseDuration(text: string): number | undefined {
  if (!DURATION_PATTERN.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/([0-9]+)([dhms])/g)) {
    total += Number(amount) * (UNIT_MS[unit as string] ?? 0);
  }
  return total;
}

/** Compact human form, largest units first: 93_784_000 → `1d2h3m4s`. */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  let rest = Math.floor(ms / 1000);
  let out = '';
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out;
}
