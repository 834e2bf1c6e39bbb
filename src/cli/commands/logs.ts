import { NsboxError } from '../../errors';
import type { Parsed } from '../args';
import type { Global } from '../main';
import { runtimeFrom } from './shared';

/** --since: an RFC 3339 time, or a while ago (30s, 10m, 2h). */
export function parseSince(text: string, now = Date.now()): Date {
  const ago = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  if (ago) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[ago[2] as 'ms' | 's' | 'm' | 'h'];
    return new Date(now - Number(ago[1]) * unit);
  }
  const d = new Date(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(d.getTime())) {
    throw new NsboxError('INVALID_ARGUMENT', `logs: --since ${text}: expected a time (2026-12-01T06:00:00Z) or a while ago (10m)`);
  }
  return d;
}

/** `nsbox logs [-f] [-t] [--tail N] [--since TIME] CONTAINER`. */
export default async function logs(p: Parsed, g: Global): Promise<number> {
  const f = p.flags;
  const tailText = f.tail as string | undefined;
  let tail: number | undefined;
  if (tailText !== undefined && tailText !== 'all') {
    tail = Number(tailText);
    if (!/^\d+$/.test(tailText)) throw new NsboxError('INVALID_ARGUMENT', `logs: --tail ${tailText}: a number of lines, or 'all'`);
  }
  const since = f.since === undefined ? undefined : parseSince(f.since as string);
  const stamps = !!f.timestamps;
  const rt = runtimeFrom(g);
  const entries = rt.logs(p.args[0]!, { follow: !!f.follow, ...(tail !== undefined ? { tail } : {}), ...(since ? { since } : {}) });
  // A reader that went away (`| head`): the end, not an error.
  let closed = false;
  const onError = () => (closed = true);
  process.stdout.on('error', onError);
  process.stderr.on('error', onError);
  for await (const e of entries) {
    if (closed) break;
    const out = e.stream === 'stdout' ? process.stdout : process.stderr;
    const text = `${stamps ? `${e.time} ` : ''}${e.line}${e.partial ? '' : '\n'}`;
    // Wait for a slow reader (a pipe into less) rather than buffer the whole log.
    if (!out.write(text)) await new Promise((r) => (out.once('drain', r), out.once('error', r)));
  }
  return 0;
}
