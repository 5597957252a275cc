import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import pg from 'pg';
import { TokenScanner } from '../../credentials/scanner.js';
import { tokenHash } from '../../credentials/token.js';
import { lookupByHash } from '../../store/lookup.js';
import { EXIT_FAILED, EXIT_OK, emit, fail, type OutputFormat, table } from './output.js';

export interface ScanOptions {
  readonly output: OutputFormat;
  readonly storeUrl?: string;
}

interface Hit {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly prefix: string;
  keyId?: string;
  /** Only for the optional store lookup; never printed. */
  readonly hash: Buffer;
}

/** Read size: memory per file is this plus one token, whatever the line lengths. */
const CHUNK_BYTES = 64 * 1024;
/** Folders a checkout is full of that hold no one's secrets. */
const SKIPPED_DIRS = new Set(['.git', 'node_modules']);

async function scanStream(name: string, input: Readable, hits: Hit[]): Promise<void> {
  const scanner = new TokenScanner((finding, token) => {
    hits.push({
      file: name,
      line: finding.line,
      column: finding.column,
      prefix: finding.displayPrefix,
      hash: tokenHash(token),
    });
  });
  for await (const chunk of input) scanner.push(chunk as Buffer);
  scanner.end();
}

/** Files under `path` (itself if a file), depth first, without following symlinked folders. */
async function* filesOf(path: string): AsyncGenerator<string> {
  const info = await stat(path);
  if (!info.isDirectory()) {
    yield path;
    return;
  }
  for (const entry of await readdir(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRS.has(entry.name)) yield* filesOf(child);
    } else if (entry.isFile()) yield child;
  }
}

/** `keyward scan [paths|-]`: 1 when a token was found, 0 when none; never prints a token. */
export async function scanCommand(paths: readonly string[], options: ScanOptions): Promise<number> {
  const hits: Hit[] = [];
  let unreadable = 0;
  for (const path of paths.length === 0 ? ['-'] : paths) {
    if (path === '-') {
      await scanStream('<stdin>', process.stdin, hits);
      continue;
    }
    try {
      for await (const file of filesOf(path)) {
        try {
          await scanStream(file, createReadStream(file, { highWaterMark: CHUNK_BYTES }), hits);
        } catch (err) {
          unreadable++;
          process.stderr.write(
            `keyward: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}\n`,
          );
        }
      }
    } catch (err) {
      return fail(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  if (options.storeUrl !== undefined && hits.length > 0) {
    const pool = new pg.Pool({ connectionString: options.storeUrl, max: 2 });
    try {
      for (const hit of hits) {
        const found = await lookupByHash(pool, hit.hash);
        if (found) hit.keyId = found.keyId;
      }
    } catch {
      process.stderr.write('keyward: the store could not be asked for key ids; reporting without them\n');
    } finally {
      await pool.end();
    }
  }
  const report = hits.map((h) => ({
    file: h.file,
    line: h.line,
    column: h.column,
    tokenPrefix: h.prefix,
    keyId: h.keyId ?? null,
  }));
  emit(options.output, report, () =>
    report.length === 0
      ? 'no keyward tokens found\n'
      : table(report, [
          { header: 'LOCATION', value: (r) => `${r.file}:${r.line}:${r.column}` },
          { header: 'TOKEN-PREFIX', value: (r) => r.tokenPrefix },
          { header: 'KEY-ID', value: (r) => r.keyId ?? (options.storeUrl ? 'unknown' : '') },
        ]),
  );
  return hits.length > 0 || unreadable > 0 ? EXIT_FAILED : EXIT_OK;
}
