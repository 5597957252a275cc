// False-positive rate of `keyward scan` on random input, and its throughput.
// Usage: node dist/bench/scan.js [--mb N] [--candidates N] [--json file]
//  - a corpus of N MiB of random printable text (words of base62, `_`, punctuation, newlines),
//    rich in shape matches, fed through the scanner in 64 KiB chunks as `keyward scan` reads files;
//  - N random strings of the exact token shape (`kw_` + 49 base62): how many pass the checksum.
// Neither contains a real token, so every finding is a false positive.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { TokenScanner } from '../credentials/scanner.js';
import { parseToken, TOKEN_CANDIDATE } from '../credentials/token.js';
import { ResultWriter } from './lib/results.js';

const { values } = parseArgs({
  options: {
    mb: { type: 'string', default: '512' },
    candidates: { type: 'string', default: '20000000' },
    json: { type: 'string' },
  },
});
const MIB = 1024 * 1024;
const BASE62 = Buffer.from('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz');
/** Mostly base62 (long runs, so the shape matches often), some separators and lower-case prefixes. */
const CORPUS_ALPHABET = Buffer.from(
  `${BASE62.toString()}${'abcdefghijklmnopqrstuvwxyz'.repeat(2)}___ \n"=:,.-`,
);

function randomChunk(size: number): Buffer {
  const out = randomBytes(size);
  for (let i = 0; i < size; i++) out[i] = CORPUS_ALPHABET[out[i]! % CORPUS_ALPHABET.length]!;
  return out;
}

const mb = Number(values.mb);
let findings = 0;
let shapeMatches = 0;
const scanner = new TokenScanner(() => {
  findings++;
});
const chunk = 64 * 1024;
let scanMs = 0;
for (let done = 0; done < mb * MIB; done += chunk) {
  const data = randomChunk(chunk);
  shapeMatches += data.toString('latin1').match(new RegExp(TOKEN_CANDIDATE.source, 'g'))?.length ?? 0;
  const t0 = performance.now();
  scanner.push(data);
  scanMs += performance.now() - t0;
}
scanner.end();

const candidates = Number(values.candidates);
let valid = 0;
const body = Buffer.alloc(49);
const t1 = performance.now();
for (let i = 0; i < candidates; i++) {
  const random = randomBytes(49);
  for (let j = 0; j < 49; j++) body[j] = BASE62[random[j]! % 62]!;
  if (parseToken(`kw_${body.toString('latin1')}`).ok) valid++;
}
const candidateMs = performance.now() - t1;

console.log(
  JSON.stringify(
    {
      corpusMiB: mb,
      shapeMatchesInCorpus: shapeMatches,
      falsePositivesInCorpus: findings,
      scanMiBPerSecond: Math.round((mb / (scanMs / 1000)) * 10) / 10,
      shapedCandidates: candidates,
      falsePositivesAmongCandidates: valid,
      expectedRate: '1 / 62^6 ≈ 1.76e-11 per shape match',
      candidatesPerSecond: Math.round(candidates / (candidateMs / 1000)),
    },
    null,
    2,
  ),
);

const writer = new ResultWriter('scan');
writer.row({
  id: 'scan-false-positives',
  measure: `\`keyward scan\` false positives in ${mb} MiB of random text (${shapeMatches} token-shaped matches) and ${candidates.toLocaleString('en')} random token-shaped strings`,
  target: 'reported (expected rate 62⁻⁶ ≈ 1.8·10⁻¹¹ per shape match)',
  value: findings + valid,
  unit: 'findings',
  met: null,
});
writer.row({
  id: 'scan-throughput',
  measure: '`keyward scan` throughput on random text, 64 KiB chunks',
  target: 'reported',
  value: Math.round(mb / (scanMs / 1000)),
  unit: 'MiB/s',
  met: null,
  note: 'one run, so no spread.',
});
await writer.write(values.json);
