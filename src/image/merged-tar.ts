/**
 * A tarball of the merged view of union layers, as a container commit needs: what the
 * container sees, without mounting anything. The layers are walked by layer-walk.ts (from
 * directory fds, never following a symlink, merged the way the driver does it); this file
 * turns each entry into a tar header and the file's content, read from an fd opened relative
 * to its directory's fd. Names and link targets are written as the bytes they are.
 *
 * Output is deterministic: names sorted by bytes in each directory, a directory before its
 * contents.
 */
import * as fs from 'node:fs';

import { NsboxError, fromSystemError } from '../errors';
import { listXattrsFd, openFileAt, readLinkAt } from '../fsat';
import { MergedWalker, isChangedError, layersChanged, type LayerWalkSource, type MergedVisitor, type WalkEntry } from './layer-walk';
import { BLOCK_SIZE, encodeHeader, endOfArchive, writeHeader, type TarHeaderInput } from './tar';

export type MergedTarSource = LayerWalkSource;

export interface MergedTarResult {
  /** Entries written (pax headers not counted). */
  entries: number;
  /** Bytes of tar written, end blocks included. */
  bytes: number;
}

const OUTPUT_CHUNK = 1 << 20;
const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO } = fs.constants;
const SLASH = Buffer.from('/');

/**
 * Writes the tar to `output`: a file path (created or truncated; removed again if writing
 * fails) or a stream, which is written to but not ended (it is the caller's).
 */
export async function writeMergedTar(
  source: MergedTarSource,
  output: string | NodeJS.WritableStream,
  /** Also given every entry, in the same walk (a commit building its image meanwhile). */
  also?: MergedVisitor,
): Promise<MergedTarResult> {
  if (source.layers.length === 0) throw new NsboxError('INVALID_ARGUMENT', 'commit: no layers to write');

  let fd = -1;
  let sink: Sink;
  if (typeof output === 'string') {
    try {
      fd = fs.openSync(output, 'w', 0o644);
    } catch (err) {
      throw fromSystemError('commit: create tarball', err);
    }
    const outFd = fd;
    sink = new Sink((buf) => writeAll(outFd, buf), false);
  } else {
    sink = new Sink((buf) => writeToStream(output, buf), true);
  }

  const tar = new TarEntries(sink);
  try {
    await new MergedWalker(source, {
      entry: async (e) => {
        await tar.emit(e);
        await also?.entry(e);
      },
      leave: also?.leave ? (e) => also.leave!(e) : undefined,
    }).run();
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

/**
 * Each megabyte written on the thread pool: a write to a disk others keep busy can wait for
 * writeback for a long while (140 ms of the loop once here). The sink waits for it before it
 * fills the buffer again.
 */
async function writeAll(fd: number, buf: Buffer): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await new Promise<{ bytesWritten: number }>((resolve, reject) =>
      fs.write(fd, buf, done, buf.length - done, null, (err, bytesWritten) => (err ? reject(err) : resolve({ bytesWritten }))),
    );
    done += bytesWritten;
  }
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
  constructor(
    private readonly write: (buf: Buffer) => Promise<void> | void,
    private readonly handsOver: boolean,
  ) {}

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

/** Each entry of the walk as a tar header and the file's content, into the sink. */
class TarEntries {
  entries = 0;
  /** Identity of regular files with several links → the path written first. */
  private readonly links = new Map<string, Buffer>();

  constructor(private readonly sink: Sink) {}

  async emit(e: WalkEntry): Promise<void> {
    const st = e.stat;
    const root = e.path.length === 0;
    const header: TarHeaderInput = {
      name: root ? './' : e.path,
      type: 'file',
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      size: 0,
      mtime: st.mtimeSec,
      mtimeNsec: st.mtimeNsec,
    };
    let fileSize = -1;
    switch (st.mode & S_IFMT) {
      case S_IFDIR:
        header.type = 'directory';
        if (!root) header.name = Buffer.concat([e.path, SLASH]);
        break;
      case S_IFREG: {
        const first = st.nlink > 1 ? this.firstLink(e) : undefined;
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
        header.linkname = readChanged(e, () => readLinkAt(e.dirFd, e.name));
        break;
      case S_IFCHR:
      case S_IFBLK:
        header.type = (st.mode & S_IFMT) === S_IFCHR ? 'char' : 'block';
        header.devmajor = st.rdevMajor;
        header.devminor = st.rdevMinor;
        break;
      case S_IFIFO:
        header.type = 'fifo';
        break;
      default:
        // Sockets cannot be stored in a tar; they are meaningless in an image anyway.
        return;
    }
    this.entries++;
    // A regular file is opened before its header: its extended attributes (a file capability,
    // user.*) go into the header, and its content is read from the same fd.
    const fd = header.type === 'file' ? readChanged(e, () => openFileAt(e.dirFd, e.name)) : -1;
    try {
      if (fd >= 0) {
        const xattrs = listXattrsFd(fd);
        if (xattrs.length) header.xattrs = xattrs;
      }
      if (this.sink.full) await this.sink.flush();
      const n = writeHeader(header, this.sink.buf, this.sink.used);
      if (n > 0) this.sink.used += n;
      else await this.sink.put(encodeHeader(header));
      if (fileSize > 0) await this.content(fd, fileSize);
    } finally {
      if (fd >= 0) fs.closeSync(fd);
    }
  }

  /** For a file with several links: the path it was first written under, or undefined (and it is now). */
  private firstLink(e: WalkEntry): Buffer | undefined {
    const first = this.links.get(e.stat.id);
    if (first === undefined) this.links.set(e.stat.id, e.path);
    return first;
  }

  /**
   * Copies a file's content (the size lstat gave, padded to a block) straight into the output
   * buffer. A file that shrank meanwhile is padded with zeros, one that grew is cut: the
   * header already gave the size.
   */
  private async content(fd: number, size: number): Promise<void> {
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
    }
  }
}

/**
 * Opens or reads a listed entry; an entry that is no longer what the listing said (a file
 * swapped for a symlink, say) fails the commit: it is never followed.
 */
export function readChanged<T>(e: WalkEntry, read: () => T): T {
  try {
    return read();
  } catch (err) {
    throw isChangedError(err) ? layersChanged(e.path, err) : err;
  }
}
