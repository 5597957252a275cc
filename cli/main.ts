#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { userCommands } from './user/commands.js';
import { apiErrorMessage, UsageError } from './user/errors.js';
import { EXIT_USAGE } from './user/output.js';
import { packageVersion } from './version.js';

const program = new Command()
  .name('keyward')
  .description('Declarative service users and API keys for Kubernetes.')
  .version(packageVersion(), '-v, --version')
  // Usage errors exit 2 (documented in README.md), not commander's default 1.
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(text) });

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
program
  .command('webhook')
  .description(
    'run the verification webhook (/verify, /tokenreview, /introspect); configured by KEYWARD_* environment variables',
  )
  .action(async () => {
    const { runWebhook } = await import('../webhook/server.js');
    await runWebhook();
  });
program
  .command('migrate')
  .description('apply the credential store migrations (safe to run from several replicas at once)')
  .option('--store-url <url>', 'Postgres URL (default: $KEYWARD_STORE_URL)')
  .action(async (options: { storeUrl?: string }) => {
    const { migrateCommand } = await import('./migrate.js');
    process.exitCode = await migrateCommand(options);
  });
program
  .command('crds')
  .description('print the CustomResourceDefinition YAML')
  .option('--out <dir>', 'write one file per CRD into this directory instead')
  .option('--chart-templates <dir>', "also write the Helm chart's CRD templates into this directory")
  .action(async (options: { out?: string; chartTemplates?: string }) => {
    const { crdsCommand } = await import('./crds.js');
    crdsCommand(options);
  });
program
  .command('config-reference')
  .description('print every KEYWARD_* variable of the operator and the webhook, with defaults, as Markdown')
  .action(async () => {
    const { configurationReference } = await import('./config-reference.js');
    process.stdout.write(configurationReference());
  });
program
  .command('sandbox')
  .description(
    'from a checkout: start Postgres, a local control plane (or use --context), the CRDs, operator and webhook, apply examples/ and print a working curl',
  )
  .option(
    '--context <name>',
    'use this kube-context of the current kubeconfig instead of a local control plane',
  )
  .option('-n, --namespace <name>', 'namespace for the examples', 'keyward-sandbox')
  .action(async (options: { context?: string; namespace: string }) => {
    const { sandboxCommand } = await import('./sandbox.js');
    await sandboxCommand(options);
  });

userCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version come through here too, with exit code 0.
    process.exitCode = err.exitCode === 0 ? 0 : EXIT_USAGE;
  } else if (err instanceof UsageError) {
    process.stderr.write(`keyward: ${err.message}\n`);
    process.exitCode = EXIT_USAGE;
  } else {
    // Configuration, start-up and API errors: the message says what to fix; a stack trace would not.
    process.stderr.write(`keyward: ${apiErrorMessage(err)}\n`);
    process.exitCode = 1;
  }
}
