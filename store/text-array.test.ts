import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreTestbed } from '../test/support/store-testbed.js';
import { FAST_TEXT_ARRAYS, parseTextArray } from './text-array.js';

let tb: StoreTestbed;

beforeAll(async () => {
  tb = await StoreTestbed.open();
});

afterAll(async () => {
  await tb?.close();
});

async function roundTrip(value: (string | null)[]): Promise<unknown> {
  const { rows } = await tb.pool.query<{ v: unknown }>({
    text: 'SELECT $1::text[] AS v',
    values: [value],
    types: FAST_TEXT_ARRAYS,
  });
  return rows[0]?.v;
}

describe('text[] as Postgres writes it (the key lookup’s arrays)', () => {
  it('reads back plain, quoted, empty and null elements exactly as they were stored', async () => {
    const cases: (string | null)[][] = [
      [],
      ['team-a', 'ops'],
      ['system:masters', 'projects/*', 'reports:read'],
      ['NULL', 'null', 'Null'],
      [null, 'x', null],
      [''],
      ['a b', 'a,b', '"quoted"', 'back\\slash', '{braces}', ' lead'],
      ['ünïcödé', '名前'],
    ];
    for (const value of cases) expect(await roundTrip(value)).toEqual(value);
  });

  it('agrees with the stored value for any list of strings', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.option(fc.string({ unit: 'grapheme' }), { nil: null }), { maxLength: 6 }),
        async (value) => {
          // Postgres text cannot hold NUL.
          fc.pre(value.every((v) => v === null || !v.includes('\u0000')));
          expect(await roundTrip(value)).toEqual(value);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('leaves what it does not parse itself to the driver', () => {
    expect(parseTextArray('[0:1]={a,b}')).toEqual(['a', 'b']);
    expect(parseTextArray('{{a,b},{c,d}}')).toEqual([
      ['a', 'b'],
      ['c', 'd'],
    ]);
  });
});
