import { pipeline } from 'node:stream/promises';

import { copyToHost } from '../../copy-host';
import { NsboxError, invalid } from '../../errors';
import type { Parsed } from '../args';
import type { Global } from '../main';
import { runtimeFrom } from './shared';

/**
 * `CONTAINER:PATH` splits at the first ':' when what comes before it could be a container (no
 * '/'); a host path with a ':' in it is written ./a:b, as with docker.
 */
function splitRef(arg: string): { container: string; path: string } | undefined {
  const colon = arg.indexOf(':');
  if (colon <= 0) return undefined;
  const container = arg.slice(0, colon);
  if (container.includes('/') || container === '.' || container === '..') return undefined;
  return { container, path: arg.slice(colon + 1) || '/' };
}

export default async function cp(p: Parsed, g: Global): Promise<number> {
  const [src, dest] = p.args as [string, string];
  const archive = !!p.flags.archive;
  const follow = !!p.flags['follow-link'];
  const from = splitRef(src);
  const to = splitRef(dest);
  if (from && to) throw invalid('cp: copying between two containers is not supported: copy to the host first');
  if (!from && !to) throw invalid(`cp: one of ${src} and ${dest} must be CONTAINER:PATH`);
  const rt = runtimeFrom(g);
  if (to) {
    // Without -a, what lands in the container belongs to its root, as with docker cp.
    const owner = archive ? {} : { owner: { uid: 0, gid: 0 } };
    if (src === '-') {
      if (process.stdin.isTTY) throw invalid('cp: - reads a tar stream from stdin, which is a terminal');
      await rt.copyIn(to.container, process.stdin, to.path, owner);
    } else {
      await rt.copyIn(to.container, src, to.path, { ...owner, follow });
    }
    return 0;
  }
  const stream = await rt.copyOut(from!.container, from!.path, { follow });
  if (dest === '-') {
    if (process.stdout.isTTY) {
      stream.destroy();
      throw new NsboxError('INVALID_ARGUMENT', 'cp: - writes a tar stream to stdout, which is a terminal', {
        hint: 'pipe it: nsbox cp CONTAINER:PATH - | tar -t',
      });
    }
    try {
      await pipeline(stream, process.stdout, { end: false });
    } catch (err) {
      // The reader went away (`| head`): as for any filter, not an error of the copy.
      if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
    }
    return 0;
  }
  try {
    await copyToHost(stream, dest, { keepOwners: archive, keepPrivileges: archive });
  } finally {
    stream.destroy();
  }
  return 0;
}
