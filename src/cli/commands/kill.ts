import { constants as osConstants } from 'node:os';

import { NsboxError } from '../../errors';
import type { Parsed } from '../args';
import type { Global } from '../main';
import { printError } from '../output';
import { runtimeFrom } from './shared';

/** `nsbox kill [-s SIGNAL] CONTAINER...`: SIGKILL by default, as docker kill. */
export default async function kill(p: Parsed, g: Global): Promise<number> {
  const raw = (p.flags.signal as string | undefined) ?? 'KILL';
  const name = /^\d+$/.test(raw) ? Number(raw) : (`SIG${raw.toUpperCase().replace(/^SIG/, '')}` as NodeJS.Signals);
  if (typeof name === 'string' && !(name in osConstants.signals)) throw new NsboxError('INVALID_ARGUMENT', `kill: --signal ${raw}: unknown signal`);
  const rt = runtimeFrom(g);
  let status = 0;
  for (const ref of p.args) {
    try {
      if (!rt.kill(ref, name)) throw new NsboxError('IN_USE', `container ${ref}: not running`);
      process.stdout.write(`${ref}\n`);
    } catch (e) {
      printError(e);
      status = 125;
    }
  }
  return status;
}
