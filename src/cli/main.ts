#!/usr/bin/env node
/**
 * nsbox's command line. Loads only what the command needs: `nsbox --help` never loads the
 * native addon, and each command's module is required when it runs.
 */
// First, so that every module after it is compiled through the cache.
import './compile-cache';
import * as path from 'node:path';

import { NsboxError, invalid } from '../errors';
import { nearest } from '../validate';
import { formatHelp, parseArgs, type CommandSpec, type FlagSpec, type Parsed } from './args';
import { printError } from './output';
import { COMMANDS, type CommandName } from './specs';

export interface Global {
  root: string | undefined;
  storageDriver: string | undefined;
}

export type CommandMain = (parsed: Parsed, global: Global) => Promise<number>;

const GLOBAL_FLAGS: FlagSpec[] = [
  { name: 'root', type: 'string', value: 'DIR', help: 'state directory (default $NSBOX_ROOT, else /var/lib/nsbox as root, ~/.local/share/nsbox as a user)' },
  { name: 'storage-driver', type: 'string', value: 'DRIVER', help: 'overlay, aufs or vfs (default: detected)' },
  { name: 'version', short: 'V', type: 'bool', help: 'print the version' },
];

const MAIN: CommandSpec = {
  name: '',
  usage: 'nsbox [--root DIR] COMMAND [OPTIONS] [ARGS]',
  summary: [
    'Linux containers started straight from Node.js: namespaces, a layered root, volumes, commit.',
    '',
    'Commands:',
    ...Object.values(COMMANDS).map((c) => `  ${c.name.padEnd(8)}  ${c.summary}`),
    '',
    "Run 'nsbox COMMAND --help' for a command's options.",
  ].join('\n'),
  flags: GLOBAL_FLAGS,
  examples: ['nsbox run -ti busybox sh', 'nsbox run --rm -v /srv/data:/data:ro busybox ls /data', 'nsbox ps -a'],
  stopAtPositional: true,
  minArgs: 0,
  maxArgs: Infinity,
};

function version(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require(path.join(__dirname, '..', '..', 'package.json')) as { version: string }).version;
}

async function main(argv: string[]): Promise<number> {
  const top = parseArgs(MAIN, argv);
  if (top.flags.version) {
    process.stdout.write(`nsbox ${version()}\n`);
    return 0;
  }
  const [name, ...rest] = top.args;
  if (top.help || name === undefined || name === 'help') {
    const which = name === 'help' ? rest[0] : undefined;
    if (which !== undefined) {
      const spec = COMMANDS[which as CommandName];
      if (!spec) throw invalid(`help: unknown command ${which}`);
      process.stdout.write(formatHelp(spec));
      return 0;
    }
    process.stdout.write(formatHelp(MAIN));
    return name === undefined && !top.help ? 125 : 0;
  }
  const spec = COMMANDS[name as CommandName];
  if (!spec) {
    const near = nearest(name, Object.keys(COMMANDS));
    throw new NsboxError('INVALID_ARGUMENT', `unknown command ${JSON.stringify(name)}${near ? ` (did you mean ${near}?)` : ''}`, {
      hint: "'nsbox --help' lists the commands",
    });
  }
  const parsed = parseArgs(spec, rest);
  if (parsed.help) {
    process.stdout.write(formatHelp(spec));
    return 0;
  }
  const global: Global = {
    root: top.flags.root as string | undefined,
    storageDriver: top.flags['storage-driver'] as string | undefined,
  };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(`./commands/${name}`) as { default: CommandMain };
  return mod.default(parsed, global);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    printError(err);
    process.exitCode = 125;
  },
);
