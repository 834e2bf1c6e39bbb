import { invalid } from '../../errors';
import type { Parsed } from '../args';
import type { Global } from '../main';
import { printError } from '../output';
import { FORWARDED, attachTerminal } from '../terminal';
import { exitCodeOf } from './run';
import { runtimeFrom } from './shared';

/**
 * `nsbox start [-a] [-i] CONTAINER...`: without -a each container runs in the background under
 * a monitor of its own (as `run -d`), its output appended to its log (`nsbox logs`); with -a
 * (one container) this process supervises it and exits with its status.
 */
export default async function start(p: Parsed, g: Global): Promise<number> {
  const interactive = !!p.flags.interactive;
  if (p.flags.attach || interactive) {
    if (p.args.length > 1) throw invalid('start: -a and -i attach to one container at a time');
    return attached(p.args[0]!, interactive, g);
  }
  let status = 0;
  for (const ref of p.args) {
    try {
      await runtimeFrom(g).start(ref, { detach: true });
      process.stdout.write(`${ref}\n`);
    } catch (e) {
      printError(e);
      status = 125;
    }
  }
  return status;
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
