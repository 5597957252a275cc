import { once } from 'node:events';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../../credentials/token.js';
import { testDatabase } from '../../test/harness/database.js';
import { runCli } from '../../test/support/cli.js';
import { type StoreFixture, storeFixture } from '../../test/support/webhook.js';

let dir: string;
let fx: StoreFixture;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'keyward-scan-'));
  fx = await storeFixture(await testDatabase(), 2);
});
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await fx?.close();
});

/** Writes `mb` MiB of one line of words (no newline) with `token` in the middle; returns the path. */
async function hugeLine(name: string, mb: number, token: string): Promise<string> {
  const path = join(dir, name);
  const out = createWriteStream(path);
  const block = Buffer.from('lorem ipsum dolor sit amet consectetur kw_notatoken '.repeat(20_000));
  const blocks = Math.ceil((mb * 1024 * 1024) / block.length);
  for (let i = 0; i < blocks; i++) {
    if (!out.write(block)) await once(out, 'drain');
    if (i === Math.floor(blocks / 2)) out.write(` ${token} `);
  }
  out.end();
  await once(out, 'close');
  return path;
}

describe('keyward scan', () => {
  it('reports file:line:column and prefix of each token, never the token, and exits 1', async () => {
    const a = generateToken().token;
    const b = generateToken({ prefix: 'acme' }).token;
    const wrong = `${a.slice(0, -1)}${a.endsWith('A') ? 'B' : 'A'}`;
    const file = join(dir, 'config.env');
    writeFileSync(file, `# near miss\nOLD=${wrong}\nAPI_KEY=${a}\n`);
    writeFileSync(join(dir, 'values.yaml'), `token: "${b}"\n`);
    const res = await runCli(['scan', file, join(dir, 'values.yaml')]);
    expect(res.code).toBe(1);
    expect(res.stdout).toContain(`${file}:3:9`);
    expect(res.stdout).toContain(a.slice(0, 7));
    expect(res.stdout).toContain(`values.yaml:1:9`);
    expect(res.stdout).not.toContain(a);
    expect(res.stdout).not.toContain(b);
    expect(res.stdout).not.toContain(':2:');
  });

  it('reads stdin with - and exits 0 when nothing is found', async () => {
    const clean = await runCli(['scan', '-', '-o', 'json'], { stdin: 'nothing here kw_short\n' });
    expect(clean.code).toBe(0);
    expect(JSON.parse(clean.stdout)).toEqual([]);
    const a = generateToken().token;
    const found = await runCli(['scan', '-o', 'json'], { stdin: `x\ny ${a}\n` });
    expect(found.code).toBe(1);
    expect(JSON.parse(found.stdout)).toEqual([
      { file: '<stdin>', line: 2, column: 3, tokenPrefix: a.slice(0, 7), keyId: null },
    ]);
  });

  it('names the key of a token the store knows, by hash, with --store-url', async () => {
    const key = await fx.issueKey(await fx.createUser());
    const unknown = generateToken().token;
    const res = await runCli(['scan', '-', '-o', 'json', '--store-url', fx.url], {
      stdin: `${key.token}\n${unknown}\n`,
    });
    expect(res.code).toBe(1);
    expect((JSON.parse(res.stdout) as Array<{ keyId: string | null }>).map((r) => r.keyId)).toEqual([
      key.keyId,
      null,
    ]);
  });

  it('scans a binary file without failing', async () => {
    const a = generateToken().token;
    const noise = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 2654435761) >>> 24;
    const path = join(dir, 'blob.bin');
    writeFileSync(path, Buffer.concat([noise, Buffer.from(`\0${a}\0`), noise]));
    const res = await runCli(['scan', path]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(1);
    expect(res.stdout).toContain(a.slice(0, 7));
  });

  it('keeps memory bounded on a single 100 MiB line', async () => {
    const a = generateToken().token;
    const small = join(dir, 'small.txt');
    writeFileSync(small, 'nothing\n');
    const baseline = await runCli(['scan', small], { measureRss: true });
    const path = await hugeLine('line.txt', 100, a);
    const res = await runCli(['scan', path, '-o', 'json'], { measureRss: true });
    expect(res.code).toBe(1);
    expect((JSON.parse(res.stdout) as Array<{ line: number }>).map((r) => r.line)).toEqual([1]);
    // Holding the line even once would add 100 MiB (as buffer and string: 200). Read in 64 KiB
    // chunks, what grows is garbage the collector has not reclaimed yet: the same ~40 MiB for a
    // 50 or a 150 MiB line on the machine this was written on.
    const growth = (res.maxRssBytes ?? Number.POSITIVE_INFINITY) - (baseline.maxRssBytes ?? 0);
    expect(growth).toBeLessThan(64 * 1024 * 1024);
  }, 120_000);

  it('exits 2 on a usage error', async () => {
    const res = await runCli(['scan', '-o', 'xml']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('table, json or yaml');
  });
});
