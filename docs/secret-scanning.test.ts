import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { generateToken, parseToken, TOKEN_SHAPE } from '../credentials/token.js';

const doc = readFileSync(join(import.meta.dirname, 'secret-scanning.md'), 'utf8');

function fenced(lang: string): string {
  const match = new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``).exec(doc);
  if (!match?.[1]) throw new Error(`no ${lang} block in secret-scanning.md`);
  return match[1];
}

/** The GitHub form's fields from the table (the `\|` only escapes the table cell). */
function githubField(name: string): string {
  const row = new RegExp(`^\\| ${name} +\\| \`(.*)\` +\\|$`, 'm').exec(doc);
  if (!row?.[1]) throw new Error(`no ${name} row`);
  return row[1].replaceAll('\\|', '|');
}

/** RE2 (Go regexp) has no lookarounds and no backreferences; JS would accept both. */
function assertRe2Compatible(source: string): void {
  expect(source).not.toMatch(/\(\?<?[=!]/);
  expect(source).not.toMatch(/\\[1-9]|\\k</);
}

/** RE2's \A and \z are JS's ^ and $ without the m flag. */
const toJs = (re2: string): RegExp => new RegExp(re2.replaceAll('\\A', '^').replaceAll('\\z', '$'), 'g');

const rules: Record<string, { source: string; secret: (m: RegExpExecArray) => string | undefined }> = {
  gitleaks: {
    source: /^regex = '''(.*)'''$/m.exec(fenced('toml'))?.[1] ?? '',
    secret: (m) => m[Number(/^secretGroup = (\d+)$/m.exec(fenced('toml'))?.[1])],
  },
  trufflehog: {
    source: (parse(fenced('yaml')) as { detectors: Array<{ regex: { token: string } }> }).detectors[0]!.regex
      .token,
    secret: (m) => m[1],
  },
  github: {
    source: `(?:${githubField('Before secret')})(${githubField('Secret format')})(?:${githubField('After secret')})`,
    secret: (m) => m[1],
  },
};

const tokens = Array.from({ length: 200 }, () => generateToken().token);
const contexts = (t: string): string[] => [
  t,
  `API_KEY=${t}`,
  `token: "${t}"`,
  `Authorization: Bearer ${t}\r\n`,
  `curl -H 'x-api-key: ${t}' https://example`,
  `{"key":"${t}","n":1}`,
  `- ${t}\n`,
];

/** The rules spell out the default prefix; the rest is the shape credentials/token.ts defines. */
const KW_SHAPE = TOKEN_SHAPE.replace('[a-z]{1,8}', 'kw');

describe.each(Object.entries(rules))('the %s rule in docs/secret-scanning.md', (_name, rule) => {
  it('is RE2 syntax, around the token shape of credentials/token.ts', () => {
    expect(rule.source).toContain(`(${KW_SHAPE})`);
    assertRe2Compatible(rule.source);
  });

  it('finds every generated token, whole, in the places tokens end up', () => {
    const re = toJs(rule.source);
    for (const token of tokens) {
      for (const text of contexts(token)) {
        const found = [...text.matchAll(re)].map((m) => rule.secret(m as RegExpExecArray));
        expect(found, text).toEqual([token]);
      }
    }
  });

  it('ignores near misses of the shape', () => {
    const re = toJs(rule.source);
    const t = tokens[0]!;
    const misses = [
      t.slice(0, -1), // one short
      `${t}x`, // a longer run
      `x${t}`, // glued to a word before
      `_${t}`,
      `${t}_`,
      `KW_${t.slice(3)}`, // another prefix's case
      `kw-${t.slice(3)}`,
      `kw_${t.slice(3, 20)}!${t.slice(21)}`,
      `${t.slice(0, 10)}é${t.slice(11)}`,
    ];
    for (const miss of misses) expect([...miss.matchAll(re)], miss).toEqual([]);
  });

  it('leaves the checksum to keyward scan: a shape match with a wrong checksum is not a token', () => {
    const t = tokens[1]!;
    const wrong = `${t.slice(0, -1)}${t.endsWith('A') ? 'B' : 'A'}`;
    expect([...wrong.matchAll(toJs(rule.source))]).toHaveLength(1);
    expect(parseToken(wrong)).toEqual({ ok: false, reason: 'bad_checksum' });
  });
});
