/**
 * A tar stream of one file or directory tree, read from directory fds (cp's way out of a
 * container, and of a host path into one). The top entry is looked up in an open directory
 * with fstatat(AT_SYMLINK_NOFOLLOW); below it every directory is opened from its parent's fd
 * with O_NOFOLLOW, every file with O_PATH | O_NOFOLLOW and checked to be a regular file before
 * it is read (src/fsat.ts). A symlink is written as a link, never followed; a container
 * swapping a directory for a link while this runs makes the open fail (ELOOP), and the entry
 * is then written as what it has become: nothing is ever read through it.
 *
 * The tar format is src/image/tar.ts's: ustar headers, pax for long names, nanosecond times
 * and xattrs. Hard links within the tree are written as tar hard links.
 *
 * The walk hands out what it has and gives the event loop a turn whenever a few milliseconds
 * of it have passed (src/loop-turns.ts); its place is its stack and its directory fds, and an
 * entry changed in between is met by the same rules as one changed at any other moment.
 */
import * as fs from 'node:fs';

import { NsboxError, errnoCode } from './errors';
import { listDirAsync, listXattrsFd, openDirAt, openFileAt, openInRoot, printable, readLinkAt, statAt, statFd, type EntryStat } from './fsat';
import { DirChain, isChangedError } from './image/layer-walk';
import { BLOCK_SIZE, encodeHeader, endOfArchive, writeHeader, type TarHeaderInput } from './image/tar';
import { LoopTurns } from './loop-turns';

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, O_RDONLY, O_DIRECTORY, O_NOCTTY } = fs.constants;
const EMPTY = Buffer.alloc(0);
const CHUNK = 1 << 20;
const SLASH = Buffer.from('/');

export interface TreeSource {
  /** The directory holding the top entry; stays open (the caller's). */
  dirFd: number;
  /** The top entry's name in dirFd (one component); null: dirFd is the top entry itself (an O_PATH fd or a directory). */
  name: Buffer | null;
  /** The top entry's name in the tar ('.' to write a directory's contents only). */
  as: Buffer;
  /** Starts error messages: "cp ctr:/etc". */
  label: string;
  /**
   * A container with a range of host ids (userns 'auto'): owners are written as the container
   * sees them (host base + n is n; an id outside the range is the overflow id 65534).
   */
  idShift?: { uidBase: number; gidBase: number; size: number };
}

/** What was written, known once the generator is done. */
export interface TreeTarStats {
  entries: number;
  bytes: number;
}

/** The tar as chunks of about 1 MiB; each chunk is the consumer's (never reused). */
export async function* treeTar(src: TreeSource, stats: TreeTarStats = { entries: 0, bytes: 0 }): AsyncGenerator<Buffer> {
  const out = new Chunks();
  const shift = src.idShift;
  if (shift) {
    const inside = (host: number, base: number) => (host >= base && host < base + shift.size ? host - base : 65534);
    const header = out.header.bind(out);
    out.header = (h) => header({ ...h, uid: inside(h.uid ?? 0, shift.uidBase), gid: inside(h.gid ?? 0, shift.gidBase) });
  }
  const walk = new TreeWalk(src, out, stats);
  try {
    for await (const _ of walk.run()) {
      void _;
      if (out.used > 0) {
        const chunk = out.take();
        stats.bytes += chunk.length;
        yield chunk;
      }
      // The consumer's work on the chunk (cp into a container extracts it) counts too.
      if (walk.turns.due) await walk.turns.give();
    }
    out.put(endOfArchive());
    const last = out.take(true);
    stats.bytes += last.length;
    yield last;
  } finally {
    walk.close();
  }
}

/** One buffer filled with headers and file contents, handed out whole. */
class Chunks {
  buf = Buffer.allocUnsafe(CHUNK);
  used = 0;

  get free(): number {
    return this.buf.length - this.used;
  }

  get full(): boolean {
    return this.free < 16 * BLOCK_SIZE;
  }

  put(data: Buffer): void {
    if (data.length > this.free) {
      const bigger = Buffer.allocUnsafe(this.used + data.length + CHUNK);
      this.buf.copy(bigger, 0, 0, this.used);
      this.buf = bigger;
    }
    this.used += data.copy(this.buf, this.used);
  }

