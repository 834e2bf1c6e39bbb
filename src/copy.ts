/**
 * cp: files into and out of a container's root, as tar streams, with docker cp's rules for
 * where they land. Every container path is resolved beneath the container's root fd
 * (src/copy-root.ts) with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): a symlink in it
 * (absolute or not) resolves inside the container, never on the host; '..' is refused. Below
 * that point everything goes from directory fds without following a link
 * (src/copy-tar-out.ts reading, src/copy-tar-in.ts writing), so a container swapping files
 * for links while a copy runs (the CVE-2018-15664 class) changes only which of its own files
 * are copied, or fails the copy.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';

import { FdExtractor, components } from './copy-tar-in';
import { treeTar, type TreeSource } from './copy-tar-out';
import type { ContainerRoot } from './copy-root';
import { NsboxError, fromSystemError, invalid } from './errors';
import { openInRoot, statAt, statFd, type EntryStat } from './fsat';
import { isRootless } from './rootless';
import { TarReader } from './image/tar';
import { LoopTurns } from './loop-turns';

/** A tar stream (a Readable, any async iterable of bytes, or a whole Buffer), or a host path. */
export type CopySource = string | Buffer | Uint8Array | AsyncIterable<Uint8Array | string>;

export interface CopyInOptions {
  /** Every file written gets this owner (docker cp without -a: the container's root, 0:0). Default: the owners in the tar, or of the host files. */
  owner?: { uid: number; gid: number } | undefined;
  /** A host path source that is a symlink: copy what it points to (cp -L). */
  follow?: boolean | undefined;
}

export interface CopyOutOptions {
  /** A container path that is a symlink: copy what it points to, resolved inside the container (cp -L). */
  follow?: boolean | undefined;
}

export interface CopyResult {
  entries: number;
  bytes: number;
}

const { O_RDONLY, O_DIRECTORY, S_IFMT, S_IFDIR } = fs.constants;
/** <fcntl.h> O_PATH (Node does not export it; the same on x86-64 and arm64). */
const O_PATH = 0o10000000;

/** A container path as docker cp reads it. */
interface ContainerPath {
  parts: string[];
  /** Ends in '/' (must be a directory) or '/.' (a directory's contents). */
  dirOnly: boolean;
  contentsOnly: boolean;
}

export function parseContainerPath(p: string, label: string): ContainerPath {
  if (typeof p !== 'string' || p === '' || p.includes('\0')) throw invalid(`${label}: ${JSON.stringify(p)}: expected a path in the container`);
  const parts: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      throw new NsboxError('UNSAFE_PATH', `${label}: ${p}: '..' in a container path is refused (paths are resolved inside the container's root)`, { path: p });
    }
    parts.push(part);
  }
  return { parts, dirOnly: p.endsWith('/') || p.endsWith('/.') || p === '.', contentsOnly: p.endsWith('/.') || p === '.' };
}

const joined = (parts: string[]): Buffer => Buffer.from(parts.join('/'));

function inRoot(root: ContainerRoot, parts: string[], flags: number): number {
  return openInRoot(root.fd, joined(parts), flags);
}

/**
 * Refuses a path of a stopped container at or under a volume: the volume is not mounted, and
 * what was written under its mount point would be hidden once it is (by the path as given:
 * a symlink of the container's could still lead under a mount point, which writes only the
 * container's own write layer).
 */
function volumeError(root: ContainerRoot, parts: string[], label: string): NsboxError | undefined {
  const p = `/${parts.join('/')}`;
  for (const v of root.unmountedVolumes) {
    const t = `/${components(v, label).join('/')}`;
    if (p === t || p.startsWith(`${t}/`) || t === '/') {
      return new NsboxError('UNSUPPORTED', `${label}: ${p} is on the volume ${t}, which is mounted only while the container runs`, {
        path: p,
        hint: "copy to or from the volume's host directory, or while the container runs",
      });
    }
  }
  return undefined;
}

function checkVolumes(root: ContainerRoot, parts: string[], label: string): void {
  const e = volumeError(root, parts, label);
  if (e) throw e;
}

/**
 * The container's tar stream of one path: entries named after its last component ('.' for
 * '/' and for a path ending in '/.'), links written as links. The caller closes the root
 * once the generator is done (`finally`).
 */
