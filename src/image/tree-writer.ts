/**
 * Writes tar entries into a directory given by its fd: the policy here, the system calls in
 * the addon (src-cc/core/extract.h), batched.
 *
 * Each entry becomes an encoded step in the current batch; `flush()` hands the batch to the
 * addon, which runs it on libuv's thread pool while this thread parses the next part of the
 * tarball: two threads busy, one system call for most steps. The addon resolves every parent
 * with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) from the root fd and makes each entry by
 * one name in its parent's fd, never following it, so no entry lands or writes outside the
 * root whatever earlier entries planted. Here: names made relative ('..' refused), hardlinks
 * only to regular files this archive extracted, which owners and modes need setting, which
 * extended attributes an image keeps, and directories' own attributes set last.
 *
 * Data is not copied: a step refers to the chunk it arrived in, so a chunk must not change
 * until the batch holding it is done, that is until the second `flush()` after it (or
 * `finish()`). extract.ts reads into a ring of buffers for that reason.
 *
 * Use: `w = new TreeWriter(rootFd, { what: 'cp' })`, `r = new TarReader(w, 'cp: x.tar')`;
 * per chunk `r.write(chunk); await w.flush()`; then `r.end(); await w.finish()`; always
 * `await w.close()` (it returns a failure of a batch still running, which came first).
 */
import { NsboxError, errnoCode } from '../errors';
import { isOverlayXattr } from '../fsat';
import { native, type NativeExtractError, type NativeExtractWriter } from '../native';
import type { TarEntry, TarHandler } from './tar';

// Steps and flags, as in src-cc/core/extract.h.
const OP_FILE = 1,
  OP_DATA = 2,
  OP_FILE_END = 3,
  OP_DIR = 4,
  OP_SYMLINK = 5,
  OP_HARDLINK = 6,
  OP_DIR_ATTRS = 7;
const FLAG_CHOWN = 1,
  FLAG_CHMOD = 2;
const HEADER = 40;
const FAIL_PARENT_SYMLINK = 1,
  FAIL_PARENT_NOTDIR = 2,
  FAIL_NOT_EMPTY = 3,
  FAIL_XATTR = 4;

export interface TreeWriterOptions {
  /** Starts messages: "import" gives `import: entry "x": ...`. */
  what?: string;
  /** The root directory is setgid: new entries get its group, so every owner is set. */
  alwaysChown?: boolean;
  /** The process umask (modes it would change are set explicitly); 0o777 when unknown. */
  umask?: number;
}

class Batch {
  ops = Buffer.allocUnsafe(64 << 10);
  length = 0;
  chunks: Buffer[] = [];
  /** The entry name of each step, for messages. */
  names: string[] = [];

  reset(): void {
    this.length = 0;
    this.chunks = [];
    this.names = [];
  }
}

/** The entries of a tar stream, written under a root directory fd (which stays the caller's). */
export class TreeWriter implements TarHandler {
  entries = 0;
  /** Bytes of regular file content written. */
  bytes = 0;
  /** Devices, fifos and entries of unknown types: counted, not created. */
  skipped = 0;
  /** Extended attributes not kept (not user.* or security.capability). */
  skippedXattrs = 0;
  /**
   * Entries whose owner was not root, written by a user other than root: they cannot be given
   * their owner, so they are the user's (root inside a rootless container's one-id map).
   */
  ownersSquashed = 0;

  private readonly writer: NativeExtractWriter;
  private readonly what: string;
  private readonly umask: number;
  private readonly isRoot: boolean;
  private readonly defaultUid: number;
  private readonly defaultGid: number;
  private readonly alwaysChown: boolean;
  private batch = new Batch();
  private spare: Batch | undefined = new Batch();
  private running: { batch: Batch; done: Promise<NsboxError | null> } | undefined;
  private closed = false;
  /** The file whose data is being written, if any. */
  private current: TarEntry | undefined;
  /** Relative paths of regular files extracted so far: the only allowed hardlink targets. */
  private readonly files = new Set<string>();
  /** Directory entries whose owner, mode and times are set once everything is in them. */
  private readonly dirs = new Map<string, TarEntry>();

  constructor(rootFd: number, options: TreeWriterOptions = {}) {
    this.writer = new (native().ExtractWriter)(rootFd);
    this.what = options.what ?? 'extract';
    this.umask = options.umask ?? 0o777;
    this.defaultUid = process.geteuid?.() ?? 0;
    this.defaultGid = process.getegid?.() ?? 0;
    this.isRoot = this.defaultUid === 0;
    this.alwaysChown = options.alwaysChown ?? false;
  }

  onEntry(entry: TarEntry): void {
    this.entries++;
    const rel = relativeName(entry.name, entry.name, this.what);
    switch (entry.type) {
      case 'directory':
        return this.directory(rel, entry);
      case 'file':
        return this.file(rel, entry);
      case 'symlink':
        return this.symlink(rel, entry);
      case 'hardlink':
        return this.hardlink(rel, entry);
      default:
        // Devices and fifos: an exported rootfs has none that matter (/dev is mounted at run time).
        this.skipped++;
        return undefined;
    }
  }