  header(h: TarHeaderInput): void {
    const n = writeHeader(h, this.buf, this.used);
    if (n > 0) this.used += n;
    else this.put(encodeHeader(h));
  }

  /** The filled part; a fresh buffer takes its place (a small part is copied out instead). */
  take(all = false): Buffer {
    if (!all && this.used < CHUNK / 8 && this.buf.length === CHUNK) {
      const small = Buffer.from(this.buf.subarray(0, this.used));
      this.used = 0;
      return small;
    }
    const out = this.buf.subarray(0, this.used);
    this.buf = all ? Buffer.alloc(0) : Buffer.allocUnsafe(CHUNK);
    this.used = 0;
    return out;
  }
}

interface Frame {
  /** Tar path of the directory (no trailing slash). */
  path: Buffer;
  dirStat: EntryStat;
  names: Buffer[];
  stats: EntryStat[];
  next: number;
}

class TreeWalk {
  private chain: DirChain | undefined;
  /** Identity of regular files with several links → the tar path written first. */
  private readonly links = new Map<string, Buffer>();
  readonly turns = new LoopTurns();

  constructor(
    private readonly src: TreeSource,
    private readonly out: Chunks,
    private readonly stats: TreeTarStats,
  ) {}

  /**
   * An open directory's entries. A directory removed while it is copied (a running container's,
   * or an image's tree deleted by `rmi -f`) reads as ENOENT: said with its path, not left out,
   * so that a copy never ends as a tarball silently missing a tree.
   */
  private async list(fd: number, path: Buffer): Promise<{ names: Buffer[]; stats: EntryStat[] }> {
    try {
      return await listDirAsync(fd, this.turns);
    } catch (err) {
      const code = err instanceof NsboxError ? err.code : 'EIO';
      throw new NsboxError(
        code,
        `${this.src.label}: read directory ${printable(path)}: ${code === 'ENOENT' ? 'removed while it was copied' : (err as Error).message}`,
        {
          path: printable(path),
          hint: 'copy it again',
          cause: err,
        },
      );
    }
  }

  /**
   * Yields whenever the output buffer should be handed out, or the loop is owed a turn. A big
   * directory is listed on the thread pool (listDirAsync), its fd open meanwhile.
   */
  async *run(): AsyncGenerator<void> {
    const { src } = this;
    let topFd: number;
    if (src.name === null) {
      const top = statFd(src.dirFd);
      if ((top.mode & S_IFMT) !== S_IFDIR) {
        yield* this.itself(src.dirFd, top, src.as);
        return;
      }
      topFd = openInRoot(src.dirFd, EMPTY, O_RDONLY | O_DIRECTORY);
    } else {
      const top = statAt(src.dirFd, src.name);
      if ((top.mode & S_IFMT) !== S_IFDIR) {
        yield* this.entry(src.dirFd, src.name, top, src.as);
        return;
      }
      try {
        topFd = openDirAt(src.dirFd, src.name);
      } catch (err) {
        if (!isChangedError(err)) throw err;
        // No longer a directory: written as what it is now (a link is never followed).
        yield* this.entry(src.dirFd, src.name, statAt(src.dirFd, src.name), src.as);
        return;
      }
    }
    this.chain = new DirChain(topFd);
    const topStat = statFd(topFd);
    yield* this.dirHeader(topStat, src.as);
    const { names, stats } = isPseudoFs(topFd) ? { names: [], stats: [] } : await this.list(topFd, src.as);
    const stack: Frame[] = [{ path: src.as, dirStat: topStat, ...sorted(names, stats), next: 0 }];
    while (stack.length > 0) {
      if (this.turns.due) yield;
      const f = stack[stack.length - 1]!;
      if (f.next === f.names.length) {
        stack.pop();
        if (stack.length > 0) this.chain.pop();
        continue;
      }
      const i = f.next++;
      const name = f.names[i]!;
      const path = Buffer.concat([f.path, SLASH, name]);
      let st = f.stats[i]!;
      // A directory that is something else by the time it is opened (a running container):
      // looked at again, a few times; gone, it is left out; a link is written as a link.
      let fd: number | undefined;
      for (let attempt = 0; (st.mode & S_IFMT) === S_IFDIR && fd === undefined; attempt++) {
        try {
          fd = this.chain.push(name, st.id);
        } catch (err) {
          if (!isChangedError(err)) throw err;
          if (attempt >= 3) throw changed(this.src.label, path, err);
          const now = this.restat(this.chain.fd, name);
          if (now === undefined) break;
          st = now;
        }
      }
      if ((st.mode & S_IFMT) === S_IFDIR) {
        if (fd !== undefined) {
          const now = statFd(fd);
          yield* this.dirHeader(now, path);
          const crossed = device(now) !== device(f.dirStat);
          const listed = crossed && isPseudoFs(fd) ? { names: [], stats: [] } : await this.list(fd, path);
          stack.push({ path, dirStat: now, ...sorted(listed.names, listed.stats), next: 0 });
        }
        continue; // gone
      }
      yield* this.entry(this.chain.fd, name, st, path);
    }
  }

