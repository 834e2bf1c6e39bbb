import type { Parsed } from '../args';
import type { Global } from '../main';
import { runtimeFrom } from './shared';

export default async function commit(p: Parsed, g: Global): Promise<number> {
  const [container, image] = p.args as [string, string];
  const output = p.flags.output as string | undefined;
  const info = await runtimeFrom(g).commit(container, image, output ? { output } : {});
  process.stdout.write(`${info.name}\n`);
  return 0;
}
