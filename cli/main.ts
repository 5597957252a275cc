#!/usr/bin/env node
import { Command } from 'commander';
import { packageVersion } from './version.js';

const program = new Command()
  .name('keyward')
  .description('Declarative service users and API keys for Kubernetes.')
  .version(packageVersion(), '-v, --version');

function notYet(what: string): () => never {
  return () => {
    process.stderr.write(`keyward ${what}: not yet available in this build\n`);
    process.exit(2);
  };
}

program
  .command('operator')
  .description(
    'run the operator (reconciles ServiceUsers and ApiKeys); configured by KEYWARD_* environment variables',
  )
  .action(async () => {
    const { loadOperatorConfig } = await import('../operator/config.js');
    const { runOperator } = await import('../operator/main.js');
    await runOperator(loadOperatorConfig());
  });
program.command('webhook').description('run the verification webhook').action(notYet('webhook'));
program
  .command('migrate')
  .description('apply the credential store migrations (safe to run from several replicas at once)')
  .option('--database-url <url>', 'Postgres URL (default: $KEYWARD_DATABASE_URL)')
  .action(async (options: { databaseUrl?: string }) => {
    const { migrateCommand } = await import('./migrate.js');
    process.exitCode = await migrateCommand(options);
  });
program
  .command('crds')
  .description('print the CustomResourceDefinition YAML')
  .option('--out <dir>', 'write one file per CRD into this directory instead')
  .action(async (options: { out?: string }) => {
    const { crdsCommand } = await import('./crds.js');
    crdsCommand(options);
  });
program
  .command('sandbox')
  .description('start a local environment with examples applied')
  .action(notYet('sandbox'));

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Configuration and start-up errors: the message says what to fix; a stack trace would not.
  process.stderr.write(`keyward: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