export function copyOutOf(root: ContainerRoot, p: string, options: CopyOutOptions, label: string): { chunks: AsyncGenerator<Buffer>; close(): void } {
  const cp = parseContainerPath(p, label);
  if (!root.running) checkVolumes(root, cp.parts, label);
  const fds: number[] = [];
  try {
    let src: TreeSource;
    const as = Buffer.from(cp.contentsOnly || cp.parts.length === 0 ? '.' : cp.parts[cp.parts.length - 1]!);
    if (cp.parts.length === 0 || options.follow || cp.dirOnly) {
      // The path resolved whole (the root; -L; 'dir/' and 'dir/.', which name a directory
      // even through a link), inside the root: the fd is the entry itself.
      const fd = inRoot(root, cp.parts, O_PATH);
      fds.push(fd);
      src = { dirFd: fd, name: null, as, label, ...(root.idRange ? { idShift: root.idRange } : {}) };
      if (cp.dirOnly) mustBeDir(statFd(fd), p, label);
    } else {
      // The last component as it is: a link is copied as a link.
      const dir = inRoot(root, cp.parts.slice(0, -1), O_RDONLY | O_DIRECTORY);
      fds.push(dir);
      const name = Buffer.from(cp.parts[cp.parts.length - 1]!);
      statAt(dir, name); // ENOENT now rather than in the stream
      src = { dirFd: dir, name, as, label, ...(root.idRange ? { idShift: root.idRange } : {}) };
    }
    const chunks = treeTar(src);
    return {
      chunks,
      close: () => {
        // Ends a walk cut short (its own fds), then the path's.
        void chunks.return(undefined);
        for (const fd of fds.splice(0)) fs.closeSync(fd);
      },
    };
  } catch (err) {
    for (const fd of fds) fs.closeSync(fd);
    if (err instanceof NsboxError && (err.code === 'ENOENT' || err.code === 'ENOTDIR') && !err.message.startsWith(label)) {
      throw new NsboxError(err.code, `${label}: ${err.code === 'ENOENT' ? 'no such file or directory' : 'not a directory'} in the container`, {
        path: p,
        cause: err,
      });
    }
    throw named(err, label);
  }
}

function mustBeDir(st: EntryStat, p: string, label: string): void {
  if ((st.mode & S_IFMT) !== S_IFDIR) throw new NsboxError('ENOTDIR', `${label}: ${p}: not a directory`, { path: p });
}

/**
 * Writes into the container. A tar stream lands in `dest`, which must be a directory. A host
 * path follows docker cp: into `dest` when it is a directory (its contents only when the
 * source ends in '/.'), as `dest` when it does not exist (its parent must) or is a file (a
 * directory never replaces a file).
 */
export async function copyInto(root: ContainerRoot, source: CopySource, dest: string, options: CopyInOptions, label: string): Promise<CopyResult> {
  if (!root.writable) {
    throw new NsboxError('EROFS', `${label}: the container's root is read-only (--read-only) and it is not running: nothing can be written to it`);
  }
  const cp = parseContainerPath(dest, label);
  if (!root.running) checkVolumes(root, cp.parts, label);
  /** How entries are written beneath the directory `base` (its path in the container). */
  const extract = (base: string[]) => ({
    // Rootless, the container's one id is this user's: whatever owner was asked for or is in
    // the tar, only that one can be given.
    label,
    ...(isRootless() ? { owner: { uid: process.geteuid!(), gid: process.getegid!() } } : options.owner ? { owner: options.owner } : {}),
    // userns 'auto': the owners are the container's ids, shifted into its range on the host.
    ...(root.idRange ? { idShift: root.idRange } : {}),
    ...(root.unmountedVolumes.length ? { refuse: (entry: string[]) => volumeError(root, [...base, ...entry], label) } : {}),
  });
  if (typeof source !== 'string') {
    const fd = openDest(root, cp.parts, dest, label);
    try {
      return await extractStream(tarChunks(source), fd, extract(cp.parts));
    } finally {
      fs.closeSync(fd);
    }
  }

  const host = openHostSource(source, !!options.follow, label);
  try {
    const hostIsDir = host.isDir;
    let destFd: number;
    let topName: string;
    let base = cp.parts;
    try {
      destFd = inRoot(root, cp.parts, O_RDONLY | O_DIRECTORY);
      topName = host.contentsOnly ? '.' : host.name;
    } catch (err) {
      const code = err instanceof NsboxError ? err.code : '';
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw named(err, label);
      if (cp.dirOnly || cp.parts.length === 0) {
        throw new NsboxError(code, `${label}: ${dest}: ${code === 'ENOENT' ? 'no such directory' : 'not a directory'}`, { path: dest });
      }
      if (code === 'ENOTDIR' && hostIsDir) {
        throw new NsboxError('ENOTDIR', `${label}: cannot copy the directory ${source} onto ${dest}, which is not a directory`, { path: dest });
      }
      base = cp.parts.slice(0, -1);
      destFd = openDest(root, base, `/${base.join('/')}`, label);
      topName = cp.parts[cp.parts.length - 1]!;
    }
    try {
      // The tar's top entry is made under the name it lands as ('.': the contents only).
      return await extractStream(treeTar({ ...host.source, as: Buffer.from(topName) }), destFd, extract(base));
    } finally {
      fs.closeSync(destFd);
    }
  } finally {
    host.close();
  }
}

function openDest(root: ContainerRoot, parts: string[], shown: string, label: string): number {
  try {
    return inRoot(root, parts, O_RDONLY | O_DIRECTORY);
  } catch (err) {
    const code = err instanceof NsboxError ? err.code : '';
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new NsboxError(code, `${label}: ${shown || '/'}: ${code === 'ENOENT' ? 'no such directory' : 'not a directory'} in the container`, { path: shown });
    }
    throw named(err, label);
  }
}

