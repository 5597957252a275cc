import pg from 'pg';

type TypeId = Parameters<typeof pg.types.getTypeParser>[0];
/** Postgres's OID of text[] (pg's TypeId enum lists only scalar types). */
const TEXT_ARRAY_OID = 1009 as TypeId;
const parseAny = pg.types.getTypeParser(TEXT_ARRAY_OID, 'text') as (value: string) => (string | null)[];

/**
 * A text[] value as Postgres writes it, parsed without the general parser in the common case: a
 * one-dimensional array of plain elements (`{a,b}`). Postgres quotes every element that holds a
 * comma, brace, quote, backslash or space, is empty, or reads NULL in any case, so an unquoted
 * value splits on commas and an unquoted NULL is a null. Anything else (quotes, nesting, bounds)
 * goes to the driver's parser. The general one builds each element a character at a time; the
 * webhook's key lookup reads five arrays per row, most of them `{}` or a few plain names.
 */
export function parseTextArray(value: string): (string | null)[] {
  if (value === '{}') return [];
  if (value[0] !== '{' || value.includes('"') || value.includes('\\') || value.indexOf('{', 1) !== -1) {
    return parseAny(value);
  }
  const items: (string | null)[] = value.slice(1, -1).split(',');
  for (let i = 0; i < items.length; i++) if (items[i] === 'NULL') items[i] = null;
  return items;
}

/** Driver type parsers for a query whose text[] columns take the fast path above. */
export const FAST_TEXT_ARRAYS = {
  getTypeParser(oid: TypeId, format?: 'text' | 'binary') {
    if (oid === TEXT_ARRAY_OID && format !== 'binary') return parseTextArray;
    return pg.types.getTypeParser(oid, format ?? 'text');
  },
};
