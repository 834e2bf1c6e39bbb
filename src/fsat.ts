/**
 * File system calls relative to directory fds, never following a symlink (the addon's
 * src-cc/core/fsat.h), as TypeScript calls that throw NsboxError. Names are Buffers: the bytes
 * on disk, whatever they are, and always one path component.
 */
import { resolve as pathResolve } from 'node:path';

import { NsboxError, errnoCode, fromNative, isNativeErrno } from './errors';
import { native, type NativeErrno } from './native';
import { overlayLowerdir } from './plan';
import type { LoopTurns } from './loop-turns';
import { canFallBack, isAccessError, runAsMappedRoot, runAsMappedRootAsync, type HelperReply } from './subid';

/** An entry's lstat, as listDir and statFd give it (times in seconds and nanoseconds). */
export interface EntryStat {
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  atimeSec: number;
  atimeNsec: number;
  mtimeSec: number;
  mtimeNsec: number;
  rdevMajor: number;
  rdevMinor: number;
  /** Device and inode, exact (not rounded to a double), as high and low 32 bits: "dh.dl:ih.il". */
  id: string;
}

export interface DirListing {
  names: Buffer[];
  stats: EntryStat[];
}

// The fields of one entry in the addon's Float64Array, in its order (binding/fsat.cc).
const FIELDS = 15;

function toStat(f: Float64Array, i: number): EntryStat {
  const o = i * FIELDS;
  return {
    mode: f[o]!,
    uid: f[o + 1]!,
    gid: f[o + 2]!,
    nlink: f[o + 3]!,
    size: f[o + 4]!,
    atimeSec: f[o + 5]!,
    atimeNsec: f[o + 6]!,
    mtimeSec: f[o + 7]!,
    mtimeNsec: f[o + 8]!,
    rdevMajor: f[o + 9]!,
    rdevMinor: f[o + 10]!,
    id: `${f[o + 11]}.${f[o + 12]}:${f[o + 13]}.${f[o + 14]}`,
  };
}

const isErrno = isNativeErrno;

/** The error a failed call becomes (fromNative): its errno name as the code, `what` saying what was done. */
export function errnoError(what: string, e: NativeErrno, path?: string): NsboxError {
  return fromNative(what, e, path === undefined ? {} : { path });
}

function check<T>(r: T | NativeErrno, what: string, path?: string): T {
  if (isErrno(r)) throw errnoError(what, r, path);
  return r;
}

function checkNull(r: NativeErrno | null, what: string): void {
  if (r) throw errnoError(what, r);
}

/** A name for messages (lossy where the bytes are not UTF-8). */
export function printable(name: Buffer | string): string {
  return typeof name === 'string' ? name : name.toString('utf8');
}

/** A directory by path; a symlink as its last component is refused. */
export function openDir(path: string): number {
  return check(native().openDir(path), `open ${path}`, path);
}

export function openDirAt(dirfd: number, name: Buffer): number {
  return check(native().openDirAt(dirfd, name), `open directory ${printable(name)}`);
}

/** The parent ("..") of an open directory. */
export function openParentDir(dirfd: number): number {
  return check(native().openParentDir(dirfd), 'open ..');
}

/** A regular file for reading; a symlink, device or fifo is never opened (ELOOP, ENXIO). */
export function openFileAt(dirfd: number, name: Buffer): number {
  return check(native().openFileAt(dirfd, name), `open file ${printable(name)}`);
}

/** A new regular file (mode 0600) for writing; it must not exist. */
export function createFileAt(dirfd: number, name: Buffer): number {
  return check(native().createFileAt(dirfd, name), `create ${printable(name)}`);
}

export function listDir(dirfd: number): DirListing {
  const r = check(native().listDir(dirfd), 'read directory');
  const stats: EntryStat[] = new Array<EntryStat>(r.names.length);
  for (let i = 0; i < stats.length; i++) stats[i] = toStat(r.stats, i);
  return { names: r.names, stats };
}

// A directory this big (st_size: bytes of directory blocks; on ext4 a 4 KiB block holds some
// 150-250 short names) is listed on the thread pool; a smaller one at once, which costs less
// than the pool's round trip (a walk of many small directories would pay it for each).
const BIG_DIR_BYTES = 16 << 10;

/**
 * listDir for long walks: a big directory's system calls on libuv's thread pool (one of tens
 * of thousands of entries holds the loop for hundreds of milliseconds otherwise), its
 * entries made into objects on the JS thread with a turn of the loop whenever one is due.
 * `dirfd` must stay open until it settles.
 */
