import { createRequire } from 'node:module';
import { InvalidArgumentError } from 'commander';

/**
 * Exit codes of the user commands (documented in README.md, "kubectl keyward"): scripts branch on
 * them, so they never change meaning.
 */
export const EXIT_OK = 0;
/** A check failed, something was found (scan), or the command could not do its work. */
export const EXIT_FAILED = 1;
/** The command line was wrong (unknown option, missing argument): nothing was attempted. */
export const EXIT_USAGE = 2;

export type OutputFormat = 'table' | 'json' | 'yaml';

export function parseOutputFormat(value: string): OutputFormat {
  if (value === 'table' || value === 'json' || value === 'yaml') return value;
  throw new InvalidArgumentError('want table, json or yaml');
}

export interface Column<T> {
  readonly header: string;
  readonly value: (row: T) => string | number | boolean | null | undefined;
}

/** Aligned columns like kubectl's, `<none>` for empty cells. */
export function table<T>(rows: readonly T[], columns: ReadonlyArray<Column<T>>): string {
  const cells = rows.map((row) =>
    columns.map((c) => {
      const v = c.value(row);
      return v === undefined || v === null || v === '' ? '<none>' : String(v);
    }),
  );
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: readonly string[]): string =>
    values
      .map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!)))
      .join('   ')
      .trimEnd();
  return `${[line(columns.map((c) => c.header)), ...cells.map(line)].join('\n')}\n`;
}

/** Writes `data` as JSON or YAML, or as the table `render` makes. */
export function emit(format: OutputFormat, data: unknown, render: () => string): void {
  if (format === 'json') process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
  else if (format === 'yaml') process.stdout.write(yaml().stringify(data));
  else process.stdout.write(render());
}

/** A failure message for stderr, the way every user command prints one. */
export function fail(message: string): number {
  process.stderr.write(`keyward: ${message}\n`);
  return EXIT_FAILED;
}

/**
 * Loaded on first use: cli/main.ts imports this module for every command, `keyward webhook` and
 * `keyward operator` included, which never print YAML.
 */
function yaml(): typeof import('yaml') {
  return createRequire(import.meta.url)('yaml') as typeof import('yaml');
}