  /** The top entry given as an fd of its own (a path that was resolved, links followed, inside a root). */
  private *itself(fd: number, st: EntryStat, path: Buffer): Generator<void> {
    const type = st.mode & S_IFMT;
    if (type !== S_IFREG) {
      // A device or fifo (an O_PATH fd opens neither): its header. A socket: nothing.
      if (type !== S_IFCHR && type !== S_IFBLK && type !== S_IFIFO) return;
      this.stats.entries++;
      this.out.header({
        ...base(st),
        name: path,
        type: type === S_IFIFO ? 'fifo' : type === S_IFBLK ? 'block' : 'char',
        devmajor: st.rdevMajor,
        devminor: st.rdevMinor,
      });
      return;
    }
    // That very inode, opened for reading through this process's own fd link.
    const file = fs.openSync(`/proc/self/fd/${fd}`, O_RDONLY | O_NOCTTY);
    try {
      const now = statFd(file);
      const h: TarHeaderInput = { ...base(now), name: path, type: 'file', size: now.size };
      const xattrs = listXattrsFd(file);
      if (xattrs.length) h.xattrs = xattrs;
      this.stats.entries++;
      this.out.header(h);
      yield* this.content(file, h.size, path);
    } finally {
      fs.closeSync(file);
    }
  }

  close(): void {
    this.chain?.close();
    this.chain = undefined;
  }

  private *dirHeader(st: EntryStat, path: Buffer): Generator<void> {
    this.stats.entries++;
    this.out.header({ ...base(st), name: Buffer.concat([path, SLASH]), type: 'directory' });
    if (this.out.full) yield;
  }

  /** An entry that is not a directory to descend into: written as what it is when opened. */
  private *entry(dirFd: number, name: Buffer, first: EntryStat, path: Buffer): Generator<void> {
    let st = first;
    for (let attempt = 0; ; attempt++) {
      try {
        yield* this.write(dirFd, name, st, path);
        return;
      } catch (err) {
        // It changed between the listing and its opening (a running container): once more
        // with what it is now; gone, it is left out, as it would be a moment later.
        if (!isChangedError(err) || attempt >= 3) throw changed(this.src.label, path, err);
        const now = this.restat(dirFd, name);
        if (now === undefined) return;
        st = now;
      }
    }
  }

  private restat(dirFd: number, name: Buffer): EntryStat | undefined {
    try {
      return statAt(dirFd, name);
    } catch (err) {
      if (err instanceof NsboxError && err.code === 'ENOENT') return undefined;
      throw err;
    }
  }