export async function listDirAsync(dirfd: number, turns: LoopTurns): Promise<DirListing> {
  if (statFd(dirfd).size < BIG_DIR_BYTES) return listDir(dirfd);
  const r = await new Promise<{ names: Buffer; ends: Uint32Array; stats: Float64Array }>((resolve, reject) =>
    native().listDirAsync(dirfd, (res) => (isErrno(res) ? reject(errnoError('read directory', res)) : resolve(res))),
  );
  const n = r.ends.length;
  const names = new Array<Buffer>(n);
  const stats = new Array<EntryStat>(n);
  for (let i = 0, start = 0; i < n; i++) {
    if ((i & 255) === 255 && turns.due) await turns.give();
    names[i] = r.names.subarray(start, r.ends[i]);
    start = r.ends[i]!;
    stats[i] = toStat(r.stats, i);
  }
  return { names, stats };
}

export function statFd(fd: number): EntryStat {
  return toStat(check(native().statFd(fd), 'stat'), 0);
}

export function readLinkAt(dirfd: number, name: Buffer): Buffer {
  return check(native().readLinkAt(dirfd, name), `read symlink ${printable(name)}`);
}

/** The attribute's value, or null when it is not set. */
export function getXattrFd(fd: number, name: string): Buffer | null {
  return check(native().getXattrFd(fd, name), `read attribute ${name}`);
}

/**
 * The extended attributes an image keeps (user.*, security.capability) of an open file.
 * user.overlay.* is left out: that is a rootless overlay's own metadata (opaque, origin,
 * redirect...), which read back from an image layer would steer the overlay above it.
 */
export function listXattrsFd(fd: number): Array<[string, Buffer]> {
  return check(native().listXattrsFd(fd), 'list extended attributes').filter(([name]) => !isOverlayXattr(name));
}

/** An xattr overlayfs reads as its own under `userxattr`: never taken from or into an image. */
export function isOverlayXattr(name: string): boolean {
  return name.startsWith('user.overlay.');
}

export function setXattrFd(fd: number, name: string, value: Buffer): void {
  checkNull(native().setXattrFd(fd, name, value), `set extended attribute ${name}`);
}

export function setTimesFd(fd: number, sec: number, nsec: number): void {
  checkNull(native().setTimesFd(fd, sec, nsec, sec, nsec), 'set times');
}

export function mkdirAt(dirfd: number, name: Buffer, mode: number): void {
  checkNull(native().mkdirAt(dirfd, name, mode), `make directory ${printable(name)}`);
}

/** A hard link; returns the error instead of throwing it, for callers that fall back (EXDEV). */
export function tryLinkAt(fromDirfd: number, fromName: Buffer, toDirfd: number, toName: Buffer): NativeErrno | null {
  return native().linkAt(fromDirfd, fromName, toDirfd, toName);
}

export function linkAt(fromDirfd: number, fromName: Buffer, toDirfd: number, toName: Buffer): void {
  checkNull(tryLinkAt(fromDirfd, fromName, toDirfd, toName), `link ${printable(toName)}`);
}

export function symlinkAt(target: Buffer, dirfd: number, name: Buffer): void {
  checkNull(native().symlinkAt(target, dirfd, name), `make symlink ${printable(name)}`);
}

/** Owner, mode and times of an open file or directory (chown first: it clears setuid). */
export function setAttrsFd(fd: number, st: EntryStat): void {
  checkNull(native().setAttrsFd(fd, st.uid, st.gid, st.mode & 0o7777, st.atimeSec, st.atimeNsec, st.mtimeSec, st.mtimeNsec), 'set owner, mode and times');
}

/** Owner and times of a symlink itself. */
export function setLinkAttrsAt(dirfd: number, name: Buffer, st: EntryStat): void {
  checkNull(
    native().setLinkAttrsAt(dirfd, name, st.uid, st.gid, 0, st.atimeSec, st.atimeNsec, st.mtimeSec, st.mtimeNsec),
    `set owner and times of ${printable(name)}`,
  );
}

/** Copies at most `limit` bytes from the start of one fd to another; returns how many. */
export function copyData(fromFd: number, toFd: number, limit: number): number {
  return check(native().copyData(fromFd, toFd, limit), 'copy');
}

/**
 * Removes a directory and everything in it from directory fds: never follows a symlink,
 * never enters another mount (EBUSY), never overflows a stack however deep the tree.
 * `force`: a path that does not exist is not an error.
 */
