/**
 * Unpacks an image tarball (as `docker export` makes it, plain or gzipped) into an empty
 * directory: the image's read-only root filesystem.
 *
 * Nothing in the archive may reach outside that directory. Names are made relative and any
 * '..' is refused; the writer (tree-writer.ts, and the addon's core/extract.cc) resolves every
 * parent with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) from the directory's fd, so a
 * symlink an earlier entry planted is never followed, and makes each entry with
 * O_EXCL|O_NOFOLLOW in its parent's fd (what an earlier entry of the same name made is removed
 * first). The kernel does the checking, not a lstat before the open: nothing can change a
 * checked path before it is used.
 *
 * Speed: this thread reads and parses the tarball's headers and encodes the entries of each
 * megabyte into a batch of steps; the addon runs the batch on the thread pool while this
 * thread parses the next one, and a third thread hashes the file. A plain tarball's file data
 * is copied in the kernel from the tarball to the new files (copy_file_range, or splice across
 * file systems), never read here. Per regular file: openat, copy_file_range (or two splices),
 * futimens, close, plus fchown, fchmod and fsetxattr only when the metadata needs them. Gzip
 * is inflated on the thread pool, and its data written from the inflated buffers.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

import { NsboxError, fromSystemError, invalid } from '../errors';
import { openDir } from '../fsat';
import { native, type NativeSha256 } from '../native';
import { TarReader } from './tar';
import { TreeWriter } from './tree-writer';

export interface ExtractOptions {
  /** Bytes of the tarball file (compressed, if it is) consumed so far; at most ~20 calls a second. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

export interface ExtractResult {
  /** Archive members read (long-name and pax headers not counted). */
  entries: number;
  /** Bytes of regular file content written. */
  bytes: number;
  /** Devices, fifos and entries of unknown types: counted, not created. */
  skipped: number;
  /** 'sha256:<hex>' of the tarball file as stored. */
  digest: string;
}

/** Plain tar: what one read takes in; the data of an entry that goes on past it is skipped. */
const PLAIN_READ_CHUNK = 64 << 10;
/** Plain tar: the tarball's bytes (read or skipped) whose entries make one batch. */
const FLUSH_BYTES = 1 << 20;
/** Compressed input: under glibc's mmap threshold, so fresh buffers reuse heap memory. */
const GZIP_READ_CHUNK = 64 << 10;
const INFLATE_CHUNK = 256 << 10;
const PROGRESS_INTERVAL_MS = 50;
/** Gzip: the chunks the hash may lag behind. */
const RING = 4;

export async function extractTarball(tarball: string, dest: string, opts: ExtractOptions = {}): Promise<ExtractResult> {
  const root = path.resolve(dest);
  let rootStat: fs.Stats;
  try {
    rootStat = fs.lstatSync(root);
  } catch (err) {
    throw fromSystemError('import: destination', err);
  }
  if (!rootStat.isDirectory()) throw invalid(`import: ${root}: not a directory`, root);

  let fd: number;
  try {
    fd = fs.openSync(tarball, 'r');
  } catch (err) {
    throw fromSystemError('import: open tarball', err);
  }
  let rootFd = -1;
  let writer: TreeWriter | undefined;
  let input: TarballInput | undefined;
  try {
    input = new TarballInput(fd, opts.onProgress);
    rootFd = openDir(root);
    // A plain tarball's file data is copied by the addon from the tarball's fd, by offset.
    writer = new TreeWriter(rootFd, {
      what: 'import', umask: currentUmask(), alwaysChown: (rootStat.mode & 0o2000) !== 0,
      ...(input.gzipped ? {} : { sourceFd: fd }),
    });
    const w = writer;
    const inp = input;
    const reader = new TarReader(w, `import: ${tarball}`, !input.gzipped);
    const consume = async (chunk: Buffer): Promise<void> => {
      if (reader.finished) return;
      reader.write(chunk);
      await w.flush();
    };
    try {
      if (inp.gzipped) {
        await pipeline(inp.chunks(), createGunzip({ chunkSize: INFLATE_CHUNK }), async (inflated: AsyncIterable<Buffer>) => {
          for await (const chunk of inflated) await consume(chunk);
        });
      } else {
        await inp.readPlain(reader, w);
      }
      reader.end();
      await w.finish();
    } catch (err) {
      // A step of a batch still running came before whatever failed here.
      const earlier = await w.close();
      if (earlier) throw earlier;
      if (err instanceof NsboxError) throw err;
      const e = err as NodeJS.ErrnoException;
      if (typeof e.code === 'string' && e.code.startsWith('Z_')) {
        const { offset, entry } = reader.position;
        const where = entry ? ` in or after entry "${entry}"` : '';
        throw new NsboxError('BAD_ARCHIVE', `import: ${tarball}: gzip: ${e.message} (at offset ${offset} of the tar${where})`,
          { path: entry || tarball, cause: err });
      }
      throw fromSystemError(`import: ${tarball}`, err);
    }
    return { entries: w.entries, bytes: w.bytes, skipped: w.skipped, digest: await inp.digest(tarball) };
  } finally {
    await writer?.close();
    // The hash job reads the fd until it stops.
    await input?.close();
    if (rootFd >= 0) fs.closeSync(rootFd);
    fs.closeSync(fd);
  }
}

