import { constants as osConstants } from 'node:os';

import type { ContainerInfo } from '../../runtime';
import type { Parsed } from '../args';
import type { Global } from '../main';
import { ago, printError, table } from '../output';
import { formatOf, runtimeFrom } from './shared';

function statusText(c: ContainerInfo): string {
  if (c.status === 'running') return `Up ${ago(c.startedAt)}`;
  if (c.status === 'created') return 'Created';
  if (c.status === 'creating') return 'Creating';
  if (c.status === 'removing') return 'Removal In Progress';
  // Left half made or half removed by a process that died: rm -f and prune finish the job.
  if (c.status === 'dead') return 'Dead';
  // As docker shows it: the exit status a shell would see (128+N for signal N), and why.
  const code = c.exitCode ?? (c.signal ? 128 + ((osConstants.signals as Record<string, number>)[c.signal] ?? 0) : undefined);
  const why =
    c.killedFor === 'oom'
      ? ', OOM'
      : c.killedFor === 'timeout'
        ? ', timeout'
        : c.killedFor === 'cpuTime'
          ? ', CPU time'
          : c.killedFor === 'abort'
            ? ', aborted'
            : '';
  const how = code === undefined ? '?' : c.signal && !why ? `${code}, ${c.signal}` : `${code}${why}`;
  return `Exited (${how}) ${ago(c.finishedAt ?? c.created)} ago`;
}

export default async function ps(p: Parsed, g: Global): Promise<number> {
  const format = formatOf(p.flags.format);
  // A container whose record cannot be trusted is not listed: said on stderr, so that the
  // table (and -q, and json) stays what scripts can read.
  const list = runtimeFrom(g).list({ all: !!p.flags.all, onError: (e) => printError(e) });
  if (p.flags.quiet) {
    for (const c of list) process.stdout.write(`${c.id}\n`);
    return 0;
  }
  if (format === 'json') {
    process.stdout.write(JSON.stringify(list, null, 2) + '\n');
    return 0;
  }
  const cmd = (c: ContainerInfo) => {
    const s = c.command.join(' ');
    return JSON.stringify(s.length > 30 ? `${s.slice(0, 29)}…` : s);
  };
  const rows = list.map((c) => [c.id, c.name ?? '', c.image, cmd(c), `${ago(c.created)} ago`, statusText(c)]);
  process.stdout.write(table(process.stdout, ['CONTAINER ID', 'NAME', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS'], rows));
  return 0;
}
