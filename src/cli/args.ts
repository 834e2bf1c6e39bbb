/**
 * Docker-style argument parsing: `-ti` (combined short flags), `-v A:B` and `-vA:B`,
 * `--name N` and `--name=N`, repeatable list flags, `--` to end flags, and for `run` flags
 * stop at the first positional (the image): what follows is the container's command.
 */
import { invalid } from '../errors';
import { nearest } from '../validate';

export interface FlagSpec {
  name: string;
  short?: string;
  type: 'bool' | 'string' | 'list';
  /** Placeholder in help: --name NAME */
  value?: string;
  help: string;
}

export interface CommandSpec {
  name: string;
  usage: string;
  summary: string;
  flags: FlagSpec[];
  examples: string[];
  /** Flags end at the first positional argument (run: the rest is the command). */
  stopAtPositional?: boolean;
  minArgs: number;
  maxArgs: number;
}

export type FlagValues = Record<string, boolean | string | string[] | undefined>;

export interface Parsed {
  flags: FlagValues;
  args: string[];
  help: boolean;
}

const HELP: FlagSpec = { name: 'help', short: 'h', type: 'bool', help: 'show this help' };

export function parseArgs(spec: CommandSpec, argv: string[]): Parsed {
  const flags: FlagValues = {};
  const args: string[] = [];
  const all = [...spec.flags, HELP];
  const byLong = new Map(all.map((f) => [f.name, f]));
  const byShort = new Map(all.filter((f) => f.short).map((f) => [f.short!, f]));
  const set = (f: FlagSpec, value: string | true) => {
    if (f.type !== 'list') {
      flags[f.name] = value;
      return;
    }
    const list = (flags[f.name] as string[] | undefined) ?? [];
    list.push(value as string);
    flags[f.name] = list;
  };
  // The global flags' spec has no name: its messages name no command.
  const fail = (msg: string) => invalid(spec.name ? `${spec.name}: ${msg} (see 'nsbox ${spec.name} --help')` : `${msg} (see 'nsbox --help')`);

  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const key = a.slice(2, eq < 0 ? undefined : eq);
      const f = byLong.get(key);
      if (!f) {
        const near = nearest(key, [...byLong.keys()]);
        throw fail(`unknown flag --${key}${near ? ` (did you mean --${near}?)` : ''}`);
      }
      if (f.type === 'bool') {
        if (eq >= 0) throw fail(`--${key} takes no value`);
        set(f, true);
      } else if (eq >= 0) {
        set(f, a.slice(eq + 1));
      } else {
        if (i + 1 >= argv.length) throw fail(`--${key} needs a value`);
        set(f, argv[++i]!);
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const f = byShort.get(a[j]!);
        if (!f) throw fail(`unknown flag -${a[j]}`);
        if (f.type === 'bool') {
          set(f, true);
          continue;
        }
        const rest = a.slice(j + 1);
        if (rest) set(f, rest);
        else if (i + 1 < argv.length) set(f, argv[++i]!);
        else throw fail(`-${f.short} needs a value`);
        break;
      }
      continue;
    }
    args.push(a);
    if (spec.stopAtPositional) {
      i++;
      break;
    }
  }
  args.push(...argv.slice(i));
  const help = flags.help === true;
  if (!help) {
    if (args.length < spec.minArgs) throw fail(`expected ${spec.usage.replace(/^nsbox \S+ ?/, '').replace(/\[OPTIONS\] ?/, '') || 'no arguments'}`);
    if (args.length > spec.maxArgs) throw fail(`too many arguments: ${args.slice(spec.maxArgs).join(' ')}`);
  }
  return { flags, args, help };
}

export function formatHelp(spec: CommandSpec): string {
  const rows = spec.flags.map((f) => {
    const names = `${f.short ? `-${f.short}, ` : '    '}--${f.name}${f.type === 'bool' ? '' : ` ${f.value ?? 'VALUE'}`}`;
    return [names, f.help + (f.type === 'list' ? ' (repeatable)' : '')] as const;
  });
  const width = Math.max(0, ...rows.map(([n]) => n.length));
  const lines = [`Usage: ${spec.usage}`, '', spec.summary];
  if (rows.length) lines.push('', 'Options:', ...rows.map(([n, h]) => `  ${n.padEnd(width)}  ${h}`));
  if (spec.examples.length) lines.push('', 'Examples:', ...spec.examples.map((e) => `  ${e}`));
  return lines.join('\n') + '\n';
}