  private *write(dirFd: number, name: Buffer, st: EntryStat, path: Buffer): Generator<void> {
    const h: TarHeaderInput = { ...base(st), name: path, type: 'file' };
    let fd = -1;
    switch (st.mode & S_IFMT) {
      case S_IFDIR:
        // Listed as something else, a directory now: looked at again (entry()), never
        // copied as an empty directory in silence.
        throw new NsboxError('EISDIR', `${printable(path)} became a directory`);
      case S_IFREG: {
        const first = st.nlink > 1 ? this.links.get(st.id) : undefined;
        if (first !== undefined) {
          h.type = 'hardlink';
          h.linkname = first;
          break;
        }
        fd = openFileAt(dirFd, name);
        break;
      }
      case S_IFLNK:
        h.type = 'symlink';
        h.linkname = readLinkAt(dirFd, name);
        break;
      case S_IFCHR:
      case S_IFBLK:
        h.type = (st.mode & S_IFMT) === S_IFCHR ? 'char' : 'block';
        h.devmajor = st.rdevMajor;
        h.devminor = st.rdevMinor;
        break;
      case S_IFIFO:
        h.type = 'fifo';
        break;
      default:
        return; // a socket: a tar cannot hold one
    }
    try {
      if (fd >= 0) {
        // The header describes the file that was opened, whatever the listing said.
        const now = statFd(fd);
        Object.assign(h, base(now));
        h.size = now.size;
        const xattrs = listXattrsFd(fd);
        if (xattrs.length) h.xattrs = xattrs;
        if (now.nlink > 1) this.links.set(now.id, path);
      }
      this.stats.entries++;
      this.out.header(h);
      if (fd >= 0) yield* this.content(fd, h.size, path);
      else if (this.out.full) yield;
    } finally {
      if (fd >= 0) fs.closeSync(fd);
    }
  }

  /**
   * The file's content, exactly `size` bytes as the header said: a file that shrank meanwhile
   * is padded with zeros, one that grew is cut.
   */
  private *content(fd: number, size: number, path: Buffer): Generator<void> {
    const out = this.out;
    let left = size;
    while (left > 0) {
      if (out.free === 0) yield;
      let n: number;
      try {
        n = fs.readSync(fd, out.buf, out.used, Math.min(left, out.free), null);
      } catch (err) {
        throw new NsboxError(errnoCode((err as NodeJS.ErrnoException).code), `${this.src.label}: read ${printable(path)}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      if (n === 0) break;
      out.used += n;
      left -= n;
    }
    let pad = left + ((BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE);
    while (pad > 0) {
      if (out.free === 0) yield;
      const k = Math.min(pad, out.free);
      out.buf.fill(0, out.used, out.used + k);
      out.used += k;
      pad -= k;
    }
    if (out.full) yield;
  }
}

/** The device part of an EntryStat id ("dh.dl:ih.il"). */
function device(st: EntryStat): string {
  return st.id.slice(0, st.id.indexOf(':'));
}

/**
 * Kernel file systems of a running container's root (/proc, /sys, cgroups, ptys...): copied
 * as empty directories, as docker cp (which never sees them) and tar --one-file-system would.
 * Their files describe the kernel and the host's hardware, not the container's files, and
 * reading some has effects.
 */
const PSEUDO_FS = new Set([
  0x9fa0, // proc
  0x62656572, // sysfs
  0x27e0eb, // cgroup
  0x63677270, // cgroup2
  0x1cd1, // devpts
  0x19800202, // mqueue
  0x64626720, // debugfs
  0x74726163, // tracefs
  0x73636673, // securityfs
  0xcafe4a11, // bpf
  0x6165676c, // pstore
  0x62656570, // configfs
  0x65735543, // fusectl
  0x42494e4d, // binfmt_misc
]);

function isPseudoFs(fd: number): boolean {
  return PSEUDO_FS.has(Number(fs.statfsSync(`/proc/self/fd/${fd}`).type));
}

function base(st: EntryStat): Omit<TarHeaderInput, 'name' | 'type'> {
  return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: 0, mtime: st.mtimeSec, mtimeNsec: st.mtimeNsec };
}

/** Names sorted by bytes: the same tree always gives the same tar. */
function sorted(names: Buffer[], stats: EntryStat[]): { names: Buffer[]; stats: EntryStat[] } {
  const order = names.map((_, i) => i).sort((a, b) => Buffer.compare(names[a]!, names[b]!));
  return { names: order.map((i) => names[i]!), stats: order.map((i) => stats[i]!) };
}

function changed(label: string, path: Buffer, err: unknown): NsboxError {
  const code = err instanceof NsboxError ? err.code : 'EIO';
  return new NsboxError(code, `${label}: ${printable(path)} kept changing while it was copied (${code}); nothing was followed`, {
    path: printable(path),
    hint: 'copy it again, or stop the container first',
    cause: err,
  });
}
