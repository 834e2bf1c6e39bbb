import type * as ChildProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Container } from '../../container';
import { NsboxError, invalid } from '../../errors';
import type { Parsed } from '../args';
import type { Global } from '../main';
import { printError } from '../output';
import { FORWARDED, attachTerminal, exitCodeOf } from './run';
import { runtimeFrom } from './shared';

/**
 * `nsbox start [-a] [-i] CONTAINER...`: without -a each container runs in the background under
 * a supervisor process of its own (as `run -d`), its output appended to its log; with -a (one
 * container) this process supervises it and exits with its status.
 */
export default async function start(p: Parsed, g: Global): Promise<number> {
  if (process.env.NSBOX_SUPERVISOR === '1') return supervise(p.args[0]!, g);
  const interactive = !!p.flags.interactive;
  if (p.flags.attach || interactive) {
    if (p.args.length > 1) throw invalid('start: -a and -i attach to one container at a time');
    return attached(p.args[0]!, interactive, g);
  }
  let status = 0;
  for (const ref of p.args) {
    try {
      await startDetached(ref, g);
      process.stdout.write(`${ref}\n`);
    } catch (e) {
      printError(e);
      status = 125;
    }
  }
  return status;
}

/** Starts `ref` under a supervisor process that outlives us; resolves once it has started. */
export async function startDetached(ref: string, g: Global): Promise<void> {
  const main = path.join(__dirname, '..', 'main.js');
  const globals = [...(g.root !== undefined ? ['--root', g.root] : []), ...(g.storageDriver !== undefined ? ['--storage-driver', g.storageDriver] : [])];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { spawn } = require('node:child_process') as typeof ChildProcess;
  const child = spawn(process.execPath, [main, ...globals, 'start', '--', ref], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    env: { ...process.env, NSBOX_SUPERVISOR: '1' },
  });
  const report = await new Promise<string>((resolve) => {
    let text = '';
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => (text += d));
    pipe.on('end', () => resolve(text));
    child.on('error', (e) => resolve(`error ${e.message}`));
  });
  child.unref();
  const [kind, ...rest] = report.trim().split(' ');
  if (kind !== 'started') throw new NsboxError('EIO', rest.length ? rest.join(' ') : `start ${ref}: the supervisor exited before starting the container`);
}

async function supervise(ref: string, g: Global): Promise<number> {
  const report = (line: string) => {
    try {
      fs.writeSync(3, `${line}\n`);
      fs.closeSync(3);
    } catch {
      // the CLI that asked is gone: nobody to tell
    }
  };
  const rt = runtimeFrom(g);
  let c: Container;
  try {
    c = await rt.start(ref, { attach: true });
  } catch (e) {
    report(`error ${e instanceof Error ? e.message : String(e)}`);
    return 125;
  }
  c.stdin?.end();
  const log = fs.createWriteStream(path.join(rt.layout.containerDir(c.id!), 'output.log'), { flags: 'a', mode: 0o600 });
  log.on('error', () => {});
  for (const s of [c.stdout, c.stderr, c.terminal]) s?.pipe(log, { end: false });
  report(`started ${c.id}`);
  const status = await c.wait();
  log.end();
  return exitCodeOf(status);
}

/** -a: its output to ours (its terminal, if it was run with -t), signals passed on, its status ours. */
async function attached(ref: string, interactive: boolean, g: Global): Promise<number> {
  const c = await runtimeFrom(g).start(ref, { attach: true });
  const forward = (sig: NodeJS.Signals) => c.kill(sig);
  for (const sig of FORWARDED) process.on(sig, forward);
  let restore = () => {};
  if (c.terminal && process.stdout.isTTY) {
    restore = attachTerminal(c, interactive, () => c.kill('SIGHUP'));
    c.resize(process.stdout.columns, process.stdout.rows);
  } else {
    c.terminal?.pipe(process.stdout, { end: false });
    c.stdout?.pipe(process.stdout, { end: false });
    c.stderr?.pipe(process.stderr, { end: false });
    if (interactive && c.stdin) process.stdin.pipe(c.stdin);
    else c.stdin?.end();
    if (interactive && c.terminal) process.stdin.pipe(c.terminal, { end: false });
    restore = () => {
      if (interactive) {
        process.stdin.unpipe();
        process.stdin.destroy();
      }
    };
  }
  try {
    return exitCodeOf(await c.wait());
  } finally {
    restore();
    for (const sig of FORWARDED) process.off(sig, forward);
  }
}
