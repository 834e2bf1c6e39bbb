/**
 * cp onto the host: a container's tar stream (Runtime.copyOut) written beneath a host
 * directory with docker cp's rules, by the same fd-based writer that writes into containers
 * (src/copy-tar-in.ts): the stream is the container's, so its names and links are not
 * trusted either. Setuid/setgid bits and file capabilities are dropped and the copier owns
 * what is written, unless asked otherwise (cp -a).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { components } from './copy-tar-in';
import { extractStream, tarChunks, type CopyResult } from './copy';
import { NsboxError, fromSystemError, invalid } from './errors';
import { TarReader } from './image/tar';
import { boolean, checkObject, optional, type Spec } from './validate';

const { O_RDONLY, O_DIRECTORY } = fs.constants;

const COPY_TO_HOST: Spec<CopyToHostOptions> = { keepOwners: optional(boolean), keepPrivileges: optional(boolean) };

export interface CopyToHostOptions {
  /** Keep the tar's owners (cp -a); default: the user running the copy owns what it writes. */
  keepOwners?: boolean | undefined;
  /** Keep setuid/setgid bits and file capabilities (cp -a); default: dropped, since a container chose them. */
  keepPrivileges?: boolean | undefined;
}

/**
 * A container's tar stream (copyOut) written onto the host with docker cp's rules: into
 * `dest` when it is a directory, as `dest` otherwise (its parent must exist). `-` is not a
 * path here: the caller pipes the stream itself.
 */
export async function copyToHost(stream: AsyncIterable<Uint8Array | string>, dest: string, given: CopyToHostOptions = {}): Promise<CopyResult> {
  const options = checkObject(COPY_TO_HOST, given, 'copyToHost options', (k) => `copyToHost option ${k}`);
  const label = `cp to ${dest}`;
  if (typeof dest !== 'string' || dest === '' || dest.includes('\0')) throw invalid(`${label}: expected a host path`);
  const abs = path.resolve(dest);
  const chunks = tarChunks(stream)[Symbol.asyncIterator]();
  // The first entry says whether the source is a directory, which decides where it lands.
  const first = await firstEntry(chunks, label);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(label, err);
  }
  const srcIsDir = first.type === 'directory';
  let dirPath: string;
  let topName: string | undefined;
  if (st?.isDirectory()) {
    dirPath = abs; // a tar of 'dir/.' holds the contents only already
  } else {
    if (dest.endsWith('/')) throw new NsboxError(st ? 'ENOTDIR' : 'ENOENT', `${label}: ${st ? 'not a directory' : 'no such directory'}`, { path: dest });
    if (st && srcIsDir) throw new NsboxError('ENOTDIR', `${label}: cannot copy a directory onto a file`, { path: dest });
    if (first.top === '.') {
      // A directory's contents ('dir/.'): `dest` is made, and they go into it.
      try {
        fs.mkdirSync(abs, 0o755);
      } catch (err) {
        throw fromSystemError(label, err);
      }
      dirPath = abs;
    } else {
      dirPath = path.dirname(abs);
      topName = path.basename(abs);
    }
  }
  let fd: number;
  try {
    fd = fs.openSync(dirPath, O_RDONLY | O_DIRECTORY);
  } catch (err) {
    throw fromSystemError(label, err);
  }
  try {
    const uid = process.geteuid?.() ?? 0;
    const gid = process.getegid?.() ?? 0;
    return await extractStream(replay(first.chunks, chunks), fd, {
      label,
      ...(topName !== undefined ? { topName } : {}),
      ...(options.keepOwners ? {} : { owner: { uid, gid } }),
      ...(options.keepPrivileges ? {} : { dropPrivileges: true }),
    });
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads until the first entry's header: its type and top name, and the chunks read so far. */
async function firstEntry(it: AsyncIterator<Buffer>, label: string): Promise<{ type: string; top: string; chunks: Buffer[] }> {
  const chunks: Buffer[] = [];
  let found: { type: string; top: string } | undefined;
  const reader = new TarReader(
    {
      onEntry: (e) => {
        found ??= { type: e.type, top: components(e.name, label)[0] ?? '.' };
      },
      onData: () => undefined,
      onEntryEnd: () => undefined,
    },
    label,
  );
  while (!found) {
    const r = await it.next();
    if (r.done) break;
    chunks.push(r.value);
    reader.write(r.value);
    if (reader.finished) break;
  }
  if (!found) throw new NsboxError('BAD_ARCHIVE', `${label}: the tar stream holds no entry`);
  return { ...found, chunks };
}

async function* replay(first: Buffer[], rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  yield* first;
  for (;;) {
    const r = await rest.next();
    if (r.done) return;
    yield r.value;
  }
}
