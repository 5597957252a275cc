import type { Command, Option } from 'commander';
import { UsageError } from './errors.js';

/**
 * Shell completion generated from the command tree, so it never lags behind the commands:
 * commander has none built in, and the completion libraries for it are unmaintained or want a
 * callback into the CLI on every <Tab>. Completes subcommands, their options and `-o` values.
 */
interface Node {
  readonly name: string;
  readonly description: string;
  readonly options: readonly string[];
  readonly children: readonly Node[];
}

function tree(command: Command): Node {
  return {
    name: command.name(),
    description: command
      .description()
      .split('\n')[0]!
      .replace(/[`'"$\\]/g, ''),
    options: [...command.options.flatMap((o: Option) => [o.short, o.long]), '--help'].filter(
      (o): o is string => o !== undefined,
    ),
    children: command.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden).map(tree),
  };
}

const OUTPUTS = 'table json yaml';

function bash(root: Node, bin: string): string {
  const fn = `_${bin.replace(/[^A-Za-z0-9]/g, '_')}`;
  const cases: string[] = [];
  const paths: string[] = [];
  const walk = (node: Node, path: string): void => {
    const words = [...node.children.map((c) => c.name), ...node.options].join(' ');
    cases.push(`    "${path}") words="${words}" ;;`);
    if (path !== '') paths.push(`"${path}"`);
    for (const child of node.children) walk(child, path === '' ? child.name : `${path} ${child.name}`);
  };
  walk(root, '');
  return `# bash completion for ${bin}; source it: source <(${bin} completion bash)
${fn}() {
  local cur prev path="" next words="" i
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  if [[ "$prev" == "-o" || "$prev" == "--output" ]]; then
    COMPREPLY=( $(compgen -W "${OUTPUTS}" -- "$cur") ); return
  fi
  for (( i=1; i<COMP_CWORD; i++ )); do
    next="\${path:+$path }\${COMP_WORDS[i]}"
    case "$next" in
      ${paths.join('|')}) path="$next" ;;
    esac
  done
  case "$path" in
${cases.join('\n')}
  esac
  COMPREPLY=( $(compgen -W "$words" -- "$cur") )
}
complete -o default -F ${fn} ${bin}
`;
}

function zsh(root: Node, bin: string): string {
  // zsh runs bash completion functions through bashcompinit: one generator, same behaviour.
  return `#compdef ${bin}
# zsh completion for ${bin}; source it: source <(${bin} completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bash(root, bin)}`;
}

function fish(root: Node, bin: string): string {
  const lines = [
    `# fish completion for ${bin}; source it: ${bin} completion fish | source`,
    `complete -c ${bin} -f`,
  ];
  const walk = (node: Node, parents: string[]): void => {
    const condition =
      parents.length === 0
        ? '__fish_use_subcommand'
        : `__fish_seen_subcommand_from ${parents[parents.length - 1]}`;
    for (const child of node.children) {
      lines.push(
        `complete -c ${bin} -n '${condition}' -a ${child.name} -d '${child.description.replace(/'/g, '')}'`,
      );
    }
    for (const option of node.options) {
      const flag = option.startsWith('--') ? `-l ${option.slice(2)}` : `-s ${option.slice(1)}`;
      const values = option === '-o' || option === '--output' ? ` -r -a '${OUTPUTS}'` : '';
      lines.push(`complete -c ${bin} -n '${condition}' ${flag}${values}`);
    }
    for (const child of node.children) walk(child, [...parents, child.name]);
  };
  walk(root, []);
  return `${lines.join('\n')}\n`;
}

/** `keyward completion bash|zsh|fish`. */
export function completionScript(program: Command, shell: string, bin: string): string {
  const root = tree(program);
  if (shell === 'bash') return bash(root, bin);
  if (shell === 'zsh') return zsh(root, bin);
  if (shell === 'fish') return fish(root, bin);
  throw new UsageError(`no completion for ${shell}; want bash, zsh or fish`);
}
