/**
 * A tarball of the merged view of union layers, as a container commit needs: what the
 * container sees, without mounting anything. The layers are read directly and merged the way
 * overlayfs and aufs do it:
 *
 * - the topmost layer holding a name decides what it is;
 * - overlayfs: a character device 0:0 is a whiteout (the name is deleted below it), a
 *   directory the caller reports opaque (trusted.overlay.opaque) hides the lower layers' copies;
 * - aufs: `.wh.<name>` deletes <name> below, `.wh..wh..opq` makes its directory opaque, other
 *   `.wh..wh.*` entries are aufs' own bookkeeping; no `.wh.*` name is ever written out;
 * - a directory merges with directories of the same name below it, down to the first layer
 *   where the name is something else, is whited out, or the directory is opaque.
 *
 * Only names listed by readdir are visited and only directories are descended into, so a
 * symlink in a layer is written as a symlink and never followed (files are opened
 * O_NOFOLLOW). That holds while the layers do not change, i.e. for a stopped container.
 *
 * Output is deterministic: names sorted in each directory, a directory before its contents.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError, fromSystemError } from '../errors';
import { BLOCK_SIZE, encodeHeader, endOfArchive, writeHeader, type TarHeaderInput } from './tar';

export interface MergedTarSource {
  /** Layer directories, topmost (the write layer) first. */
  layers: string[];
  /** Whether a directory of a layer is opaque (overlayfs: its trusted.overlay.opaque xattr is "y"). */
  isOpaque: (dir: string) => boolean;
  /** Container paths (volume mount points) kept as entries, with nothing beneath them. */
  exclude?: string[];
}

export interface MergedTarResult {
  /** Entries written (pax headers not counted). */
  entries: number;
  /** Bytes of tar written, end blocks included. */
  bytes: number;
}

const OUTPUT_CHUNK = 1 << 20;
const { O_RDONLY, O_NOFOLLOW, S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO } = fs.constants;

/**
 * Writes the tar to `output`: a file path (created or truncated; removed again if writing
 * fails) or a stream, which is written to but not ended (it is the caller's).
 */
export async function writeMergedTar(
  source: MergedTarSource,
  output: string | NodeJS.WritableStream,
  /** Also given every entry, in the same walk (a commit building its image meanwhile). */
  also?: MergedEntryVisitor,
): Promise<MergedTarResult> {
  if (source.layers.length === 0) throw new NsboxError('INVALID_ARGUMENT', 'commit: no layers to write');
  const layers = source.layers.map((l) => path.resolve(l));
  const exclude = new Set((source.exclude ?? []).map(containerRelative));

  let fd = -1;
  let sink: Sink;
  if (typeof output === 'string') {
    try {
      fd = fs.openSync(output, 'w', 0o644);
    } catch (err) {
      throw fromSystemError('commit: create tarball', err);
    }
    const outFd = fd;
    sink = new Sink((buf) => writeAllSync(outFd, buf), false);
  } else {
    sink = new Sink((buf) => writeToStream(output, buf), true);
  }

  const tar = new TarEntries(sink);
  const walker = new MergedWalker(layers, source.isOpaque, exclude, async (rel, host, st) => {
    await tar.emit(rel, host, st);
    await also?.(rel, host, st);
  });
  try {
    await walker.run();
    await sink.put(endOfArchive());
    await sink.flush();
    return { entries: tar.entries, bytes: sink.written };
  } catch (err) {
    if (typeof output === 'string') {
      fs.closeSync(fd);
      fd = -1;
      fs.rmSync(output, { force: true });
    }
    throw err;
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
}

/** Volume mount points as the walk compares them: relative, normalised. */
export function containerRelativeSet(paths: string[] | undefined): Set<string> {
  return new Set((paths ?? []).map(containerRelative));
}

/** '/data/', 'data', '/data' all become 'data'; '/' becomes ''. */
function containerRelative(p: string): string {
  const parts = p.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw new NsboxError('INVALID_ARGUMENT', `commit: exclude ${p}: '..' in a container path`, { path: p });
  return parts.join('/');
}

function writeAllSync(fd: number, buf: Buffer): void {
  let done = 0;
  while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done);
}

function writeToStream(stream: NodeJS.WritableStream, buf: Buffer): Promise<void> | void {
  if (stream.write(buf)) return undefined;
  return new Promise((resolve, reject) => {
    const done = (err?: unknown): void => {
      stream.removeListener('drain', onDrain);
      stream.removeListener('error', onError);
      if (err) reject(fromSystemError('commit: write tarball', err));
      else resolve();
    };
    const onDrain = (): void => done();
    const onError = (err: unknown): void => done(err);
    stream.once('drain', onDrain);
    stream.once('error', onError);
  });
}

