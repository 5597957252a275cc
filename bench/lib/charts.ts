// The report's charts: each Series (bench/lib/results.ts) as a Vega-Lite spec, rendered to SVG in
// Node by Vega's headless view (no canvas, no network: the data is inline).
import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { Series } from './results.js';
import { nearestRank } from './samples.js';

const WIDTH = 560;
const HEIGHT = 260;
const BASE = {
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  width: WIDTH,
  background: 'white',
  config: {
    font: 'sans-serif',
    view: { stroke: null },
    legend: { orient: 'bottom', labelLimit: 400, columns: 3 },
  },
} as const;

/** Percent label of a quantile: 0.5 → p50, 0.999 → p99.9. */
const percentile = (q: number): string => `p${Number((q * 100).toPrecision(6))}`;

/** One line per label with its points marked and a legend: quantile and xy series alike. */
function lineChart<const X, const Y>(title: string, values: object[], x: X, y: Y) {
  return {
    ...BASE,
    title,
    height: HEIGHT,
    data: { values },
    mark: { type: 'line', point: true },
    encoding: { x, y, color: { field: 'line', type: 'nominal', title: null, sort: null } },
  } as const;
}

function specOf(series: Series): TopLevelSpec {
  switch (series.kind) {
    case 'bars': {
      const values = series.bars.map((b) => ({
        label: b.label,
        value: b.value,
        lo: b.spread?.[0] ?? b.value,
        hi: b.spread?.[1] ?? b.value,
      }));
      const y = { field: 'label', type: 'nominal', sort: null, title: null } as const;
      return {
        ...BASE,
        title: series.title,
        height: { step: 28 },
        data: { values },
        layer: [
          {
            mark: { type: 'bar', color: '#4c78a8' },
            encoding: { y, x: { field: 'value', type: 'quantitative', title: series.unit } },
          },
          {
            mark: { type: 'rule', color: '#222', strokeWidth: 2 },
            encoding: { y, x: { field: 'lo', type: 'quantitative' }, x2: { field: 'hi' } },
          },
          {
            mark: { type: 'text', align: 'left', dx: 6, color: '#222' },
            encoding: {
              y,
              x: { field: 'hi', type: 'quantitative' },
              text: { field: 'value', format: ',.3~s' },
            },
          },
        ],
      };
    }
    case 'quantiles': {
      const values = series.lines.flatMap((line) =>
        line.points
          .filter((p) => p.value > 0)
          .map((p) => ({ line: line.label, q: p.q, percentile: percentile(p.q), value: p.value })),
      );
      return lineChart(
        series.title,
        values,
        {
          field: 'percentile',
          type: 'ordinal',
          sort: { field: 'q', op: 'min' },
          title: 'quantile',
          axis: { labelAngle: 0 },
        },
        { field: 'value', type: 'quantitative', scale: { type: 'log' }, title: `${series.unit} (log scale)` },
      );
    }
    case 'histogram': {
      const sorted = [...series.samples].sort((a, b) => a - b);
      const marks = [0.5, 0.99].map((q) => ({ label: percentile(q), value: nearestRank(sorted, q) }));
      return {
        ...BASE,
        title: `${series.title} (${sorted.length} samples)`,
        height: HEIGHT,
        layer: [
          {
            data: { values: sorted.map((v) => ({ v })) },
            mark: { type: 'bar', color: '#4c78a8' },
            encoding: {
              x: { field: 'v', type: 'quantitative', bin: { maxbins: 40 }, title: series.unit },
              y: { aggregate: 'count', type: 'quantitative', title: 'samples', axis: { tickMinStep: 1 } },
            },
          },
          {
            data: { values: marks },
            mark: { type: 'rule', color: '#e45756', strokeDash: [4, 3] },
            encoding: { x: { field: 'value', type: 'quantitative' } },
          },
          {
            data: { values: marks },
            mark: { type: 'text', color: '#e45756', align: 'left', dx: 3, y: 8 },
            encoding: { x: { field: 'value', type: 'quantitative' }, text: { field: 'label' } },
          },
        ],
      };
    }
    case 'xy': {
      const values = series.lines.flatMap((line) =>
        line.points.map((p) => ({ line: line.label, x: p.x, y: p.y })),
      );
      return lineChart(
        series.title,
        values,
        { field: 'x', type: 'quantitative', title: series.xUnit },
        { field: 'y', type: 'quantitative', title: series.yUnit },
      );
    }
  }
}

export async function renderSvg(series: Series): Promise<string> {
  const view = new View(parse(compile(specOf(series)).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
