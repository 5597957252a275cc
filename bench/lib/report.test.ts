import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { renderReport } from './report.js';
import type { SuiteResult } from './suite.js';

const suite: SuiteResult = {
  date: '2026-12-01',
  startedAt: '2026-12-01T10:00:00.000Z',
  seconds: 600,
  preset: 'full',
  machine: {
    cores: 2,
    cpuModel: 'Test CPU',
    memoryGiB: 24,
    kernel: '6.1 test',
    node: 'v24.0.0',
    postgres: 'postgres (PostgreSQL) 15.18',
    nginx: 'nginx version: nginx/1.22.1',
    wrk: 'wrk 4.1.0',
    loadAverage: { start: 0.1, end: 1.9 },
    commit: 'abc123',
  },
  benchmarks: [
    {
      name: 'webhook',
      args: ['--duration', '6'],
      budgetMinutes: 9,
      status: 'ok',
      seconds: 500,
      result: {
        bench: 'webhook',
        startedAt: '2026-12-01T10:00:00.000Z',
        seconds: 500,
        rows: [
          {
            id: 'hits-vs-fastify',
            measure: 'cache hits vs bare Fastify',
            target: '≥ 0.95×',
            value: 0.9342,
            unit: '×',
            met: false,
            spread: [0.88, 0.97],
            rounds: [0.88, 0.9342, 0.97],
            note: 'the JSON serialisation dominates the profile',
          },
          {
            id: 'webhook-rss',
            measure: 'RSS at 100,000 entries',
            target: '≤ 128 MiB',
            value: 101.4,
            unit: 'MiB',
            met: true,
          },
        ],
        series: {
          throughput: {
            kind: 'bars',
            title: 'Throughput',
            unit: 'req/s',
            bars: [{ label: 'keyward', value: 50_000, spread: [48_000, 52_000] }],
          },
          'rss-vs-entries': {
            kind: 'xy',
            title: 'RSS',
            xUnit: 'entries',
            yUnit: 'MiB',
            lines: [
              {
                label: 'RSS',
                points: [
                  { x: 0, y: 60 },
                  { x: 100_000, y: 101 },
                ],
              },
            ],
          },
        },
      },
    },
    { name: 'nginx-auth', args: [], budgetMinutes: 3, status: 'missing', seconds: 0 },
  ],
};

describe('the suite report', () => {
  let dir = '';
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('states the machine, rounds figures to their spread, lists missed targets and missing benchmarks', async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyward-report-'));
    const json = join(dir, '2026-12-01.json');
    await writeFile(json, JSON.stringify(suite));
    await writeFile(join(dir, '2026-12-01.notes.md'), 'A hand-written reading.\n');

    const md = await readFile(await renderReport(json), 'utf8');

    expect(md).toContain('| CPU | Test CPU |');
    expect(md).toContain('| Postgres | postgres (PostgreSQL) 15.18 |');
    expect(md).toContain(
      '| cache hits vs bare Fastify <sub>[webhook](#webhook)</sub> | ≥ 0.95× | 0.93× | 0.88–0.97× | **no** |',
    );
    expect(md).toContain(
      '| RSS at 100,000 entries <sub>[webhook](#webhook)</sub> | ≤ 128 MiB | 101 MiB | — | yes |',
    );
    expect(md).toContain(
      '- **cache hits vs bare Fastify**: 0.93× against ≥ 0.95×. The JSON serialisation dominates the profile.',
    );
    expect(md).toContain('`nginx-auth` (missing)');
    expect(md).toContain('## Reading\n\nA hand-written reading.');
    expect(md).toContain('![Throughput](2026-12-01/webhook-throughput.svg)');
    expect(md).not.toContain('0.9342×');
    for (const file of ['webhook-throughput.svg', 'webhook-rss-vs-entries.svg']) {
      const svg = await readFile(join(dir, '2026-12-01', file), 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
    }
    expect(existsSync(join(dir, '2026-12-01', 'nginx-auth.svg'))).toBe(false);
  });
});
