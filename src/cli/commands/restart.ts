import { NsboxError } from '../../errors';
import type { Parsed } from '../args';
import type { Global } from '../main';
import { printError } from '../output';
import { runtimeFrom } from './shared';

/** `nsbox restart [-t SECONDS] CONTAINER...`: stop as `stop` does, then start in the background. */
export default async function restart(p: Parsed, g: Global): Promise<number> {
  const t = p.flags.time as string | undefined;
  const seconds = t === undefined ? 10 : Number(t);
  if (!Number.isFinite(seconds) || seconds < 0) throw new NsboxError('INVALID_ARGUMENT', `restart: --time ${t}: expected seconds`);
  const rt = runtimeFrom(g);
  let status = 0;
  for (const ref of p.args) {
    try {
      await rt.stop(ref, { timeout: seconds * 1000 });
      await rt.start(ref, { detach: true });
      process.stdout.write(`${ref}\n`);
    } catch (e) {
      printError(e);
      status = 125;
    }
  }
  return status;
}
