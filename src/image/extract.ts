/**
 * Unpacks an image tarball (as `docker export` makes it, plain or gzipped) into an empty
 * directory: the image's read-only root filesystem.
 *
 * Nothing in the archive may reach outside that directory. Names are made relative and any
 * '..' is refused; an entry is never written through a symlink: every parent component is
 * checked to be a real directory, and files are created with O_EXCL|O_NOFOLLOW (an earlier
 * entry of the same name is unlinked first). The checks rely on nobody else writing into the
 * directory while it is filled, which holds for a directory the image store has just made.
 *
 * Speed: entries are handled with synchronous fs calls, one 1 MiB chunk of the archive at a
 * time, with as few system calls per entry as the metadata allows: chown only when the owner
 * differs from the one a new file gets anyway, chmod only when the umask or a chown would
 * change the mode. Gzip is inflated on the thread pool, beside the file system work.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

import { NsboxError, fromSystemError, invalid } from '../errors';
import { openDir, setLinkAttrsAt, setTimesFd, setXattrFd, type EntryStat } from '../fsat';
import { TarReader, type TarEntry, type TarHandler } from './tar';

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

const READ_CHUNK = 1 << 20;
/** Compressed input: under glibc's mmap threshold, so fresh buffers reuse heap memory. */
const GZIP_READ_CHUNK = 64 << 10;
const INFLATE_CHUNK = 256 << 10;
const PROGRESS_INTERVAL_MS = 50;

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
const CREATE_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;

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
  const writer = new RootfsWriter(root, rootStat);
  const reader = new TarReader(writer, `import: ${tarball}`);
  const input = new TarballInput(fd, opts.onProgress);
  try {
    try {
      if (input.gzipped) {
        await pipeline(input.chunks(), createGunzip({ chunkSize: INFLATE_CHUNK }), async (inflated: AsyncIterable<Buffer>) => {
          for await (const chunk of inflated) if (!reader.finished) reader.write(chunk);
        });
      } else {
        for await (const chunk of input.chunks()) if (!reader.finished) reader.write(chunk);
      }
    } catch (err) {
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
    reader.end();
    writer.finish();
    return { entries: writer.entries, bytes: writer.bytes, skipped: writer.skipped, digest: input.digest() };
  } finally {
    writer.abort();
    fs.closeSync(fd);
  }
}

/**
 * The tarball's bytes, hashed as they go by. Read synchronously: from the page cache a 1 MiB
 * read costs less than a trip through the thread pool, and the event loop gets a turn after
 * each chunk anyway. A plain tar is parsed straight out of one reused buffer. Gzip input needs
 * a fresh buffer per chunk, since the inflate stream keeps its input after write() returns;
 * those are small enough to come from reused heap memory rather than newly mapped pages.
 *
 * The hash stays on this thread: SHA-256 costs about a third of the CPU of the whole
 * extraction, but a worker thread costs more than that to start on a busy machine.
 */
class TarballInput {
  readonly gzipped: boolean;
  private readonly total: number;
  private readonly hash = createHash('sha256');
  private lastReport = -Infinity;

  constructor(private readonly fd: number, private readonly onProgress: ExtractOptions['onProgress']) {
    this.total = fs.fstatSync(fd).size;
    const magic = Buffer.alloc(2);
    fs.readSync(fd, magic, 0, 2, 0);
    this.gzipped = magic[0] === 0x1f && magic[1] === 0x8b;
  }

  /** Each chunk is valid until the consumer asks for the next one. */
  async *chunks(): AsyncGenerator<Buffer> {
    const size = this.gzipped ? GZIP_READ_CHUNK : READ_CHUNK;
    let buf = Buffer.allocUnsafe(size);
    let position = 0;
    for (;;) {
      if (this.gzipped && position > 0) buf = Buffer.allocUnsafe(size);
      const n = fs.readSync(this.fd, buf, 0, size, position);
      if (n === 0) break;
      position += n;
      const chunk = n < size ? buf.subarray(0, n) : buf;
      this.hash.update(chunk);
      this.progress(position);
      yield chunk;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.onProgress?.(position, Math.max(this.total, position));
  }

  /** Once chunks() has been read to the end. */
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }

  private progress(position: number): void {
    if (!this.onProgress) return;
    const now = performance.now();
    if (now - this.lastReport < PROGRESS_INTERVAL_MS) return;
    this.lastReport = now;
    this.onProgress(position, this.total);
  }
}

