import type { Parsed } from '../args';
import type { Global } from '../main';
import { runtimeFrom } from './shared';

/** `nsbox rename CONTAINER NEW_NAME`. */
export default async function rename(p: Parsed, g: Global): Promise<number> {
  const [ref, name] = p.args as [string, string];
  await runtimeFrom(g).rename(ref, name);
  return 0;
}
