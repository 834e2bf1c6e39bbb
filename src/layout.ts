/**
 * State on disk under one root directory (default /var/lib/nsbox):
 *   images/<name>/rootfs        the read-only layer shared by every container of the image
 *   images/<name>/image.json    metadata
 *   containers/<id>/upper, work, merged   write layer, overlay workdir, mount point
 *   containers/<id>/container.json        config and state
 *   names/<name> -> <id>                  a symlink: creating it is the atomic name claim
 *   containers/<id>.removing-<pid>-<start>[-<tid>-<start>] a container being removed by that process or worker (a tombstone)
 *   locks/<id>                            held by the process named inside while it commits or removes <id>
 *   idranges/<uid base> -> <id>:<gid base> claims of an nsbox before host-wide ones (userns: 'auto'; src/userns.ts moves them)
 *   tmp/                                  half-made images and containers, renamed into place when complete
 * Every JSON file is written whole: a temp file, then rename. The root and these directories
 * must be the caller's and writable by nobody else (verify()): what is in them is acted on.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { NsboxError, fromSystemError, errnoCode } from './errors';
import { writeFileAsync } from './fsat';
import { firstFailure, fsBatch, type BatchOp } from './fsbatch';

export const DEFAULT_ROOT = '/var/lib/nsbox';

/**
 * The state directory when none is given: $NSBOX_ROOT; as root /var/lib/nsbox; as another
 * user (rootless) $XDG_DATA_HOME/nsbox, else ~/.local/share/nsbox, as podman keeps its own.
 */
export function defaultRoot(env: NodeJS.ProcessEnv = process.env, euid = process.geteuid?.() ?? 0, home = os.homedir()): string {
  if (env.NSBOX_ROOT) return env.NSBOX_ROOT;
  if (euid === 0) return DEFAULT_ROOT;
  if (env.XDG_DATA_HOME && path.isAbsolute(env.XDG_DATA_HOME)) return path.join(env.XDG_DATA_HOME, 'nsbox');
  return path.join(home, '.local', 'share', 'nsbox');
}

export class Layout {
  readonly root: string;
  readonly images: string;
  readonly containers: string;
  readonly names: string;
  readonly tmp: string;
  readonly locks: string;
  /** Claims of an nsbox before host-wide ones: read (and moved) only, never made. */
  readonly idranges: string;
  private made = false;
  /** The root and all its directories exist and passed verify(): only we can change that. */
  private trusted = false;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.images = path.join(this.root, 'images');
    this.containers = path.join(this.root, 'containers');
    this.names = path.join(this.root, 'names');
    this.tmp = path.join(this.root, 'tmp');
    this.locks = path.join(this.root, 'locks');
    this.idranges = path.join(this.root, 'idranges');
  }

  /** Creates the directories once per Layout (0700: container state is root's business). */
  ensure(): void {
    if (this.made) return;
    this.verify();
    try {
      for (const d of this.dirs()) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw fromSystemError(`state directory ${this.root}`, e);
    }
    // Made by us now, or there before: either way checked before the first use.
    this.verify();
    this.made = true;
  }

  /**
   * Refuses a state directory that anyone but this process's user could write: whoever can
   * write it can plant a container record naming any pid or path, or an image that becomes
   * every container's root. Checks the root and its directories that exist (a missing one is
   * made 0700 by ensure()), before anything is read from them. The directories themselves
   * (not what a symlink points to) are checked: only the root may be a symlink.
   */
  verify(): void {
    if (this.trusted) return;
    const uid = process.geteuid?.() ?? 0;
    let complete = true;
    for (const dir of this.dirs()) {
      let st: fs.Stats;
      try {
        st = dir === this.root ? fs.statSync(dir) : fs.lstatSync(dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(`state directory ${dir}`, e);
        complete = false;
        continue;
      }
      const unsafe = (why: string) =>
        new NsboxError('UNSAFE_PATH', `state directory ${dir}: ${why}: refused, since whoever can write it controls what nsbox runs and removes`, {
          path: dir,
          hint: `use a directory owned by uid ${uid} with mode 0700`,
        });
      if (!st.isDirectory()) throw unsafe(st.isSymbolicLink() ? 'a symbolic link' : 'not a directory');
      if (st.uid !== uid) throw unsafe(`owned by uid ${st.uid}, not by uid ${uid} that runs nsbox`);
      if (st.mode & 0o022) throw unsafe(`writable by ${st.mode & 0o020 ? 'its group' : 'others'} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`);
    }
    this.trusted = complete;
  }

  private dirs(): string[] {
    return [this.root, this.images, this.containers, this.names, this.tmp, this.locks];
  }

  imageDir(name: string): string {
    return path.join(this.images, encodeURIComponent(name));
  }

  containerDir(id: string): string {
    return path.join(this.containers, id);
  }

  /** A fresh directory under tmp/ for work that is renamed into place when complete. */
  /** makeTemp off the event loop (once the state directory was made). */
  async makeTempAsync(prefix: string): Promise<string> {
    this.ensure();
    const dir = path.join(this.tmp, `${prefix}-${process.pid}-${newId()}`);
    await fs.promises.mkdir(dir, { mode: 0o700 });
    return dir;
  }

  makeTemp(prefix: string): string {
    this.ensure();
    const dir = path.join(this.tmp, `${prefix}-${process.pid}-${newId()}`);
    fs.mkdirSync(dir, { mode: 0o700 });
    return dir;
  }
}

