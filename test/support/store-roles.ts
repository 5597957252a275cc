import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';

/**
 * Runs the SQL blocks of a document (docs/store-roles.md) as the superuser at `adminUrl`, as a
 * deployer pastes them, with each `'change-me'` password replaced by a fresh one; resolves with
 * login role → password.
 */
export async function runDocumentedRoleSql(
  adminUrl: string,
  docPath: string,
): Promise<Record<string, string>> {
  const passwords: Record<string, string> = {};
  const blocks = [...readFileSync(docPath, 'utf8').matchAll(/```sql\n([\s\S]*?)```/g)].map((m) =>
    (m[1] ?? '').replace(
      /CREATE ROLE (\w+)(\s+)LOGIN PASSWORD 'change-me'/g,
      (_, role: string, space: string) => {
        // Hex: base64url can hold '--', which the statement splitter below reads as a comment.
        passwords[role] = randomBytes(18).toString('hex');
        return `CREATE ROLE ${role}${space}LOGIN PASSWORD '${passwords[role]}'`;
      },
    ),
  );
  if (blocks.length === 0) throw new Error(`${docPath} has no sql blocks`);
  if (blocks.some((b) => b.includes('change-me')))
    throw new Error(`${docPath}: a 'change-me' password this runner does not recognise`);
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    // One statement at a time: CREATE DATABASE cannot run in the implicit transaction of a batch.
    for (const statement of blocks.flatMap(sqlStatements)) await admin.query(statement);
  } finally {
    await admin.end();
  }
  return passwords;
}

function sqlStatements(block: string): string[] {
  return block
    .split('\n')
    .map((line) => line.replace(/--.*$/, ''))
    .join('\n')
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Owner of each of `tables` in `database`, read as the superuser. */
export async function tableOwners(
  adminUrl: string,
  database: string,
  tables: string[],
): Promise<Record<string, string>> {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    const { rows } = await client.query<{ tablename: string; tableowner: string }>(
      'SELECT tablename, tableowner FROM pg_tables WHERE tablename = ANY($1) ORDER BY 1',
      [tables],
    );
    return Object.fromEntries(rows.map((r) => [r.tablename, r.tableowner]));
  } finally {
    await client.end();
  }
}