/**
 * Output batched in one big buffer: headers are copied and file contents read straight into
 * it, and it goes out in one write when full. Flushing is the only asynchronous step.
 */
class Sink {
  buf = Buffer.allocUnsafe(OUTPUT_CHUNK);
  used = 0;
  written = 0;

  /** `handsOver`: the writer keeps the buffer it is given, so each flush needs a new one. */
  constructor(private readonly write: (buf: Buffer) => Promise<void> | void, private readonly handsOver: boolean) {}

  get free(): number {
    return this.buf.length - this.used;
  }

  /** Whether to flush before the next entry, so that its header fits. */
  get full(): boolean {
    return this.free < 16 * BLOCK_SIZE;
  }

  async put(data: Buffer): Promise<void> {
    if (data.length > this.free) await this.flush();
    if (data.length > this.free) this.buf = Buffer.allocUnsafe(data.length);
    this.used += data.copy(this.buf, this.used);
  }

  async zeros(n: number): Promise<void> {
    while (n > 0) {
      if (this.free === 0) await this.flush();
      const k = Math.min(n, this.free);
      this.buf.fill(0, this.used, this.used + k);
      this.used += k;
      n -= k;
    }
  }

  async flush(): Promise<void> {
    if (this.used === 0) return;
    const out = this.used === this.buf.length ? this.buf : this.buf.subarray(0, this.used);
    this.written += this.used;
    this.used = 0;
    if (this.handsOver || this.buf.length !== OUTPUT_CHUNK) this.buf = Buffer.allocUnsafe(OUTPUT_CHUNK);
    await this.write(out);
    // Lets the event loop run between megabytes of synchronous reads.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

interface Candidate {
  /** Host path of the topmost copy (the one that decides what the name is). */
  top: string;
  whiteout: boolean;
  /** For a directory: host paths of it in each layer that merges into it, topmost first. */
  dirs: string[];
  /** Whether lower layers can still add to it. */
  open: boolean;
}

/** What the walk hands each entry of the merged view to: its path in the container, the host path of the copy that wins, and that copy's lstat. */
export type MergedEntryVisitor = (rel: string, host: string, st: fs.Stats) => Promise<void> | void;

/** Visits the merged view of the layers, a directory before its contents, names sorted. */
export class MergedWalker {
  constructor(
    private readonly layers: string[],
    private readonly isOpaque: (dir: string) => boolean,
    private readonly exclude: Set<string>,
    private readonly visit: MergedEntryVisitor,
  ) {}

  async run(): Promise<void> {
    const roots: string[] = [];
    for (const layer of this.layers) {
      const st = this.lstat(layer);
      if (!st.isDirectory()) throw new NsboxError('ENOTDIR', `commit: layer ${layer}: not a directory`, { path: layer });
      roots.push(layer);
    }
    await this.visit('', roots[0]!, this.lstat(roots[0]!));
    if (!this.exclude.has('')) await this.walk('', roots);
  }

  /** Writes the merged contents of the directory `rel`, whose copies are `dirs` (topmost first). */
  private async walk(rel: string, dirs: string[]): Promise<void> {
    const merged = this.merge(dirs);
    const names = [...merged.keys()].sort();
    for (const name of names) {
      const c = merged.get(name)!;
      if (c.whiteout) continue;
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const st = this.lstat(c.top);
      await this.visit(childRel, c.top, st);
      if (st.isDirectory() && !this.exclude.has(childRel)) await this.walk(childRel, c.dirs);
    }
  }

  /** The names of a directory across its layers, each with the copy that wins. */
  private merge(dirs: string[]): Map<string, Candidate> {
    const merged = new Map<string, Candidate>();
    for (let i = 0; i < dirs.length; i++) {
      const dir = dirs[i]!;
      let dirents: fs.Dirent[];
      try {
        dirents = fs.readdirSync(dir, { withFileTypes: true });
      } catch (err) {
        throw fromSystemError('commit: read layer directory', err);
      }
      let opaque = false;
      const whiteouts: string[] = [];
      for (const d of dirents) {
        const name = d.name;
        if (name.startsWith('.wh.')) {
          if (name === '.wh..wh..opq') opaque = true;
          else if (!name.startsWith('.wh..wh.')) whiteouts.push(name.slice(4));
          continue;
        }
        const host = `${dir}/${name}`;
        const isDir = d.isDirectory();
        const whiteout = d.isCharacterDevice() && this.lstat(host).rdev === 0;
        const seen = merged.get(name);
        if (seen === undefined) {
          merged.set(name, { top: host, whiteout, dirs: isDir ? [host] : [], open: isDir });
        } else if (seen.open) {
          if (isDir) seen.dirs.push(host);
          else seen.open = false;
        }
      }
      // An aufs whiteout hides the name in the layers below its own.
      for (const name of whiteouts) {
        const seen = merged.get(name);
        if (seen === undefined) merged.set(name, { top: '', whiteout: true, dirs: [], open: false });
        else seen.open = false;
      }
      if (i < dirs.length - 1 && (opaque || this.isOpaque(dir))) break;
    }
    return merged;
  }

  private lstat(p: string): fs.Stats {
    try {
      return fs.lstatSync(p);
    } catch (err) {
      throw fromSystemError('commit: stat', err);
    }
  }
}

/** Each entry of the walk as a tar header and the file's content, into the sink. */
class TarEntries {
  entries = 0;
  /** "dev:ino" of regular files with several links → the name written first. */
  private readonly links = new Map<string, string>();

  constructor(private readonly sink: Sink) {}

  async emit(rel: string, host: string, st: fs.Stats): Promise<void> {
    const header: TarHeaderInput = {
      name: rel === '' ? './' : rel,
      type: 'file', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: 0,
      mtime: Math.floor(st.mtimeMs / 1000),
    };
    let fileSize = -1;
    switch (st.mode & S_IFMT) {
      case S_IFDIR:
        header.type = 'directory';
        if (rel !== '') header.name = `${rel}/`;
        break;
      case S_IFREG: {
        const first = st.nlink > 1 ? this.firstLink(host, st, rel) : undefined;
        if (first !== undefined) {
          header.type = 'hardlink';
          header.linkname = first;
        } else {
          header.size = fileSize = st.size;
        }
        break;
      }
      case S_IFLNK:
        header.type = 'symlink';
        try {
          header.linkname = fs.readlinkSync(host);
        } catch (err) {
          throw fromSystemError('commit: read symlink', err);
        }
        break;
      case S_IFCHR:
      case S_IFBLK:
        header.type = (st.mode & S_IFMT) === S_IFCHR ? 'char' : 'block';
        header.devmajor = devMajor(st.rdev);
        header.devminor = devMinor(st.rdev);
        break;
      case S_IFIFO:
        header.type = 'fifo';
        break;
      default:
        // Sockets cannot be stored in a tar; they are meaningless in an image anyway.
        return;
    }
    this.entries++;
    if (this.sink.full) await this.sink.flush();
    const n = writeHeader(header, this.sink.buf, this.sink.used);
    if (n > 0) this.sink.used += n;
    else await this.sink.put(encodeHeader(header));
    if (fileSize > 0) await this.content(host, fileSize);
  }

  /** For a file with several links: the name it was first written under, or undefined (and it is now). */
  private firstLink(host: string, st: fs.Stats, rel: string): string | undefined {
    let key = `${st.dev}:${st.ino}`;
    // Inode numbers beyond 2^53 lose precision as doubles: two files could look like one.
    if (st.ino >= Number.MAX_SAFE_INTEGER) {
      const big = fs.lstatSync(host, { bigint: true });
      key = `${big.dev}:${big.ino}`;
    }
    const first = this.links.get(key);
    if (first === undefined) this.links.set(key, rel);
    return first;
  }

  /**
   * Copies a file's content (the size lstat gave, padded to a block) straight into the output
   * buffer. A file that shrank meanwhile is padded with zeros, one that grew is cut: the
   * header already gave the size.
   */
  private async content(host: string, size: number): Promise<void> {
    let fd: number;
    try {
      fd = fs.openSync(host, O_RDONLY | O_NOFOLLOW);
    } catch (err) {
      throw fromSystemError('commit: open file', err);
    }
    try {
      let left = size;
      while (left > 0) {
        if (this.sink.free === 0) await this.sink.flush();
        const n = fs.readSync(fd, this.sink.buf, this.sink.used, Math.min(left, this.sink.free), null);
        if (n === 0) break;
        this.sink.used += n;
        left -= n;
      }
      await this.sink.zeros(left + ((BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE));
    } catch (err) {
      throw fromSystemError('commit: read file', err);
    } finally {
      fs.closeSync(fd);
    }
  }

}

// Linux's dev_t layout (as glibc's major()/minor() read it): major in bits 8-19 and 44-63,
// minor in bits 0-7 and 20-43.
function devMajor(rdev: number): number {
  const low = rdev % 2 ** 32, high = Math.floor(rdev / 2 ** 32);
  return (((low >>> 8) & 0xfff) | (high & 0xfffff000)) >>> 0;
}

function devMinor(rdev: number): number {
  const low = rdev % 2 ** 32, high = Math.floor(rdev / 2 ** 32);
  return ((low & 0xff) | ((low >>> 12) & 0xfff00) | ((high & 0xfff) << 20)) >>> 0;
}
