import { NsboxError } from '../../errors';
import type { ExecOptions, ExecProcess } from '../../exec';
import type { Parsed } from '../args';
import type { Global } from '../main';
import { printError } from '../output';
import { attachTerminal, isTerminal, relayTerminal } from '../terminal';
import { exitCodeOf } from './run';
import { runtimeFrom } from './shared';

/** Signals passed on to the exec'd command, as `run` passes them to a container. */
const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/**
 * `nsbox exec [-i] [-t] [-e K=V] [-w DIR] [-u UID[:GID]] CONTAINER COMMAND...`: exit status,
 * signals and terminals as for `run` (126/127 when the command cannot be exec'd).
 */
export default async function exec(p: Parsed, g: Global): Promise<number> {
  const [ref, ...command] = p.args as [string, ...string[]];
  const f = p.flags;
  const tty = !!f.tty;
  const interactive = !!f.interactive;
  const options: ExecOptions = { command };
  if (f.env) options.env = f.env as string[];
  if (f.workdir !== undefined) options.cwd = f.workdir as string;
  if (f.user !== undefined) options.user = f.user as string;
  if (tty) {
    const out = process.stdout;
    options.tty = out.isTTY ? { cols: out.columns, rows: out.rows } : true;
  } else {
    // As run: a terminal is never handed over, only relayed; without -i no stdin at all.
    options.stdio = [
      interactive ? (isTerminal(0) ? 'pipe' : 'inherit') : 'ignore',
      isTerminal(1) ? 'pipe' : 'inherit',
      isTerminal(2) ? 'pipe' : 'inherit',
    ];
  }
  let e: ExecProcess;
  try {
    e = runtimeFrom(g).exec(ref, options);
  } catch (err) {
    if (err instanceof NsboxError && err.step === 'exec') {
      printError(err);
      return err.code === 'ENOENT' ? 127 : 126;
    }
    throw err;
  }
  // Our terminal went away: nobody is left to use the command, which may ignore SIGHUP.
  let hungUp = false;
  const hangup = () => {
    if (hungUp) return;
    hungUp = true;
    e.kill('SIGHUP');
    setTimeout(() => e.running && e.kill('SIGKILL'), 2000).unref();
  };
  const forward = (sig: NodeJS.Signals) => (sig === 'SIGHUP' ? hangup() : e.kill(sig));
  for (const sig of FORWARDED) process.on(sig, forward);
  const restore = tty ? attachTerminal(e, interactive, hangup) : relayTerminal(e);
  try {
    return exitCodeOf(await e.wait());
  } finally {
    restore();
    for (const sig of FORWARDED) process.off(sig, forward);
  }
}
