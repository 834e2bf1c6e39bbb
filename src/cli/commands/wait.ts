import { constants as osConstants } from 'node:os';

import type { Parsed } from '../args';
import type { Global } from '../main';
import { printError } from '../output';
import { runtimeFrom } from './shared';

/** `nsbox wait CONTAINER...`: blocks until each has exited, prints its exit code. */
export default async function wait(p: Parsed, g: Global): Promise<number> {
  const rt = runtimeFrom(g);
  let status = 0;
  for (const ref of p.args) {
    try {
      const s = await rt.wait(ref);
      const code = s.exitCode ?? (s.signal ? 128 + ((osConstants.signals as Record<string, number>)[s.signal] ?? 0) : -1);
      process.stdout.write(`${code}\n`);
    } catch (e) {
      printError(e);
      status = 125;
    }
  }
  return status;
}
