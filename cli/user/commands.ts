import { type Command, Option } from 'commander';
import type { KubeOptions } from './kube.js';
import { type OutputFormat, parseOutputFormat } from './output.js';

/** -o/--output, default table. */
function withOutput(command: Command): Command {
  return command.addOption(
    new Option('-o, --output <format>', 'table, json or yaml').default('table').argParser(parseOutputFormat),
  );
}

/** The cluster options kubectl users expect, on every command that talks to the cluster. */
function withKube(command: Command, namespaced = true): Command {
  command
    .option('--kubeconfig <file>', 'kubeconfig file (default: $KUBECONFIG or ~/.kube/config)')
    .option('--context <name>', 'kube-context (default: the current one)');
  if (namespaced) {
    command
      .option('-n, --namespace <name>', "namespace (default: the context's, else default)")
      .option('-A, --all-namespaces', 'every namespace');
  }
  return withOutput(command);
}

type Opts<T> = T & KubeOptions & { output: OutputFormat };

/**
 * The user commands (DESIGN.md §1): what a platform engineer runs against a cluster, also as
 * `kubectl keyward …`. Each sets process.exitCode (0 ok, 1 failed, 2 usage, see output.ts).
 */
export function userCommands(program: Command): void {
  withKube(
    program
      .command('status')
      .description('ServiceUsers and ApiKeys: readiness and reason, expiry, last use, grace end')
      .option('-l, --selector <selector>', 'label selector'),
  ).action(async (options: Opts<{ selector?: string }>) => {
    const { statusCommand } = await import('./status.js');
    process.exitCode = await statusCommand(options);
  });

  withKube(
    program
      .command('rotate')
      .description('rotate ApiKeys: sets keyward.dev/rotate to a new value (the operator issues a new token)')
      .argument('[name]', 'ApiKey name')
      .option('-l, --selector <selector>', 'every ApiKey matching this label selector')
      .option('--all', 'every ApiKey in the namespace (or with -A, everywhere)'),
  ).action(async (name: string | undefined, options: Opts<{ selector?: string; all?: boolean }>) => {
    const { rotateCommand } = await import('./change.js');
    process.exitCode = await rotateCommand(name, options);
  });

  for (const [verb, suspended] of [
    ['suspend', true],
    ['resume', false],
  ] as const) {
    withKube(
      program
        .command(verb)
        .description(
          suspended
            ? 'suspend a ServiceUser: every key of it stops verifying at once (spec.suspended: true)'
            : 'resume a suspended ServiceUser (spec.suspended: false)',
        )
        .argument('<name>', 'ServiceUser name'),
    ).action(async (name: string, options: Opts<object>) => {
      const { setSuspendedCommand } = await import('./change.js');
      process.exitCode = await setSuspendedCommand(name, suspended, options);
    });
  }

  withOutput(
    program
      .command('whoami')
      .description('read a key from stdin and print the identity the webhook gives it (never the key)')
      .option(
        '--webhook-url <url>',
        'the webhook, e.g. https://keyward-webhook:8080 (default: $KEYWARD_WEBHOOK_URL)',
      ),
  ).action(async (options: { output: OutputFormat; webhookUrl?: string }) => {
    const { whoamiCommand } = await import('./whoami.js');
    process.exitCode = await whoamiCommand(options);
  });

  const inspect = program.command('inspect').description('show what a keyward object holds, never a token');
  withKube(
    inspect
      .command('secret')
      .description("a Secret's key id, token prefix and expiry, from the ApiKey that owns it")
      .argument('<name>', 'Secret name'),
  ).action(async (name: string, options: Opts<object>) => {
    const { inspectSecretCommand } = await import('./inspect.js');
    process.exitCode = await inspectSecretCommand(name, options);
  });

  withKube(
    program
      .command('check')
      .description('CRDs installed, operator leader Lease held and fresh, webhook ready, store reachable')
      .option(
        '--webhook-url <url>',
        'check the webhook /readyz (default: $KEYWARD_WEBHOOK_URL; unset: skipped)',
      )
      .option('--store-url <url>', 'check the store (default: $KEYWARD_STORE_URL; unset: skipped)')
      .option('--lease-namespace <name>', "the operator's namespace", 'keyward-system')
      .option('--lease-name <name>', 'the leader-election Lease', 'keyward-operator'),
    false,
  ).action(
    async (
      options: Opts<{ webhookUrl?: string; storeUrl?: string; leaseNamespace: string; leaseName: string }>,
    ) => {
      const { checkCommand } = await import('./check.js');
      process.exitCode = await checkCommand(options);
    },
  );

  withOutput(
    program
      .command('scan')
      .description('find keyward tokens (prefix and checksum) in files, folders or stdin; exit 1 if any')
      .argument('[paths...]', 'files or folders; - or none for stdin')
      .option('--store-url <url>', 'look up the key id of each token found (by hash)'),
  ).action(async (paths: string[], options: { output: OutputFormat; storeUrl?: string }) => {
    const { scanCommand } = await import('./scan.js');
    process.exitCode = await scanCommand(paths, options);
  });

  withOutput(
    program
      .command('audit')
      .description(
        'the request log: every verification decision by key, user or time range (latest --limit, oldest first)',
      )
      .option(
        '--store-url <url>',
        'Postgres URL, as a role that may read request_log (default: $KEYWARD_STORE_URL)',
      )
      .option('--key <keyId>', 'only this key (status.keyId of the ApiKey)')
      .option('--user <username>', 'only requests by or on behalf of this ServiceUser username')
      .option('--since <time>', 'from this RFC 3339 time, or a duration ago (1h, 7d)')
      .option('--until <time>', 'before this RFC 3339 time, or a duration ago')
      .option('--limit <n>', 'at most this many records, the latest', '100'),
  ).action(async (options: Parameters<typeof import('./audit.js').auditCommand>[0]) => {
    const { auditCommand } = await import('./audit.js');
    process.exitCode = await auditCommand(options);
  });

  program
    .command('completion')
    .description('print a shell completion script: source <(keyward completion bash)')
    .argument('<shell>', 'bash, zsh or fish')
    .action(async (shell: string) => {
      const { completionScript } = await import('./completion.js');
      const bin = /kubectl-keyward$/.test(process.argv[1] ?? '') ? 'kubectl-keyward' : 'keyward';
      process.stdout.write(completionScript(program, shell, bin));
    });
}
