// Renders bench/results/<date>.json into <date>.md and the SVG charts under <date>/: the machine,
// the targets table (figures rounded to what their spread resolves), the missed targets with the
// notes their benchmarks gave, and every benchmark's rows, notes and charts. An optional
// <date>.notes.md beside the JSON (hand-written reading of the figures) is included as it is.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { renderSvg } from './charts.js';
import { figure } from './precision.js';
import type { ResultRow } from './results.js';
import type { SuiteEntry, SuiteResult } from './suite.js';

const cell = (text: string): string => text.replaceAll('|', '\\|').replaceAll('\n', ' ');

function figureText(row: ResultRow): { value: string; spread: string } {
  const f = figure(row.value, row.spread);
  const unit = row.unit === '×' ? '×' : ` ${row.unit}`;
  return { value: `${f.value}${unit}`, spread: f.spread === undefined ? '—' : `${f.spread}${unit}` };
}

/** A note as a sentence: capitalised, ending with a full stop. */
const sentence = (note: string): string => {
  const text = note.trim();
  const capital = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
};

const metText = (met: boolean | null): string => (met === null ? '—' : met ? 'yes' : '**no**');

function minutes(seconds: number): string {
  return `${(seconds / 60).toFixed(1)} min`;
}

function statusLine(entry: SuiteEntry): string {
  switch (entry.status) {
    case 'ok':
      return `${minutes(entry.seconds)} (budget ${entry.budgetMinutes} min), \`${['node', `dist/bench/${entry.name}.js`, ...entry.args].join(' ')}\``;
    case 'missing':
      return `**missing**: \`dist/bench/${entry.name}.js\` does not exist in this build, so its rows are absent.`;
    case 'failed':
      return `**failed** after ${minutes(entry.seconds)}: ${entry.error ?? 'no result written'}`;
  }
}

export async function renderReport(jsonPath: string): Promise<string> {
  const suite = JSON.parse(await readFile(jsonPath, 'utf8')) as SuiteResult;
  const dir = dirname(jsonPath);
  const stem = basename(jsonPath, '.json');
  const chartDir = join(dir, stem);
  await mkdir(chartDir, { recursive: true });
  const m = suite.machine;
  const out: string[] = [];
  const line = (text = ''): void => {
    out.push(text);
  };

  line(`# keyward benchmarks, ${suite.date}`);
  line();
  if (suite.preset === 'quick') {
    line(
      '> **Quick sizes**: this run used the reduced sizes of `npm run bench -- --quick`, which prove the plumbing; its figures are not comparable with the targets.',
    );
    line();
  }
  const missing = suite.benchmarks.filter((b) => b.status !== 'ok');
  line(
    `\`npm run bench\` at commit \`${m.commit}\`, started ${suite.startedAt}, ${minutes(suite.seconds)} in all. ` +
      'Servers under test run on CPU 0 and wrk on CPU 1 (taskset); each comparison alternates its sides over several rounds and reports the median, with the lowest and highest round as its spread. ' +
      'A figure has only the digits its spread resolves; one measured once has three significant digits.',
  );
  if (missing.length > 0) {
    line();
    line(
      `**Not in this report**: ${missing.map((b) => `\`${b.name}\` (${b.status})`).join(', ')}; see [Benchmarks](#benchmarks).`,
    );
  }
  line();
  line('## Machine');
  line();
  line('| | |');
  line('|---|---|');
  line(`| cores | ${m.cores} |`);
  line(`| CPU | ${cell(m.cpuModel)} |`);
  line(`| memory | ${m.memoryGiB} GiB |`);
  line(`| kernel | ${cell(m.kernel)} |`);
  line(`| Node | ${m.node} |`);
  line(`| Postgres | ${cell(m.postgres)} |`);
  line(`| nginx | ${cell(m.nginx)} |`);
  line(`| wrk | ${cell(m.wrk)} |`);
  line(`| load average (1 min) at start / end | ${m.loadAverage.start} / ${m.loadAverage.end} |`);
  line();

  const rows = suite.benchmarks.flatMap((b) => (b.result?.rows ?? []).map((row) => ({ bench: b.name, row })));
  line('## Targets');
  line();
  line('| measure | target | figure | spread | met |');
  line('|---|---|--:|--:|:-:|');
  for (const { bench, row } of rows) {
    const f = figureText(row);
    line(
      `| ${cell(row.measure)} <sub>[${bench}](#${bench})</sub> | ${cell(row.target)} | ${f.value} | ${f.spread} | ${metText(row.met)} |`,
    );
  }
  line();
  const missed = rows.filter(({ row }) => row.met === false);
  if (missed.length > 0) {
    line('## Missed targets');
    line();
    for (const { row } of missed) {
      const f = figureText(row);
      line(
        `- **${row.measure}**: ${f.value} against ${row.target}. ${sentence(row.note ?? 'The benchmark gave no note.')}`,
      );
    }
    line();
  }
  const notesFile = join(dir, `${stem}.notes.md`);
  if (existsSync(notesFile)) {
    line('## Reading');
    line();
    line((await readFile(notesFile, 'utf8')).trim());
    line();
  }

  line('## Benchmarks');
  for (const entry of suite.benchmarks) {
    line();
    line(`### ${entry.name}`);
    line();
    line(statusLine(entry));
    const result = entry.result;
    if (!result) continue;
    line();
    for (const row of result.rows) {
      const f = figureText(row);
      const rounds = row.rounds && row.rounds.length > 1 ? ` Rounds: ${row.rounds.join(', ')}.` : '';
      line(
        `- **${row.measure}**: ${f.value}${f.spread === '—' ? '' : ` (${f.spread})`}.${row.note ? ` ${sentence(row.note)}` : ''}${rounds}`,
      );
    }
    for (const [id, series] of Object.entries(result.series)) {
      const file = `${id.startsWith(entry.name) ? id : `${entry.name}-${id}`}.svg`;
      await writeFile(join(chartDir, file), await renderSvg(series));
      line();
      line(`![${series.title}](${stem}/${file})`);
    }
  }
  line();
  const mdPath = join(dir, `${stem}.md`);
  await writeFile(mdPath, out.join('\n'));
  return mdPath;
}
