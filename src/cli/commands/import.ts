import type { Parsed } from '../args';
import type { Global } from '../main';
import { ProgressBar } from '../output';
import { runtimeFrom } from './shared';

export default async function importImage(p: Parsed, g: Global): Promise<number> {
  const [file, image] = p.args as [string, string];
  const bar = new ProgressBar(process.stderr, `importing ${image}`);
  try {
    const info = await runtimeFrom(g).import(file, image, bar.active ? { onProgress: (d, t) => bar.update(d, t) } : {});
    bar.done();
    process.stdout.write(`${info.name} ${info.digest}\n`);
  } finally {
    bar.done();
  }
  return 0;
}
