// Prints vitest's JSON report as the one line CI reads: `N passed, N failed`.
import { readFileSync } from 'node:fs';

let report;
try {
  report = JSON.parse(readFileSync(process.argv[2], 'utf8'));
} catch {
  console.log('0 passed, 1 failed');
  process.exit(1);
}
// A suite that failed to load (e.g. a failing beforeAll) counts as a failure even if it has no tests.
const failedSuites = report.testResults.filter(
  (f) => f.status === 'failed' && f.assertionResults.every((a) => a.status !== 'failed'),
).length;
const failed = report.numFailedTests + failedSuites;
const skipped = report.numPendingTests + report.numTodoTests;
console.log(`${report.numPassedTests} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