interface DirMeta {
  entry: TarEntry;
  /** Mode the directory was created with, or -1 when it existed already. */
  createdMode: number;
}

/** Writes tar entries under `root`, refusing any that would land or write outside it. */
class RootfsWriter implements TarHandler {
  entries = 0;
  bytes = 0;
  skipped = 0;
  /** Extended attributes not kept (not user.* or security.capability). */
  skippedXattrs = 0;

  /** Relative paths known to be real directories (not symlinks) made or checked by us. */
  private readonly realDirs = new Set<string>(['']);
  /** Relative paths of regular files extracted so far: the only allowed hardlink targets. */
  private readonly files = new Set<string>();
  /** Directory entries whose owner, mode and times are set once everything is in them. */
  private readonly dirs = new Map<string, DirMeta>();
  private fd = -1;
  private current: TarEntry | undefined;
  private readonly umask: number;
  private readonly isRoot: boolean;
  private readonly defaultUid: number;
  private readonly defaultGid: number;
  /** A setgid root gives its group to new files, so no owner can be assumed: always chown. */
  private readonly alwaysChown: boolean;

  constructor(private readonly root: string, rootStat: fs.Stats) {
    this.umask = currentUmask();
    this.defaultUid = process.geteuid?.() ?? 0;
    this.defaultGid = process.getegid?.() ?? 0;
    this.isRoot = this.defaultUid === 0;
    this.alwaysChown = (rootStat.mode & 0o2000) !== 0;
  }

  onEntry(entry: TarEntry): void {
    this.entries++;
    const rel = relativeName(entry.name, entry.name);
    try {
      switch (entry.type) {
        case 'directory': return this.directory(rel, entry);
        case 'file': return this.file(rel, entry);
        case 'symlink': return this.symlink(rel, entry);
        case 'hardlink': return this.hardlink(rel, entry);
        default:
          // Devices and fifos need mknod, which Node lacks; an exported rootfs has none that
          // matter (/dev is mounted at run time).
          this.skipped++;
          return undefined;
      }
    } catch (err) {
      throw fromSystemError(`import: entry "${entry.name}"`, err);
    }
  }

  onData(chunk: Buffer): void {
    if (this.fd < 0) return;
    try {
      let done = 0;
      while (done < chunk.length) done += fs.writeSync(this.fd, chunk, done, chunk.length - done);
    } catch (err) {
      throw fromSystemError(`import: entry "${this.current?.name}"`, err);
    }
  }

