/**
 * Writes tar entries beneath an open directory, from directory fds only (cp's way into a
 * container, and out of one onto the host). Unlike import's extractor, which may trust the
 * fresh directory it fills, this one writes where someone else may be changing things meanwhile
 * (a running container's root), so nothing goes through a path string:
 * - every parent directory is opened from its parent's fd with O_NOFOLLOW; a symlink in an
 *   entry's parent path is refused (UNSAFE_PATH), never followed, and a directory swapped for
 *   a link between a check and its opening fails with ELOOP;
 * - '..' in a name is refused; a leading '/' or './' is dropped;
 * - files are created with O_CREAT | O_EXCL | O_NOFOLLOW after unlinking whatever was there
 *   (never written through); a directory is never replaced by a non-directory (docker cp's
 *   rule), a non-empty one never removed;
 * - owner, then mode (chown clears setuid), then xattrs, then times, through the file's fd;
 * - directories get theirs last, deepest first, each reopened from the top the same way;
 * - hard links only to regular files this archive wrote; devices and fifos are refused.
 */
import * as fs from 'node:fs';

import { NsboxError, fromNative, fromSystemError } from './errors';
import { native } from './native';
import { createFileAt, linkAt, mkdirAt, openDirAt, setAttrsFd, setLinkAttrsAt, setXattrFd, statAt, symlinkAt, unlinkAt, type EntryStat } from './fsat';
import type { TarEntry, TarHandler } from './image/tar';

const { S_IFMT, S_IFDIR, S_IFLNK } = fs.constants;
/** Deeper than any real tree; an fd per level is held open. */
const MAX_DEPTH = 4096;

export interface ExtractIntoOptions {
  /** Starts error messages: "cp to ctr:/data". */
  label: string;
  /** Every entry gets this owner; without it, the tar's owners are kept. */
  owner?: { uid: number; gid: number };
  /** Setuid and setgid bits and file capabilities dropped (files landing on the host). */
  dropPrivileges?: boolean;
  /** Replaces the first component of every name ('.': drops it): docker cp's renaming copy. */
  topName?: string;
  /** An error for entries that must not be written (a stopped container's volume paths). */
  refuse?: (parts: string[], entry: TarEntry) => NsboxError | undefined;
  /**
   * A container with a range of host ids (userns 'auto'): owners are the container's ids (n is
   * host base + n; one outside the range is refused), and entries are created as the range's
   * root, since its overlay, mounted in its user namespace, refuses a creator it does not map.
   */
  idShift?: { uidBase: number; gidBase: number; size: number };
}

interface Level {
  name: string;
  fd: number;
}

interface DirAttrs {
  parts: string[];
  entry: TarEntry;
}

export class FdExtractor implements TarHandler {
  entries = 0;
  bytes = 0;
  /** Open directories from the top (not owned) down to the last entry's parent. */
  private readonly levels: Level[] = [];
  private readonly dirs: DirAttrs[] = [];
  /** Regular files this archive wrote: the only hard link targets allowed. */
  private readonly files = new Set<string>();
  private fd = -1;
  private current: TarEntry | undefined;

  /** `topFd`: the directory the entries land in; stays open (the caller's). */
  constructor(
    private readonly topFd: number,
    private readonly o: ExtractIntoOptions,
  ) {}

  onEntry(entry: TarEntry): void {
    this.entries++;
    const parts = this.names(entry.name);
    try {
      if (parts.length === 0) {
        // "./": the destination itself, which stays as it is.
        if (entry.type !== 'directory') throw this.unsafe(entry, 'would replace the destination directory itself');
        return;
      }
      const refused = this.o.refuse?.(parts, entry);
      if (refused) throw refused;
      if (parts.length > MAX_DEPTH) throw new NsboxError('INVALID_ARGUMENT', `${this.o.label}: entry "${entry.name}": more than ${MAX_DEPTH} levels deep`);
      const name = parts[parts.length - 1]!;
      const dir = entry.type === 'hardlink' ? -1 : this.parent(parts, entry);
      switch (entry.type) {
        case 'directory':
          return this.directory(dir, name, parts, entry);
        case 'file':
          return this.file(dir, name, parts, entry);
        case 'symlink':
          return this.symlink(dir, name, entry);
        case 'hardlink':
          return this.hardlink(name, parts, entry);
        default:
          throw new NsboxError(
            'UNSUPPORTED',
            `${this.o.label}: entry "${entry.name}": a ${entry.type === 'other' ? `type '${entry.typeflag}' entry` : entry.type} is not copied (regular files, directories, symlinks and hard links are)`,
            { path: entry.name },
          );
      }
    } catch (err) {
      throw this.wrap(err, entry);
    }
  }