export function removeTree(path: string | Buffer, options: { force?: boolean } = {}): void {
  const r = native().removeTree(path);
  const e = r && removeTreeError(path, r, options);
  if (e && mappedFallback(e)) {
    const left = afterMapped(e, runAsMappedRoot(['rm', JSON.stringify({ path: resolvePath(path) })], `remove ${printable(path)}`));
    if (left) throw left;
    return;
  }
  if (e) throw e;
}

/**
 * Rootless with a subordinate range: files the container gave to other ids (a directory of
 * mode 0700 owned by uid 1000 inside) are not the user's to list or delete, so a removal that
 * failed with EACCES or EPERM goes on in a helper that is root of a user namespace with the
 * same map (src/subid.ts). Tried second: most write layers hold only the user's own files,
 * and those cost nothing extra.
 */
function mappedFallback(e: NsboxError): boolean {
  return isAccessError(e) && canFallBack();
}

function resolvePath(p: string | Buffer): string {
  return pathResolve(printable(p));
}

function afterMapped(e: NsboxError, reply: HelperReply): NsboxError | undefined {
  if (reply.ok) return undefined;
  return new NsboxError(
    reply.code === undefined ? e.code : errnoCode(reply.code),
    `${e.message}; as the mapped root (newuidmap's range) too: ${reply.message ?? 'failed'}`,
    { ...(e.path ? { path: e.path } : {}) },
  );
}

/**
 * Writes a whole file on libuv's thread pool, open to close in one step: no fd of it is ever
 * held by JS (a worker ended mid-write would leak it). Fails as node:fs does: an Error with
 * `code`, `errno`, `syscall` and `path`.
 */
export function writeFileAsync(path: string, data: string | Buffer, options: { flags: number; mode: number; setMode?: boolean }): Promise<void> {
  return new Promise((resolve, reject) => {
    native().writeFileAsync(path, data, options.flags, options.mode, !!options.setMode, (r) => {
      if (!r) return resolve();
      reject(Object.assign(new Error(`${r.code}: ${r.syscall} '${path}'`), { code: r.code, errno: -r.errno, syscall: r.syscall, path }));
    });
  });
}

/** removeTree on libuv's thread pool, the event loop free meanwhile. */
export function removeTreeAsync(path: string | Buffer, options: { force?: boolean } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    native().removeTreeAsync(path, (r) => {
      const e = r && removeTreeError(path, r, options);
      if (e && mappedFallback(e)) {
        runAsMappedRootAsync(['rm', JSON.stringify({ path: resolvePath(path) })], `remove ${printable(path)}`).then((reply) => {
          const left = afterMapped(e, reply);
          if (left) reject(left);
          else resolve();
        }, reject);
      } else if (e) reject(e);
      else resolve();
    });
  });
}

function removeTreeError(path: string | Buffer, r: NativeErrno & { path: Buffer }, options: { force?: boolean }): NsboxError | undefined {
  if (options.force && r.code === 'ENOENT' && r.path.length === 0) return undefined;
  const where = r.path.length === 0 ? printable(path) : `${printable(path)}/${printable(r.path)}`;
  const hint = r.code === 'EBUSY' ? `something is mounted at ${where}: umount it first` : undefined;
  return fromNative(`remove ${printable(path)}: ${where}`, r, { path: where, ...(hint ? { hint } : {}) });
}

// ---- Container roots (cp, src/copy.ts) ----

/**
 * Opens `path` beneath `rootFd` as if it were "/" (openat2 RESOLVE_IN_ROOT |
 * RESOLVE_NO_MAGICLINKS): symlinks and ".." resolve inside it, never out. `flags`: open
 * flags (fs.constants O_PATH, O_DIRECTORY, O_NOFOLLOW...); close-on-exec is added.
 */
export function openInRoot(rootFd: number, path: Buffer, flags: number): number {
  return check(native().openInRoot(rootFd, path, flags), `open ${printable(path) || '/'}`, printable(path));
}

/** The lstat of one entry of a directory. */
export function statAt(dirfd: number, name: Buffer): EntryStat {
  return toStat(check(native().statAt(dirfd, name), `stat ${printable(name)}`), 0);
}

/** Removes an entry: an empty directory when `dir`, anything but a directory otherwise. */
export function unlinkAt(dirfd: number, name: Buffer, dir: boolean): void {
  checkNull(native().unlinkAt(dirfd, name, dir), `remove ${printable(name)}`);
}

/** An overlay of the layers mounted nowhere (a detached mount): the fd of its root. */
export function mountOverlayFd(lower: string[], upper: string, work: string): number {
  return check(native().mountOverlayFd(overlayLowerdir(lower), upper, work), "mount the container's layers");
}
