import type { Parsed } from '../args';
import type { Global } from '../main';
import { printError } from '../output';
import { runtimeFrom } from './shared';

/** `nsbox inspect CONTAINER...`: their records (config, state, exit, why killed) as a JSON array. */
export default async function inspect(p: Parsed, g: Global): Promise<number> {
  const rt = runtimeFrom(g);
  const out: unknown[] = [];
  let status = 0;
  for (const ref of p.args) {
    try {
      out.push(rt.inspect(ref));
    } catch (e) {
      printError(e);
      status = 125;
    }
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  return status;
}
