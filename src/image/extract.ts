/**
 * Unpacks an image tarball (as `docker export` makes it, plain or gzipped) into an empty
 * directory: the image's read-only root filesystem.
 *
 * Nothing in the archive may reach outside that directory. Names are made relative and any
 * '..' is refused; the writer (src-cc/core/extract.cc) resolves every parent with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) from the directory's fd, so a symlink an
 * earlier entry planted is never followed, and makes each entry with O_EXCL|O_NOFOLLOW in its
 * parent's fd (what an earlier entry of the same name made is removed first). The kernel does
 * the checking, not a lstat before the open: nothing can change a checked path before it is used.
 *
 * Speed: all of it runs in the addon (src-cc/core/tar_import.cc) on one thread of libuv's
 * pool: the tarball read once into a ring of buffers that a second thread hashes (SHA-256)
 * while the first inflates (gzip), parses, applies the policy and writes. Per regular file:
 * openat, write, futimens, close, plus fchown, fchmod and fsetxattr only when the metadata
 * needs them. This thread only waits (and reports progress).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError, errnoCode, fromSystemError, invalid } from '../errors';
import { openDir } from '../fsat';
import { native, type NativeImportFailure, type NativeImportJob, type NativeImportResult, type NativeRefusal } from '../native';

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

const PROGRESS_INTERVAL_MS = 50;
// Why a file system step failed, beyond its errno (src-cc/core/extract.h).
const FAIL_PARENT_SYMLINK = 1,
  FAIL_PARENT_NOTDIR = 2,
  FAIL_NOT_EMPTY = 3,
  FAIL_XATTR = 4;

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
    // Non-blocking: a FIFO put at the path after the caller's check must not hang the open.
    fd = fs.openSync(tarball, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    throw fromSystemError('import: open tarball', err);
  }
  let rootFd = -1;
  let total: number;
  let job: NativeImportJob;
  try {
    rootFd = openDir(root);
    const st = fs.fstatSync(fd);
    // A FIFO or a device (/dev/zero) would be read without end.
    if (!st.isFile()) throw invalid(`import ${tarball}: not a regular file`, tarball);
    total = st.size;
    // The job takes both fds (and closes them): none is held by JS across an await, where a
    // worker terminated meanwhile would leak it.
    job = new (native().ImportJob)(fd, rootFd, {
      tarball,
      label: `import: ${tarball}`,
      what: 'import',
      umask: currentUmask(),
      alwaysChown: (rootStat.mode & 0o2000) !== 0,
    });
  } catch (err) {
    if (rootFd >= 0) fs.closeSync(rootFd);
    fs.closeSync(fd);
    throw err;
  }
  const onProgress = opts.onProgress;
  let reported = -1;
  // A callback that throws fails the import (once it has stopped), as it did when it was
  // called between reads; from a timer it would otherwise be an uncaught exception.
  let progressFailed: { error: unknown } | undefined;
  const report = (): void => {
    const done = job.position();
    if (done === reported || progressFailed) return;
    reported = done;
    try {
      onProgress?.(done, total);
    } catch (error) {
      progressFailed = { error };
    }
  };
  const timer = onProgress ? setInterval(report, PROGRESS_INTERVAL_MS) : undefined;
  let r: NativeImportResult;
  const leave = await importSlot();
  try {
    r = await new Promise<NativeImportResult>((resolve, reject) => {
      job.run((error, result) => (error ? reject(importError(error, tarball)) : resolve(result!)));
    });
  } finally {
    leave();
    if (timer) clearInterval(timer);
  }
  if (progressFailed) throw progressFailed.error;
  const done = job.position();
  onProgress?.(done, Math.max(total, done));
  return { entries: r.entries, bytes: r.bytes, skipped: r.skipped, ownersSquashed: r.ownersSquashed, digest: `sha256:${r.digest}` };
}

/**
 * Imports running at once. Each holds a thread of libuv's pool for its whole length (its
 * parse-and-write loop), and that pool (UV_THREADPOOL_SIZE, 4 by default) also serves every
 * fs.promises call and the file steps of a start and a removal: with as many imports as
 * threads, those would wait for an import to end. Half the pool is left to them.
 */
export const MAX_RUNNING_IMPORTS = Math.max(1, Math.floor(threadPoolSize() / 2));
let runningImports = 0;
const waitingImports: Array<() => void> = [];

function threadPoolSize(): number {
  const n = Number(process.env.UV_THREADPOOL_SIZE);
  // libuv's own default and bounds (1 to 1024).
  return Number.isInteger(n) && n >= 1 ? Math.min(n, 1024) : 4;
}

/** Waits for a free slot; resolves to the function that frees it. */
function importSlot(): Promise<() => void> {
  let freed = false;
  const leave = (): void => {
    if (freed) return;
    freed = true;
    const next = waitingImports.shift();
    if (next) next();
    else runningImports--;
  };
  if (runningImports < MAX_RUNNING_IMPORTS) {
    runningImports++;
    return Promise.resolve(leave);
  }
  // A waiter takes the slot its predecessor hands over (the count stays as it is).
  return new Promise((resolve) => waitingImports.push(() => resolve(leave)));
}

function importError(e: NativeRefusal | NativeImportFailure, tarball: string): NsboxError {
  if (e.kind === 'refused') return new NsboxError(e.code as 'BAD_ARCHIVE', e.message, e.path === undefined ? {} : { path: e.path });
  if (e.kind === 'read') {
    return new NsboxError(errnoCode(e.code), `import: ${tarball}: ${e.code} (read)`, { errno: e.errno, syscall: 'read', path: tarball });
  }
  const name = e.entry;
  const where = `import: entry "${name}"`;
  const at = e.at.toString('utf8');
  const details = { errno: e.errno, syscall: e.syscall, path: name };
  switch (e.failure) {
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