  onData(chunk: Buffer): void {
    if (!this.current) return;
    this.step(OP_DATA, 0, this.current, '', '', this.batch.chunks.push(chunk) - 1);
  }

  onEntryEnd(): void {
    const entry = this.current;
    if (!entry) return;
    this.step(OP_FILE_END, 0, entry, '', '');
    this.bytes += entry.size;
    this.current = undefined;
  }

  /**
   * Waits for the batch handed over last (throwing its failure), then hands over the current
   * one, without waiting for it.
   */
  async flush(): Promise<void> {
    const failed = await this.settle();
    if (failed) throw failed;
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = this.spare ?? new Batch();
    this.spare = undefined;
    const done = new Promise<NsboxError | null>((resolve) => {
      this.writer.run(batch.ops, batch.length, batch.chunks, (e) => resolve(e ? this.failure(e, batch) : null));
    });
    this.running = { batch, done };
  }

  /**
   * Directories get their owner, mode and times last, deepest first: adding entries changes a
   * directory's mtime, and a read-only directory could not be filled. Then waits for all.
   */
  async finish(): Promise<void> {
    const order = [...this.dirs.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [rel, entry] of order) this.step(OP_DIR_ATTRS, this.needsChown(entry) ? FLAG_CHOWN : 0, entry, rel, '');
    await this.flush();
    const failed = await this.settle();
    if (failed) throw failed;
  }

  /**
   * Waits for a batch still running and releases the addon's fds. Returns that batch's
   * failure, if it had one: it happened first, so it is the one to report.
   */
  async close(): Promise<NsboxError | null> {
    if (this.closed) return null;
    const failed = await this.settle();
    this.closed = true;
    this.writer.close();
    return failed;
  }

  /** Waits for the running batch, if any; its buffers are then free again. */
  private async settle(): Promise<NsboxError | null> {
    const running = this.running;
    if (!running) return null;
    const failed = await running.done;
    this.running = undefined;
    running.batch.reset();
    this.spare = running.batch;
    return failed;
  }

  private needsChown(entry: TarEntry): boolean {
    if (!this.isRoot) {
      if (entry.uid !== 0 || entry.gid !== 0) this.ownersSquashed++;
      return false;
    }
    return this.alwaysChown || entry.uid !== this.defaultUid || entry.gid !== this.defaultGid;
  }

  private directory(rel: string, entry: TarEntry): void {
    // "./" is the root itself: only its attributes, at the end.
    if (rel !== '') {
      this.files.delete(rel);
      this.step(OP_DIR, 0, entry, rel, '');
    }
    this.dirs.set(rel, entry);
  }

  private file(rel: string, entry: TarEntry): void {
    this.notRoot(rel, entry);
    const chown = this.needsChown(entry);
    // chown clears setuid and setgid, and open() applies the umask: then the mode is set.
    const chmod = chown || (entry.mode & (0o7000 | this.umask)) !== 0;
    this.dirs.delete(rel);
    this.step(OP_FILE, (chown ? FLAG_CHOWN : 0) | (chmod ? FLAG_CHMOD : 0), entry, rel, '', 0, this.keptXattrs(entry));
    this.current = entry;
    this.files.add(rel);
  }

  private symlink(rel: string, entry: TarEntry): void {
    this.notRoot(rel, entry);
    this.files.delete(rel);
    this.dirs.delete(rel);
    this.step(OP_SYMLINK, this.needsChown(entry) ? FLAG_CHOWN : 0, entry, rel, entry.linkname);
  }

  private hardlink(rel: string, entry: TarEntry): void {
    const target = relativeName(entry.linkname, entry.name, this.what, 'hardlink to a host file');
    // Only a regular file this archive put here: not a directory, not a symlink, nothing
    // that was there before.
    if (!this.files.has(target)) {
      throw new NsboxError(
        'UNSAFE_PATH',
        `${this.what}: entry "${entry.name}": hardlink to a host file or to no regular file extracted before ("${entry.linkname}")`,
        { path: entry.name },
      );
    }
    if (target === rel) return;
    this.dirs.delete(rel);
    this.step(OP_HARDLINK, 0, entry, rel, target);
    this.files.add(rel);
  }

  private notRoot(rel: string, entry: TarEntry): void {
    if (rel === '') throw new NsboxError('UNSAFE_PATH', `${this.what}: entry "${entry.name}": replaces the image root`, { path: entry.name });
  }

