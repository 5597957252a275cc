import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../devenv/repo.js';

/**
 * The import boundaries between components, checked on the sources so they cannot erode:
 * product code never imports test/ (nor, apart from the sandbox command, devenv/), devenv/ (the
 * local environment the sandbox, tests and benchmarks share) never imports test/.
 */

const root = repoRoot();
/** What ships in the image and runs in a cluster. */
const PRODUCT = ['api', 'cli', 'credentials', 'lib', 'operator', 'store', 'webhook'];
/** Not product code: the local environment, the tests, the benchmarks, CI, tests of the docs. */
const NON_PRODUCT = ['devenv', 'test', 'bench', '.ci', 'docs'];
/** The one product file that starts the local environment: `keyward sandbox`. */
const SANDBOX = 'cli/sandbox.ts';
/** Not sources of ours, or Go modules. */
const SKIPPED_DIRS = new Set(['node_modules', 'dist', '.git', 'tools']);

function sources(dir = ''): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) return SKIPPED_DIRS.has(entry.name) ? [] : sources(path);
    return /\.(ts|mts|mjs)$/.test(entry.name) ? [path] : [];
  });
}

/** Repository-relative paths of the files `file` imports by relative specifier. */
function localImports(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const specifiers = [
    ...text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm),
  ];
  return specifiers.map((m) => relative(root, normalize(join(root, dirname(file), m[1]!))));
}

const isTest = (file: string): boolean => file.endsWith('.test.ts');
const topOf = (file: string): string => (file.includes('/') ? file.slice(0, file.indexOf('/')) : '');
const under = (file: string, dir: string): boolean => file.startsWith(`${dir}/`);

const files = sources();
const edges = files.flatMap((file) => localImports(file).map((target) => ({ file, target })));

function violations(rule: (edge: { file: string; target: string }) => boolean): string[] {
  return edges.filter(rule).map(({ file, target }) => `${file} imports ${target}`);
}

describe('import boundaries', () => {
  it('sees the sources (the scan finds the imports it guards)', () => {
    expect(files).toContain(SANDBOX);
    expect(edges.some((e) => e.file === SANDBOX && under(e.target, 'devenv'))).toBe(true);
    expect(edges.some((e) => isTest(e.file) && !under(e.file, 'test') && under(e.target, 'test'))).toBe(true);
  });

  it('puts every top-level source folder on one side: product or not', () => {
    const folders = [...new Set(files.map(topOf).filter(Boolean))];
    expect(folders.filter((f) => !PRODUCT.includes(f) && !NON_PRODUCT.includes(f))).toEqual([]);
  });

  it('no file outside test/ imports test/, tests aside', () => {
    expect(
      violations(({ file, target }) => !under(file, 'test') && !isTest(file) && under(target, 'test')),
    ).toEqual([]);
  });

  it('devenv/ imports nothing from test/', () => {
    expect(
      violations(({ file, target }) => under(file, 'devenv') && !isTest(file) && under(target, 'test')),
    ).toEqual([]);
  });

  it('product code imports devenv/ only in the sandbox command', () => {
    expect(
      violations(
        ({ file, target }) =>
          PRODUCT.includes(topOf(file)) && !isTest(file) && file !== SANDBOX && under(target, 'devenv'),
      ),
    ).toEqual([]);
  });

  it('product code never imports the test runner', () => {
    const offenders = files.filter(
      (f) =>
        PRODUCT.includes(topOf(f)) &&
        !isTest(f) &&
        /from\s+['"]vitest/.test(readFileSync(join(root, f), 'utf8')),
    );
    expect(offenders).toEqual([]);
  });

  it('no test support in product folders (fixtures and fake clocks live in test/support)', () => {
    const offenders = files.filter(
      (f) =>
        PRODUCT.includes(topOf(f)) &&
        !isTest(f) &&
        /\bclass Fake\w+|test-support/.test(readFileSync(join(root, f), 'utf8') + f),
    );
    expect(offenders).toEqual([]);
  });
});
