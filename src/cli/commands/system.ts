import { invalid } from '../../errors';
import { nearest } from '../../validate';
import { formatHelp, parseArgs, type Parsed } from '../args';
import type { Global } from '../main';
import { COMMANDS } from '../specs';
import prune from './prune';

/** `nsbox system prune`: docker's spelling of `nsbox prune`. */
export default async function system(p: Parsed, g: Global): Promise<number> {
  const [sub, ...rest] = p.args as [string, ...string[]];
  if (sub !== 'prune') {
    const near = nearest(sub, ['prune']);
    throw invalid(`system: unknown command ${JSON.stringify(sub)}${near ? ` (did you mean ${near}?)` : ''}: only 'system prune' is known`);
  }
  const spec = { ...COMMANDS.prune, name: 'system prune', usage: 'nsbox system prune [OPTIONS]' };
  const parsed = parseArgs(spec, rest);
  if (parsed.help) {
    process.stdout.write(formatHelp(spec));
    return 0;
  }
  return prune(parsed, g);
}
