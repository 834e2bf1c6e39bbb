import type { Parsed } from '../args';
import type { Global } from '../main';
import { printError } from '../output';
import { runtimeFrom } from './shared';

export default async function prune(_p: Parsed, g: Global): Promise<number> {
  let status = 0;
  const removed = await runtimeFrom(g).prune({
    onError: (e) => {
      printError(e);
      status = 125;
    },
  });
  for (const id of removed) process.stdout.write(`${id}\n`);
  return status;
}