  /**
   * user.* and file capabilities; anything else (trusted.*, security.selinux) is the host's
   * business, and so is user.overlay.*: a rootless overlay's own metadata, which an image
   * could otherwise plant to steer the overlay it becomes the lower layer of.
   */
  private keptXattrs(entry: TarEntry): Array<[string, Buffer]> {
    if (entry.xattrs.length === 0) return entry.xattrs;
    const kept = entry.xattrs.filter(([name]) => (name.startsWith('user.') && !isOverlayXattr(name)) || name === 'security.capability');
    this.skippedXattrs += entry.xattrs.length - kept.length;
    return kept;
  }

  /** Appends one encoded step (layout: src-cc/core/extract.h). */
  private step(op: number, flags: number, entry: TarEntry, path: string, link: string, chunk = 0, xattrs: Array<[string, Buffer]> = []): void {
    if (this.closed) throw new Error('TreeWriter: closed');
    const b = this.batch;
    let xattrBytes = 0;
    for (const [name, value] of xattrs) xattrBytes += 8 + 3 * name.length + value.length;
    const need = HEADER + 3 * (path.length + link.length) + xattrBytes;
    if (b.length + need > b.ops.length) {
      const bigger = Buffer.allocUnsafe(Math.max(2 * b.ops.length, b.length + need));
      b.ops.copy(bigger, 0, 0, b.length);
      b.ops = bigger;
    }
    const ops = b.ops;
    const o = b.length;
    ops[o] = op;
    ops[o + 1] = flags;
    ops.writeUInt16LE(xattrs.length, o + 2);
    ops.writeUInt32LE(entry.mode, o + 4);
    ops.writeUInt32LE(entry.uid, o + 8);
    ops.writeUInt32LE(entry.gid, o + 12);
    ops.writeDoubleLE(Math.floor(entry.mtime), o + 16);
    ops.writeUInt32LE(entry.mtimeNsec, o + 24);
    let at = o + HEADER;
    const pathLength = path.length === 0 ? 0 : ops.write(path, at, 'utf8');
    at += pathLength;
    const linkLength = link.length === 0 ? 0 : ops.write(link, at, 'utf8');
    at += linkLength;
    const xattrStart = at;
    for (const [name, value] of xattrs) {
      const nameLength = ops.write(name, at + 8, 'utf8');
      ops.writeUInt32LE(nameLength, at);
      ops.writeUInt32LE(value.length, at + 4);
      value.copy(ops, at + 8 + nameLength);
      at += 8 + nameLength + value.length;
    }
    ops.writeUInt32LE(op === OP_DATA ? chunk : pathLength, o + 28);
    ops.writeUInt32LE(linkLength, o + 32);
    ops.writeUInt32LE(at - xattrStart, o + 36);
    b.length = at;
    b.names.push(entry.name);
  }

  private failure(e: NativeExtractError, batch: Batch): NsboxError {
    const name = batch.names[e.op] ?? '?';
    const where = `${this.what}: entry "${name}"`;
    const at = e.at.toString('utf8');
    const details = { errno: e.errno, syscall: e.syscall, path: name };
    switch (e.kind) {
      case FAIL_PARENT_SYMLINK:
        return new NsboxError('UNSAFE_PATH', `${where}: its parent "${at}" is a symlink: writing through it could leave the image root`, details);
      case FAIL_PARENT_NOTDIR:
        return new NsboxError('ENOTDIR', `${where}: its parent "${at}" is not a directory`, details);
      case FAIL_NOT_EMPTY:
        return new NsboxError('ENOTEMPTY', `${where}: would replace a directory that is not empty`, details);
      case FAIL_XATTR:
        return new NsboxError(errnoCode(e.code), `${where}: extended attribute ${at}: ${e.code} (${e.syscall})`, details);
      default:
        return new NsboxError(errnoCode(e.code), `${where}: ${e.code} (${e.syscall})`, details);
    }
  }
}

/**
 * The entry's name relative to the root: leading '/' and './' dropped (an absolute name
 * lands inside the root), '.' and empty components dropped, '..' refused.
 */
export function relativeName(name: string, entryName: string, what: string, why = 'leaves the image root'): string {
  // Most names need at most a leading "./" and a trailing "/" taken off.
  let start = 0,
    end = name.length;
  while (name.startsWith('./', start)) start += 2;
  if (name.charCodeAt(end - 1) === 0x2f) end--;
  const trimmed = name.slice(start, end);
  if (!UNUSUAL_NAME.test(trimmed)) return trimmed;
  const kept: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      throw new NsboxError('UNSAFE_PATH', `${what}: entry "${entryName}": ${why}`, { path: entryName });
    }
    kept.push(part);
  }
  return kept.join('/');
}

/** Anything relativeName's fast path cannot take as it is: '.' or '..' components, '//', a leading or trailing '/'. */
const UNUSUAL_NAME = /(^|\/)\.\.?(\/|$)|\/\/|^\/|\/$/;

function depth(rel: string): number {
  let n = 0;
  for (let i = rel.indexOf('/'); i >= 0; i = rel.indexOf('/', i + 1)) n++;
  return rel === '' ? -1 : n;
}