interface HostSource {
  source: TreeSource;
  name: string;
  isDir: boolean;
  contentsOnly: boolean;
  close(): void;
}

/** A host path as a tar source: the user's own path, so links in it are followed as usual (the last one with `follow`). */
function openHostSource(p: string, follow: boolean, label: string): HostSource {
  if (p === '' || p.includes('\0')) throw invalid(`${label}: ${JSON.stringify(p)}: expected a host path`);
  const contentsOnly = p.endsWith('/.') || p === '.';
  let abs = path.resolve(p);
  try {
    if (follow) abs = fs.realpathSync(abs);
  } catch (err) {
    throw fromSystemError(`${label}: ${p}`, err);
  }
  const dirPath = abs === '/' ? '/' : path.dirname(abs);
  const name = abs === '/' ? '' : path.basename(abs);
  let dir: number;
  try {
    dir = fs.openSync(dirPath, O_RDONLY | O_DIRECTORY);
  } catch (err) {
    throw fromSystemError(`${label}: ${p}`, err);
  }
  try {
    const st = name === '' ? statFd(dir) : statAt(dir, Buffer.from(name));
    const isDir = (st.mode & S_IFMT) === S_IFDIR;
    if (contentsOnly && !isDir) throw new NsboxError('ENOTDIR', `${label}: ${p}: not a directory`, { path: p });
    if (p.endsWith('/') && !isDir) throw new NsboxError('ENOTDIR', `${label}: ${p}: not a directory`, { path: p });
    return {
      source: { dirFd: dir, name: name === '' ? null : Buffer.from(name), as: Buffer.from(name || '.'), label },
      name: name || '.',
      isDir,
      contentsOnly: contentsOnly || name === '',
      close: () => fs.closeSync(dir),
    };
  } catch (err) {
    fs.closeSync(dir);
    throw err instanceof NsboxError && err.message.startsWith(label)
      ? err
      : new NsboxError(err instanceof NsboxError ? err.code : 'EIO', `${label}: ${p}: ${(err as Error).message}`, { path: p, cause: err });
  }
}

/** Any accepted tar source as Buffers. */
export async function* tarChunks(source: Exclude<CopySource, string>): AsyncGenerator<Buffer> {
  if (source instanceof Uint8Array) {
    yield Buffer.from(source.buffer, source.byteOffset, source.byteLength);
    return;
  }
  if (!source || typeof (source as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function') {
    throw invalid('cp: expected a tar stream (a Readable or async iterable of Buffers), a Buffer, or a host path');
  }
  for await (const chunk of source) yield typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

// A chunk of the tar is parsed and written this much at a time: a Buffer source is one chunk
// of any size, and a piece of small files is many entries.
const EXTRACT_PIECE = 16 << 10;

/**
 * Feeds a tar stream to an FdExtractor writing beneath `fd`, giving the event loop a turn
 * every few milliseconds of writing (the writer's place is its open directory fds, which a
 * turn leaves as they are).
 */
export async function extractStream(chunks: AsyncIterable<Buffer>, fd: number, o: ConstructorParameters<typeof FdExtractor>[1]): Promise<CopyResult> {
  const writer = new FdExtractor(fd, o);
  const reader = new TarReader(writer, o.label);
  const turns = new LoopTurns();
  try {
    for await (const chunk of chunks) {
      for (let at = 0; at < chunk.length && !reader.finished; at += EXTRACT_PIECE) {
        if (turns.due) await turns.give();
        reader.write(at === 0 && chunk.length <= EXTRACT_PIECE ? chunk : chunk.subarray(at, at + EXTRACT_PIECE));
      }
      // (once finished, the rest is read to the end: a producer is never left blocked)
    }
    reader.end();
    writer.finish();
    return { entries: writer.entries, bytes: writer.bytes };
  } catch (err) {
    // The source's own failure (a stream's error) named as the copy's.
    throw named(err, o.label);
  } finally {
    writer.abort();
  }
}

/** Errors of a copy, each starting with what was copied. */
export function named(err: unknown, label: string): NsboxError {
  if (err instanceof NsboxError) {
    if (err.message.startsWith(label)) return err;
    return new NsboxError(err.code, `${label}: ${err.message}`, {
      cause: err,
      ...(err.path !== undefined ? { path: err.path } : {}),
      ...(err.errno !== undefined ? { errno: err.errno } : {}),
      ...(err.syscall ? { syscall: err.syscall } : {}),
    });
  }
  return fromSystemError(label, err);
}

/** A generator as a Readable; destroying it ends the generator (its `finally` runs). */
export function toReadable(gen: AsyncGenerator<Buffer>): Readable {
  return Readable.from(gen, { objectMode: false, highWaterMark: 1 << 20 });
}
