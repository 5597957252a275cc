// Re-renders a report from an existing suite result without running anything, e.g. after editing
// a note in the JSON or writing <date>.notes.md beside it.
// Usage: node dist/bench/report.js bench/results/<date>.json
import { renderReport } from './lib/report.js';

const [jsonPath] = process.argv.slice(2);
if (!jsonPath) {
  process.stderr.write('usage: node dist/bench/report.js bench/results/<date>.json\n');
  process.exit(2);
}
process.stdout.write(`wrote ${await renderReport(jsonPath)}\n`);
