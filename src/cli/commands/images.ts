import type { Parsed } from '../args';
import type { Global } from '../main';
import { ago, humanSize, table } from '../output';
import { formatOf, runtimeFrom } from './shared';

export default async function images(p: Parsed, g: Global): Promise<number> {
  const format = formatOf(p.flags.format);
  const list = runtimeFrom(g).images.list();
  if (p.flags.quiet) {
    // docker prints ids for `rmi $(docker images -q)`; an image's name is what rmi takes here.
    for (const i of list) process.stdout.write(`${i.name}\n`);
    return 0;
  }
  if (format === 'json') {
    process.stdout.write(
      JSON.stringify(
        list.map(({ rootfs: _r, ...i }) => i),
        null,
        2,
      ) + '\n',
    );
    return 0;
  }
  const rows = list.map((i) => [i.name, i.digest ? i.digest.slice(7, 19) : '-', `${ago(i.created)} ago`, humanSize(i.size), i.source]);
  process.stdout.write(table(process.stdout, ['IMAGE', 'DIGEST', 'CREATED', 'SIZE', 'SOURCE'], rows));
  return 0;
}