/** Whether a write failed for want of space (or quota): worth a clear message, and a fallback. */
export function isNoSpace(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** The error for a state file that could not be written, naming the file (and a full disk). */
export function writeError(file: string, e: unknown): NsboxError {
  if (e instanceof NsboxError) return e;
  if (isNoSpace(e)) {
    const code = (e as NodeJS.ErrnoException).code!;
    return new NsboxError(errnoCode(code), `write ${file}: ${code} (no space left on the device holding it)`, {
      path: file,
      syscall: 'write',
      cause: e,
      hint: 'free some space there',
    });
  }
  return fromSystemError(`write ${file}`, e);
}

/**
 * Writes `text` whole: a temp file beside it, then rename. The temp file is removed when the
 * write fails (a full disk must not fill up further with half-written copies).
 */
function writeFileAtomic(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, text, { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw writeError(file, e);
  }
}

/** writeFileAtomic off the event loop; its temp file's name is its own (writes may overlap). */
async function writeFileAtomicAsync(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${newId()}.tmp`;
  // The write and the rename in one job of the pool (src/fsbatch.ts).
  const ops: BatchOp[] = [
    { op: 'write', path: tmp, data: text, flags: fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, mode: 0o600 },
    { op: 'rename', path: tmp, to: file },
  ];
  const failed = firstFailure(ops, await fsBatch(ops));
  if (failed) {
    await fsBatch([{ op: 'unlink', path: tmp, tolerate: ['ENOENT'] }]);
    throw writeError(file, failed.error);
  }
}

export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}

/** The room a record file keeps for later versions of itself: a page, or more for a long one. */
const RECORD_PAGE = 4096;
const RECORD_SLACK = 1024;

/**
 * A state file that must be updatable on a full disk (a container's record: its exit status
 * must not be lost). Written padded with spaces to whole pages (JSON allows trailing white
 * space), so that its blocks are allocated when it is first written. When the usual atomic
 * write fails for want of space, the new content is written over the old in place, into
 * those blocks: one write of at most the file's size, which needs no new space.
 */
export function writeRecordFile(file: string, value: unknown, options: { fresh?: boolean } = {}): void {
  const json = JSON.stringify(value, null, 2);
  const size = Math.max(RECORD_PAGE, Math.ceil((Buffer.byteLength(json) + RECORD_SLACK) / RECORD_PAGE) * RECORD_PAGE);
  const padded = (n: number) => json + ' '.repeat(n - Buffer.byteLength(json) - 1) + '\n';
  if (options.fresh) {
    // In a directory nobody else sees yet (renamed into place once written): written directly.
    try {
      fs.writeFileSync(file, padded(size), { mode: 0o600, flag: 'wx' });
    } catch (e) {
      throw writeError(file, e);
    }
    return;
  }
  try {
    writeFileAtomic(file, padded(size));
    return;
  } catch (e) {
    if (!(e instanceof NsboxError) || !isNoSpace({ code: e.code })) throw e;
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW);
    } catch {
      throw e; // no file to write over (the first write): the disk-full error stands
    }
    try {
      const have = fs.fstatSync(fd).size;
      if (have < Buffer.byteLength(json) + 1) throw e;
      const buf = Buffer.from(padded(have));
      fs.writeSync(fd, buf, 0, buf.length, 0);
    } catch (e2) {
      throw writeError(file, e2);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** A record's content as writeRecordFile writes it: the JSON padded with spaces to whole pages. */
export function recordText(value: unknown): string {
  const json = JSON.stringify(value, null, 2);
  const size = Math.max(RECORD_PAGE, Math.ceil((Buffer.byteLength(json) + RECORD_SLACK) / RECORD_PAGE) * RECORD_PAGE);
  return json + ' '.repeat(size - Buffer.byteLength(json) - 1) + '\n';
}

/** writeRecordFile off the event loop (the full-disk fallback, rare, stays synchronous). */
export async function writeRecordFileAsync(file: string, value: unknown, options: { fresh?: boolean } = {}): Promise<void> {
  const padded = recordText(value);
  if (options.fresh) {
    try {
      await writeFileAsync(file, padded, { flags: fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode: 0o600 });
    } catch (e) {
      throw writeError(file, e);
    }
    return;
  }
  try {
    await writeFileAtomicAsync(file, padded);
  } catch (e) {
    if (!(e instanceof NsboxError) || !isNoSpace({ code: e.code })) throw e;
    writeRecordFile(file, value);
  }
}

export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(`read ${file}`, e);
  }
}

/** What newId makes: the only container ids accepted, from a caller or from disk. */
export const ID_RE = /^[0-9a-f]{12}$/;

/**
 * 12 hex digits. Not a secret, only unique, which mkdir's EEXIST checks: Math.random spares
 * every container start the load of the crypto module.
 */
export function newId(): string {
  let id = '';
  for (let i = 0; i < 3; i++)
    id += Math.floor(Math.random() * 0x10000)
      .toString(16)
      .padStart(4, '0');
  return id;
}
