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
 * Speed: this thread reads, hashes and parses the tarball one chunk at a time and encodes the
 * entries of each chunk into a batch of steps; the addon runs the batch on the thread pool
 * while this thread parses the next chunk. Per regular file: openat, write, futimens, close,
 * plus fchown, fchmod and fsetxattr only when the metadata needs them. Gzip is inflated on the
 * thread pool too.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

import { NsboxError, fromSystemError, invalid } from '../errors';
import { openDir } from '../fsat';
import { native } from '../native';
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
  /** Entries owned by someone else than root, made the caller's (an import by a user: rootless). */
  ownersSquashed: number;
  /** 'sha256:<hex>' of the tarball file as stored. */
  digest: string;
}

const READ_CHUNK = 1 << 20;
/** Compressed input: under glibc's mmap threshold, so fresh buffers reuse heap memory. */
const GZIP_READ_CHUNK = 64 << 10;
const INFLATE_CHUNK = 256 << 10;
const PROGRESS_INTERVAL_MS = 50;
/** Read buffers used in turn (plain tar), and the chunks the hash may lag behind (both kinds). */
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
  try {
    rootFd = openDir(root);
    writer = new TreeWriter(rootFd, { what: 'import', umask: currentUmask(), alwaysChown: (rootStat.mode & 0o2000) !== 0 });
    const w = writer;
    const reader = new TarReader(w, `import: ${tarball}`);
    const input = new TarballInput(fd, opts.onProgress);
    const consume = async (chunk: Buffer): Promise<void> => {
      if (reader.finished) return;
      reader.write(chunk);
      await w.flush();
    };
    try {
      if (input.gzipped) {
        await pipeline(input.chunks(), createGunzip({ chunkSize: INFLATE_CHUNK }), async (inflated: AsyncIterable<Buffer>) => {
          for await (const chunk of inflated) await consume(chunk);
        });
      } else {
        for await (const chunk of input.chunks()) await consume(chunk);
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
        throw new NsboxError('BAD_ARCHIVE', `import: ${tarball}: gzip: ${e.message} (at offset ${offset} of the tar${where})`, {
          path: entry || tarball,
          cause: err,
        });
      }
      throw fromSystemError(`import: ${tarball}`, err);
    }
    return { entries: w.entries, bytes: w.bytes, skipped: w.skipped, ownersSquashed: w.ownersSquashed, digest: await input.digest() };
  } finally {
    await writer?.close();
    if (rootFd >= 0) fs.closeSync(rootFd);
    fs.closeSync(fd);
  }
}

/**
 * The tarball's bytes, hashed as they go by. Read synchronously: from the page cache a 1 MiB
 * read costs less than a trip through the thread pool, and the event loop gets a turn after
 * each chunk anyway. A plain tar is parsed straight out of a few buffers used in turn: the
 * writer's batch of one chunk still refers to it while the next chunk is read and parsed
 * (tree-writer.ts). Gzip input needs a fresh buffer per chunk, since the inflate stream keeps
 * its input after write() returns; those are small enough to come from reused heap memory
 * rather than newly mapped pages.
 *
 * The hash runs on the thread pool (the addon's Sha256, Node's OpenSSL), one chunk after the
 * other: SHA-256 is about a third of the CPU an import takes, and on this thread it would
 * delay the parsing that keeps the writer's thread busy. A buffer is read into again only
 * once its hash update and its batch are done.
 */
class TarballInput {
  readonly gzipped: boolean;
  private readonly total: number;
  private readonly hash = new (native().Sha256)();
  /** The update running, if any: updates go one at a time, in order. */
  private hashing: Promise<void> = Promise.resolve();
  private lastReport = -Infinity;

  constructor(
    private readonly fd: number,
    private readonly onProgress: ExtractOptions['onProgress'],
  ) {
    this.total = fs.fstatSync(fd).size;
    const magic = Buffer.alloc(2);
    fs.readSync(fd, magic, 0, 2, 0);
    this.gzipped = magic[0] === 0x1f && magic[1] === 0x8b;
  }

  /** Each chunk is valid until the consumer asks for the next one. */
  async *chunks(): AsyncGenerator<Buffer> {
    const size = this.gzipped ? GZIP_READ_CHUNK : READ_CHUNK;
    const ring = this.gzipped ? [] : Array.from({ length: RING }, () => Buffer.allocUnsafe(size));
    // The hash update of the chunk last read into each slot of the ring.
    const hashed: Array<Promise<void>> = [];
    let position = 0;
    for (let k = 0; ; k++) {
      const slot = k % RING;
      // Its last chunk's hash (and batch, two flushes ago at the latest) is done with the buffer.
      await hashed[slot];
      const buf = this.gzipped ? Buffer.allocUnsafe(size) : ring[slot]!;
      const n = fs.readSync(this.fd, buf, 0, size, position);
      if (n === 0) break;
      position += n;
      const chunk = n < size ? buf.subarray(0, n) : buf;
      // Queued behind the update before it, without waiting here: the hash lags by up to
      // RING chunks instead of holding up the parsing.
      this.hashing = this.hashing.then(() => new Promise<void>((resolve) => this.hash.update(chunk, () => resolve())));
      hashed[slot] = this.hashing;
      this.progress(position);
      yield chunk;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.onProgress?.(position, Math.max(this.total, position));
  }

  /** Once chunks() has been read to the end. */
  async digest(): Promise<string> {
    await this.hashing;
    return `sha256:${this.hash.digest()}`;
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