/**
 * The tarball's bytes, and its digest.
 *
 * Plain tar (readPlain): this thread reads only what holds headers. The reader hands out
 * each entry's data as an offset in the tarball (TarReader byOffset), the addon copies it
 * from the tarball's fd in the kernel (tree-writer.ts), and whatever data is left of an entry
 * when a read ends is skipped, not read: of usr-mix's 79 MiB, the big files' data never
 * passes through this process. The buffer is reused at once, since no step refers to it. The
 * SHA-256 is one job on the thread pool that reads the file by itself from start to end
 * (the addon's hashFile), started first and waited for last: nothing waits for it on the
 * way. Since the hash, the parsing and the copies read the file apart, digest() then checks
 * that the file did not change meanwhile (size, mtime, ctime, inode): a digest always names
 * the bytes that were extracted.
 *
 * Gzip (chunks): read synchronously (from the page cache a read costs less than a trip
 * through the thread pool), a fresh buffer per chunk, since the inflate stream keeps its
 * input after write() returns; those are small enough to come from reused heap memory rather
 * than newly mapped pages. The compressed bytes are hashed on the thread pool (the addon's
 * Sha256), one chunk after the other, lagging up to RING chunks behind.
 */
class TarballInput {
  readonly gzipped: boolean;
  private readonly total: number;
  private readonly start: fs.BigIntStats;
  private hash: NativeSha256 | undefined;
  /** The gzip update running, if any: updates go one at a time, in order. */
  private hashing: Promise<void> = Promise.resolve();
  /** The plain tarball's hash job, and how to stop it. */
  private fileHash: Promise<{ hex: string; bytes: number }> | undefined;
  private cancelHash: (() => void) | undefined;
  private lastReport = -Infinity;

  constructor(private readonly fd: number, private readonly onProgress: ExtractOptions['onProgress']) {
    this.start = fs.fstatSync(fd, { bigint: true });
    this.total = Number(this.start.size);
    const magic = Buffer.alloc(2);
    fs.readSync(fd, magic, 0, 2, 0);
    this.gzipped = magic[0] === 0x1f && magic[1] === 0x8b;
  }

  /**
   * Feeds a plain tarball to `reader` (a byOffset one, writing through `writer`), reading
   * headers and skipping data, with a batch handed to the writer per FLUSH_BYTES of tarball.
   */
  async readPlain(reader: TarReader, writer: TreeWriter): Promise<void> {
    this.fileHash = new Promise((resolve, reject) => {
      this.cancelHash = native().hashFile(this.fd, (e, hex, bytes) => {
        if (e) reject(fromSystemError('import: hash the tarball', Object.assign(new Error(e.code), e)));
        else resolve({ hex, bytes });
      });
    });
    // Not awaited until digest() or close(); a rejection is not unhandled meanwhile.
    this.fileHash.catch(() => undefined);
    const buf = Buffer.allocUnsafe(PLAIN_READ_CHUNK);
    let position = 0;
    let flushed = 0;
    while (!reader.finished) {
      // Past the end the reader says "truncated" itself; a copy never reads beyond it.
      const skip = Math.min(reader.skippable, Math.max(0, this.total - position));
      if (skip > 0) {
        reader.skip(skip);
        position += skip;
      } else {
        const n = fs.readSync(this.fd, buf, 0, buf.length, position);
        if (n === 0) break;
        position += n;
        reader.write(n < buf.length ? buf.subarray(0, n) : buf);
      }
      if (position - flushed >= FLUSH_BYTES) {
        flushed = position;
        this.progress(position);
        await writer.flush();
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    this.onProgress?.(position, Math.max(this.total, position));
  }

  /** Gzip input: each chunk is valid until the consumer asks for the next one. */
  async *chunks(): AsyncGenerator<Buffer> {
    this.hash = new (native().Sha256)();
    const hash = this.hash;
    // The hash update of the chunk last read into each slot of the ring.
    const hashed: Array<Promise<void>> = [];
    let position = 0;
    for (let k = 0; ; k++) {
      const slot = k % RING;
      // The hash lags by at most RING chunks.
      await hashed[slot];
      const buf = Buffer.allocUnsafe(GZIP_READ_CHUNK);
      const n = fs.readSync(this.fd, buf, 0, GZIP_READ_CHUNK, position);
      if (n === 0) break;
      position += n;
      const chunk = n < GZIP_READ_CHUNK ? buf.subarray(0, n) : buf;
      // Queued behind the update before it, without waiting here.
      this.hashing = this.hashing.then(() => new Promise<void>((resolve) => hash.update(chunk, () => resolve())));
      hashed[slot] = this.hashing;
      this.progress(position);
      yield chunk;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.onProgress?.(position, Math.max(this.total, position));
  }

  /** Once the input has been read to the end and the writer has finished. */
  async digest(tarball: string): Promise<string> {
    if (!this.fileHash) {
      await this.hashing;
      return `sha256:${this.hash!.digest()}`;
    }
    const { hex, bytes } = await this.fileHash;
    const now = fs.fstatSync(this.fd, { bigint: true });
    const s = this.start;
    if (bytes !== this.total || now.size !== s.size || now.ino !== s.ino || now.mtimeNs !== s.mtimeNs || now.ctimeNs !== s.ctimeNs) {
      throw new NsboxError('BAD_ARCHIVE', `import: ${tarball}: the file changed while it was imported`, { path: tarball });
    }
    return `sha256:${hex}`;
  }

  /** Stops the hash job, if it still runs, and waits for it: then the fd may be closed. */
  async close(): Promise<void> {
    if (!this.fileHash) return;
    this.cancelHash?.();
    await this.fileHash.catch(() => undefined);
  }

  private progress(position: number): void {
    if (!this.onProgress) return;
    const now = performance.now();
    if (now - this.lastReport < PROGRESS_INTERVAL_MS) return;
    this.lastReport = now;
    this.onProgress(position, this.total);
  }
}

/**
 * The process umask, read from /proc: process.umask() reads it by setting it twice, which
 * races with other threads creating files. Unknown, it is taken as 0o777, so that every mode
 * gets set explicitly.
 */
function currentUmask(): number {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) return parseInt(m[1]!, 8);
  } catch {
    // No /proc: fall through.
  }
  return 0o777;
}
