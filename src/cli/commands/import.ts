import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';

import { fromSystemError } from '../../errors';
import type { Parsed } from '../args';
import type { Global } from '../main';
import { ProgressBar } from '../output';
import { runtimeFrom } from './shared';

export default async function importImage(p: Parsed, g: Global): Promise<number> {
  const [file, image] = p.args as [string, string];
  const rt = runtimeFrom(g);
  if (file === '-') return importStdin(rt, image);
  const bar = new ProgressBar(process.stderr, `importing ${image}`);
  try {
    const info = await rt.import(file, image, bar.active ? { onProgress: (d, t) => bar.update(d, t) } : {});
    bar.done();
    process.stdout.write(`${info.name} ${info.digest}\n`);
  } finally {
    bar.done();
  }
  return 0;
}

/**
 * `import - IMAGE`: the tarball from stdin, kept first in a directory of the state's tmp/ (so
 * that a kill leaves it to prune), then imported as a file: extraction reads it twice (digest).
 */
async function importStdin(rt: ReturnType<typeof runtimeFrom>, image: string): Promise<number> {
  const tmp = rt.layout.makeTemp('stdin');
  try {
    const file = path.join(tmp, 'image.tar');
    try {
      await pipeline(process.stdin, fs.createWriteStream(file, { mode: 0o600 }));
    } catch (e) {
      throw fromSystemError(`import -: reading stdin into ${file}`, e);
    }
    const info = await rt.import(file, image);
    process.stdout.write(`${info.name} ${info.digest}\n`);
    return 0;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
