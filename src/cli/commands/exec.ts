import { NsboxError } from '../../errors';
import type { ExecOptions, ExecProcess } from '../../exec';
import type { Parsed } from '../args';
import type { Global } from '../main';
import { printError } from '../output';
import { SignalRelay, attachAndWait, stdioFor } from '../terminal';
import { exitCodeOf } from './run';
import { runtimeFrom } from './shared';

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
    options.stdio = stdioFor(interactive);
  }
  const signals = new SignalRelay();
  let e: ExecProcess;
  try {
    e = runtimeFrom(g).exec(ref, options);
  } catch (err) {
    signals.close();
    if (err instanceof NsboxError && err.step === 'exec') {
      printError(err);
      return err.code === 'ENOENT' ? 127 : 126;
    }
    throw err;
  }
  return exitCodeOf(await attachAndWait(e, tty, interactive, signals));
}
