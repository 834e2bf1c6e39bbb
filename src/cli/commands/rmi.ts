import type { Parsed } from '../args';
import type { Global } from '../main';
import { printError } from '../output';
import { runtimeFrom } from './shared';

export default async function rmi(p: Parsed, g: Global): Promise<number> {
  const rt = runtimeFrom(g);
  let status = 0;
  for (const name of p.args) {
    try {
      await rt.removeImage(name, { force: !!p.flags.force });
      process.stdout.write(`${name}\n`);
    } catch (e) {
      printError(e);
      status = 125;
    }
  }
  return status;
}
