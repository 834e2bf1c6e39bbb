import type { Parsed } from '../args';
import type { Global } from '../main';
import { printError } from '../output';
import { runtimeFrom } from './shared';

export default async function rm(p: Parsed, g: Global): Promise<number> {
  const rt = runtimeFrom(g);
  let status = 0;
  for (const ref of p.args) {
    try {
      await rt.remove(ref, { force: !!p.flags.force });
      process.stdout.write(`${ref}\n`);
    } catch (e) {
      printError(e);
      status = 125;
    }
  }
  return status;
}