  onEntryEnd(): void {
    if (this.fd < 0) return;
    const entry = this.current!;
    const fd = this.fd;
    this.fd = -1;
    try {
      const chowned = this.needsChown(entry);
      if (chowned) fs.fchownSync(fd, entry.uid, entry.gid);
      // chown clears setuid and setgid, and open() applied the umask: set the mode after.
      if (chowned || (entry.mode & (0o7000 | this.umask)) !== 0) fs.fchmodSync(fd, entry.mode);
      // After chown, which clears a file capability (security.capability).
      for (const [name, value] of entry.xattrs) this.setXattr(fd, name, value, entry);
      if (entry.mtimeNsec) setTimesFd(fd, Math.floor(entry.mtime), entry.mtimeNsec);
      else fs.futimesSync(fd, fsTime(entry.mtime), fsTime(entry.mtime));
      this.bytes += entry.size;
    } catch (err) {
      throw fromSystemError(`import: entry "${entry.name}"`, err);
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * Directories get their owner, mode and times last, deepest first: adding entries changes a
   * directory's mtime, and a read-only directory could not be filled.
   */
  finish(): void {
    const order = [...this.dirs.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [rel, { entry, createdMode }] of order) {
      const abs = this.abs(rel);
      try {
        const chowned = this.needsChown(entry);
        if (chowned) fs.lchownSync(abs, entry.uid, entry.gid);
        // Safe to follow: `rel` is a real directory (a replaced one leaves this map).
        if (chowned || createdMode !== entry.mode) fs.chmodSync(abs, entry.mode);
        if (entry.mtimeNsec) {
          // To the nanosecond, through the directory itself (a real one: see above).
          const fd = openDir(abs);
          try {
            setTimesFd(fd, Math.floor(entry.mtime), entry.mtimeNsec);
          } finally {
            fs.closeSync(fd);
          }
        } else {
          fs.lutimesSync(abs, fsTime(entry.mtime), fsTime(entry.mtime));
        }
      } catch (err) {
        throw fromSystemError(`import: entry "${entry.name}"`, err);
      }
    }
  }

  /**
   * Keeps what an image needs of an entry's extended attributes: user.* and file
   * capabilities. Anything else (trusted.*, security.selinux, overlay's own) is the host's
   * business, not an image's.
   */
  private setXattr(fd: number, name: string, value: Buffer, entry: TarEntry): void {
    if (!name.startsWith('user.') && name !== 'security.capability') {
      this.skippedXattrs++;
      return;
    }
    try {
      setXattrFd(fd, name, value);
    } catch (err) {
      throw fromSystemError(`import: entry "${entry.name}": extended attribute ${name}`, err);
    }
  }

  /** Closes a file left open by a failure. */
  abort(): void {
    if (this.fd >= 0) {
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }

  private needsChown(entry: TarEntry): boolean {
    if (!this.isRoot) return false;
    return this.alwaysChown || entry.uid !== this.defaultUid || entry.gid !== this.defaultGid;
  }

  private abs(rel: string): string {
    return rel === '' ? this.root : `${this.root}/${rel}`;
  }

  private directory(rel: string, entry: TarEntry): void {
    if (rel === '') {
      // "./": the image's own root directory.
      this.dirs.set('', { entry, createdMode: -1 });
      return;
    }
    this.checkParent(rel, entry.name);
    const abs = this.abs(rel);
    // Owner and group rwx while it is filled, whatever the final mode.
    const mode = (entry.mode | 0o700) & 0o777;
    let createdMode = mode & ~this.umask;
    try {
      fs.mkdirSync(abs, mode);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (fs.lstatSync(abs).isDirectory()) {
        createdMode = -1;
      } else {
        this.remove(rel, entry);
        fs.mkdirSync(abs, mode);
      }
    }
    this.realDirs.add(rel);
    this.dirs.set(rel, { entry, createdMode });
  }

  private file(rel: string, entry: TarEntry): void {
    if (rel === '') throw new NsboxError('UNSAFE_PATH', `import: entry "${entry.name}": replaces the image root`, { path: entry.name });
    this.checkParent(rel, entry.name);
    const abs = this.abs(rel);
    let fd: number;
    try {
      fd = fs.openSync(abs, CREATE_FLAGS, entry.mode & 0o777);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // Never write through what is there (a symlink above all): unlink it and create anew.
      this.remove(rel, entry);
      fd = fs.openSync(abs, CREATE_FLAGS, entry.mode & 0o777);
    }
    this.fd = fd;
    this.current = entry;
    this.files.add(rel);
  }

  private symlink(rel: string, entry: TarEntry): void {
    if (rel === '') throw new NsboxError('UNSAFE_PATH', `import: entry "${entry.name}": replaces the image root`, { path: entry.name });
    this.checkParent(rel, entry.name);
    const abs = this.abs(rel);
    // Kept as stored, absolute or not: it is resolved inside the container, at run time.
    try {
      fs.symlinkSync(entry.linkname, abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      this.remove(rel, entry);
      fs.symlinkSync(entry.linkname, abs);
    }
    if (this.needsChown(entry)) fs.lchownSync(abs, entry.uid, entry.gid);
    if (entry.mtimeNsec && this.isRoot) {
      // To the nanosecond (fchownat + utimensat, never following the link); as root only,
      // since it sets the owner too (to what it already is).
      const dirfd = openDir(path.dirname(abs));
      try {
        const sec = Math.floor(entry.mtime);
        setLinkAttrsAt(dirfd, Buffer.from(path.basename(abs)), {
          uid: entry.uid, gid: entry.gid, mode: 0, atimeSec: sec, atimeNsec: entry.mtimeNsec, mtimeSec: sec, mtimeNsec: entry.mtimeNsec,
        } as EntryStat);
      } finally {
        fs.closeSync(dirfd);
      }
    } else {
      fs.lutimesSync(abs, fsTime(entry.mtime), fsTime(entry.mtime));
    }
  }

  private hardlink(rel: string, entry: TarEntry): void {
    const target = relativeName(entry.linkname, entry.name, 'hardlink to a host file');
    // Only a regular file this archive put here: not a directory, not a symlink, nothing
    // reached through a symlink, nothing that was there before.
    if (!this.files.has(target)) {
      throw new NsboxError('UNSAFE_PATH',
        `import: entry "${entry.name}": hardlink to a host file or to no regular file extracted before ("${entry.linkname}")`,
        { path: entry.name });
    }
    if (target === rel) return;
    this.checkParent(rel, entry.name);
    const abs = this.abs(rel);
    try {
      fs.linkSync(this.abs(target), abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      this.remove(rel, entry);
      fs.linkSync(this.abs(target), abs);
    }
    this.files.add(rel);
  }

  /** Makes sure every component of the entry's parent is a real directory, creating missing ones. */
  private checkParent(rel: string, name: string): void {
    const slash = rel.lastIndexOf('/');
    if (slash < 0) return;
    const parent = rel.slice(0, slash);
    if (this.realDirs.has(parent)) return;
    let at = 0;
    for (;;) {
      const next = parent.indexOf('/', at);
      const prefix = next < 0 ? parent : parent.slice(0, next);
      if (!this.realDirs.has(prefix)) {
        const abs = this.abs(prefix);
        const st = fs.lstatSync(abs, { throwIfNoEntry: false });
        if (st === undefined) {
          // A parent the archive does not list: made like tar does, with the default mode.
          fs.mkdirSync(abs, 0o755);
        } else if (st.isSymbolicLink()) {
          throw new NsboxError('UNSAFE_PATH',
            `import: entry "${name}": its parent "${prefix}" is a symlink: writing through it could leave the image root`,
            { path: name });
        } else if (!st.isDirectory()) {
          throw new NsboxError('ENOTDIR', `import: entry "${name}": its parent "${prefix}" is not a directory`, { path: name });
        }
        this.realDirs.add(prefix);
      }
      if (next < 0) return;
      at = next + 1;
    }
  }

  /** Removes what an earlier entry put at `rel`, so that a new entry replaces it. */
  private remove(rel: string, entry: TarEntry): void {
    const abs = this.abs(rel);
    const st = fs.lstatSync(abs);
    if (st.isDirectory()) {
      try {
        fs.rmdirSync(abs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOTEMPTY') {
          throw new NsboxError('ENOTEMPTY', `import: entry "${entry.name}": would replace a directory that is not empty`, { path: entry.name });
        }
        throw err;
      }
      // Whatever this cache and the metadata list held under it is gone with it.
      const under = `${rel}/`;
      for (const dir of this.realDirs) if (dir === rel || dir.startsWith(under)) this.realDirs.delete(dir);
      for (const dir of this.dirs.keys()) if (dir === rel || dir.startsWith(under)) this.dirs.delete(dir);
    } else {
      fs.unlinkSync(abs);
      this.files.delete(rel);
    }
  }
}

/**
 * The entry's name relative to the image root: leading '/' and './' dropped (an absolute name
 * lands inside the root), '.' and empty components dropped, '..' refused.
 */
function relativeName(name: string, entryName: string, why = 'leaves the image root'): string {
  // Most names need at most a leading "./" and a trailing "/" taken off.
  let start = 0, end = name.length;
  while (name.startsWith('./', start)) start += 2;
  if (name.charCodeAt(end - 1) === 0x2f) end--;
  const trimmed = name.slice(start, end);
  if (!UNUSUAL_NAME.test(trimmed)) return trimmed;
  const kept: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      throw new NsboxError('UNSAFE_PATH', `import: entry "${entryName}": ${why}`, { path: entryName });
    }
    kept.push(part);
  }
  return kept.join('/');
}

/** Anything relativeName's fast path cannot take as it is: '.' or '..' components, '//', a leading or trailing '/'. */
const UNUSUAL_NAME = /(^|\/)\.\.?(\/|$)|\/\/|^\/|\/$/;

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

/** Node turns a negative number of seconds into "now"; a Date keeps times before 1970. */
function fsTime(seconds: number): number | Date {
  return seconds >= 0 ? seconds : new Date(seconds * 1000);
}

function depth(rel: string): number {
  let n = 0;
  for (let i = rel.indexOf('/'); i >= 0; i = rel.indexOf('/', i + 1)) n++;
  return rel === '' ? -1 : n;
}