  onData(chunk: Buffer): void {
    if (this.fd < 0) return;
    try {
      let done = 0;
      while (done < chunk.length) done += fs.writeSync(this.fd, chunk, done, chunk.length - done);
    } catch (err) {
      throw this.wrap(err, this.current!);
    }
  }

  onEntryEnd(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    const entry = this.current!;
    this.fd = -1;
    try {
      setAttrsFd(fd, this.attrs(entry));
      for (const [name, value] of entry.xattrs) if (this.keepXattr(name)) setXattrFd(fd, name, value);
      // setxattr leaves the times alone; the owner's chown came first (it clears a capability).
      this.bytes += entry.size;
    } catch (err) {
      throw this.wrap(err, entry);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Directories' owners, modes and times, deepest first (filling them changed their mtimes). */
  finish(): void {
    this.closeLevels(0);
    const order = this.dirs.sort((a, b) => b.parts.length - a.parts.length);
    for (const { parts, entry } of order) {
      let fd = -1;
      try {
        fd = this.reopen(parts, entry);
        setAttrsFd(fd, this.attrs(entry));
      } catch (err) {
        throw this.wrap(err, entry);
      } finally {
        this.closeLevels(0);
        if (fd >= 0) fs.closeSync(fd);
      }
    }
  }

  /** Closes whatever a failure left open. */
  abort(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
    this.closeLevels(0);
  }

  private directory(dir: number, name: string, parts: string[], entry: TarEntry): void {
    const b = Buffer.from(name);
    const st = this.lstat(dir, b);
    if (st && (st.mode & S_IFMT) !== S_IFDIR) {
      unlinkAt(dir, b, false);
      this.asCreator(() => mkdirAt(dir, b, 0o700));
    } else if (!st) {
      this.asCreator(() => mkdirAt(dir, b, 0o700));
    }
    this.dirs.push({ parts, entry });
  }

  private file(dir: number, name: string, parts: string[], entry: TarEntry): void {
    this.fd = this.create(dir, name, entry, (b) => createFileAt(dir, b));
    this.current = entry;
    this.files.add(parts.join('/'));
  }

  private symlink(dir: number, name: string, entry: TarEntry): void {
    // Kept as it is, absolute or not: inside a container it resolves in the container.
    this.create(dir, name, entry, (b) => symlinkAt(Buffer.from(entry.linkname), dir, b));
    setLinkAttrsAt(dir, Buffer.from(name), this.attrs(entry));
  }

  private hardlink(name: string, parts: string[], entry: TarEntry): void {
    const target = this.names(entry.linkname);
    const key = target.join('/');
    if (!this.files.has(key)) {
      throw this.unsafe(entry, `a hard link to "${entry.linkname}", which is not a file this archive wrote before`);
    }
    if (key === parts.join('/')) return;
    // The target's directory, reached the same way (this closes the levels below the common part).
    const fromDir = this.parent(target, entry);
    const fromFd = fs.openSync(`/proc/self/fd/${fromDir}`, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      const toDir = this.parent(parts, entry);
      this.create(toDir, name, entry, (b) => linkAt(fromFd, Buffer.from(target[target.length - 1]!), toDir, b));
    } finally {
      fs.closeSync(fromFd);
    }
    this.files.add(parts.join('/'));
  }

  /**
   * Makes `name` in `dir` with `make`, after removing what is there (not a directory: docker
   * cp never replaces one with a non-directory). Something made there meanwhile (EEXIST) is
   * removed again, a few times.
   */
  private create<T>(dir: number, name: string, entry: TarEntry, make: (b: Buffer) => T): T {
    const b = Buffer.from(name);
    for (let attempt = 0; ; attempt++) {
      const st = this.lstat(dir, b);
      if (st && (st.mode & S_IFMT) === S_IFDIR) {
        throw new NsboxError('EISDIR', `${this.o.label}: entry "${entry.name}": would replace the directory ${name} with a ${entry.type}`, {
          path: entry.name,
        });
      }
      if (st) unlinkAt(dir, b, false);
      try {
        return this.asCreator(() => make(b));
      } catch (err) {
        if (!(err instanceof NsboxError && err.code === 'EEXIST') || attempt >= 3) throw err;
      }
    }
  }

  /**
   * Runs `make` creating as the range's root (idShift), on this thread only and within one
   * synchronous call, so that nothing else this process does creates files as that id.
   */
  private asCreator<T>(make: () => T): T {
    const shift = this.o.idShift;
    if (!shift) return make();
    const err = native().setFsIds(shift.uidBase, shift.gidBase);
    try {
      if (err) throw fromNative(`${this.o.label}: create as the container's root`, err);
      return make();
    } finally {
      native().setFsIds(process.geteuid!(), process.getegid!());
    }
  }

  /** The fd of the entry's parent directory, opened (or made) from the top down. */
  private parent(parts: string[], entry: TarEntry): number {
    const want = parts.length - 1;
    let keep = 0;
    while (keep < this.levels.length && keep < want && this.levels[keep]!.name === parts[keep]) keep++;
    this.closeLevels(keep);
    for (let i = keep; i < want; i++) {
      const up = i === 0 ? this.topFd : this.levels[i - 1]!.fd;
      const b = Buffer.from(parts[i]!);
      const st = this.lstat(up, b);
      if (!st) {
        // A parent the archive does not list, made like tar makes one.
        this.asCreator(() => mkdirAt(up, b, 0o755));
      } else if ((st.mode & S_IFMT) === S_IFLNK) {
        throw this.unsafe(entry, `its parent "${parts.slice(0, i + 1).join('/')}" is a symlink: it is not followed`);
      } else if ((st.mode & S_IFMT) !== S_IFDIR) {
        throw new NsboxError('ENOTDIR', `${this.o.label}: entry "${entry.name}": its parent "${parts.slice(0, i + 1).join('/')}" is not a directory`, {
          path: entry.name,
        });
      }
      // O_NOFOLLOW: swapped for a link since the check, it fails (ELOOP) rather than lead anywhere.
      this.levels.push({ name: parts[i]!, fd: openDirAt(up, b) });
    }
    return want === 0 ? this.topFd : this.levels[want - 1]!.fd;
  }

  /** A directory an entry made, opened again from the top; returns an fd of its own. */
  private reopen(parts: string[], entry: TarEntry): number {
    const dir = this.parent(parts, entry);
    return openDirAt(dir, Buffer.from(parts[parts.length - 1]!));
  }

  private closeLevels(keep: number): void {
    while (this.levels.length > keep) fs.closeSync(this.levels.pop()!.fd);
  }

  private lstat(dir: number, name: Buffer): EntryStat | undefined {
    try {
      return statAt(dir, name);
    } catch (err) {
      if (err instanceof NsboxError && err.code === 'ENOENT') return undefined;
      throw err;
    }
  }

  private attrs(entry: TarEntry): EntryStat {
    const sec = Math.floor(entry.mtime);
    let mode = entry.mode & 0o7777;
    if (this.o.dropPrivileges) mode &= ~0o6000;
    const owner = this.o.owner ?? entry;
    const shift = this.o.idShift;
    const host = (id: number, base: number, what: string): number => {
      if (!shift) return id;
      if (id < 0 || id >= shift.size) {
        throw new NsboxError(
          'EINVAL',
          `${this.o.label}: entry "${entry.name}": ${what} ${id} does not exist in the container (its user namespace maps 0 to ${shift.size - 1})`,
          {
            hint: 'copy without -a (owned by root), or chown the files to ids below 65536 first',
          },
        );
      }
      return base + id;
    };
    return {
      mode,
      uid: host(owner.uid, shift?.uidBase ?? 0, 'uid'),
      gid: host(owner.gid, shift?.gidBase ?? 0, 'gid'),
      nlink: 1,
      size: 0,
      atimeSec: sec,
      atimeNsec: entry.mtimeNsec,
      mtimeSec: sec,
      mtimeNsec: entry.mtimeNsec,
      rdevMajor: 0,
      rdevMinor: 0,
      id: '',
    };
  }

  /** user.* always; a file capability unless privileges are dropped; nothing else (trusted.*, security.selinux). */
  private keepXattr(name: string): boolean {
    return name.startsWith('user.') || (name === 'security.capability' && !this.o.dropPrivileges);
  }

  private names(name: string): string[] {
    const parts = components(name, this.o.label);
    const top = this.o.topName;
    if (top === undefined || parts.length === 0) return parts;
    return top === '.' ? parts.slice(1) : [top, ...parts.slice(1)];
  }

  private unsafe(entry: TarEntry, why: string): NsboxError {
    return new NsboxError('UNSAFE_PATH', `${this.o.label}: entry "${entry.name}": ${why}`, { path: entry.name });
  }

  private wrap(err: unknown, entry: TarEntry): NsboxError {
    if (err instanceof NsboxError) {
      if (err.message.startsWith(this.o.label)) return err;
      return new NsboxError(err.code, `${this.o.label}: entry "${entry.name}": ${err.message}`, {
        path: entry.name,
        cause: err,
        ...(err.errno !== undefined ? { errno: err.errno } : {}),
        ...(err.syscall ? { syscall: err.syscall } : {}),
      });
    }
    return fromSystemError(`${this.o.label}: entry "${entry.name}"`, err);
  }
}

/** An entry's name as components: leading '/' and '.' dropped, '..' refused. */
export function components(name: string, label: string): string[] {
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw new NsboxError('UNSAFE_PATH', `${label}: entry "${name}": '..' would leave the destination`, { path: name });
    out.push(part);
  }
  return out;
}
