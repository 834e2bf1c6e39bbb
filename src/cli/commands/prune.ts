import type { Parsed } from '../args';
import type { Global } from '../main';
import { runtimeFrom } from './shared';

export default async function prune(_p: Parsed, g: Global): Promise<number> {
  for (const id of runtimeFrom(g).prune()) process.stdout.write(`${id}\n`);
  return 0;
}
