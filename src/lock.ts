/**
 * A lock per container that holds across processes: commit and remove take it, so that a
 * commit never walks a write layer that a remove is deleting. Node has no flock(), so the lock
 * is a symbolic link, locks/<id>, whose target names its owner (`<pid>-<start time>-<what>`,
 * a worker thread's with `-<tid>-<its start time>` before `<what>`):
 * made whole in one step (symlink fails with EEXIST: the claim is atomic), and short enough to
 * live in the inode itself, so that it can be taken on a full disk (a remove that frees space
 * must not need any). A lock whose owner is dead (pid gone, or reused: start time differs) is
 * broken.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError, fromSystemError } from './errors';
import { batchError, fsBatch, isBatchError } from './fsbatch';
import { newId, type Layout } from './layout';
import { ownerAlive, ownerTag } from './proc';

/** What a lock's holder is doing (its link says so, for the error a waiter gets). */
export type LockPurpose = 'commit' | 'remove' | 'rename' | 'start' | 'copy' | 'idrange' | 'recover';

export class ContainerLock {
  private released = false;

  private constructor(readonly file: string) {}

  /** What the lock's link points to when this process holds it for `what`. */
  static target(what: LockPurpose): string {
    // A worker thread's lock names the thread too: terminated, it runs nothing to release it,
    // and its process lives on, so only the thread's end shows the lock stale.
    return `${ownerTag()}-${what}`;
  }

  /**
   * The lock at `file` that this process has just taken itself, by a symlink to target() made
   * in a batch of other steps (src/fsbatch.ts); `markReleased()` when a batch removed it again.
   */
  static taken(file: string): ContainerLock {
    return new ContainerLock(file);
  }

  /** A batch of this process removed the link (see taken()): nothing left to release. */
  markReleased(): void {
    this.released = true;
  }

  /** Takes the lock now, or returns undefined while a live process holds it. */
  static tryAcquire(layout: Layout, id: string, what: LockPurpose): ContainerLock | undefined {
    layout.ensure();
    const file = path.join(layout.locks, id);
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        fs.symlinkSync(ContainerLock.target(what), file);
        return new ContainerLock(file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(`lock container ${id}`, e);
      }
      if (!breakIfStale(file, layout)) return undefined;
    }
    return undefined;
  }

  /**
   * Takes the lock, waiting up to `waitMs` for its holder; then fails with IN_USE naming
   * what the holder does.
   */
  static async acquire(layout: Layout, id: string, what: LockPurpose, waitMs: number): Promise<ContainerLock> {
    const deadline = Date.now() + waitMs;
    // The usual case, a free lock, off the event loop (a symlink on the state directory's disk).
    layout.ensure();
    const file = path.join(layout.locks, id);
    const [made] = await fsBatch([{ op: 'symlink', path: file, to: ContainerLock.target(what) }]);
    if (!isBatchError(made)) return new ContainerLock(file);
    if (made.code !== 'EEXIST') throw fromSystemError(`lock container ${id}`, batchError(made, file));
    for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
      const lock = ContainerLock.tryAcquire(layout, id, what);
      if (lock) return lock;
      if (Date.now() >= deadline) {
        const holder = readHolder(path.join(layout.locks, id));
        throw new NsboxError(
          'IN_USE',
          `container ${id}: cannot ${what} it: ${holder ? `process ${holder.pid} is busy with it (${holder.what})` : 'another process is busy with it'}, still after ${waitMs} ms`,
          {
            hint: 'try again once that is done',
          },
        );
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    fs.rmSync(this.file, { force: true });
  }

  /** release() off the event loop. */
  async releaseAsync(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const [r] = await fsBatch([{ op: 'unlink', path: this.file, tolerate: ['ENOENT'] }]);
    // Something else than the link in its place (EISDIR...): what rm -f would have done.
    if (isBatchError(r)) await fs.promises.rm(this.file, { force: true });
  }
}

interface Holder {
  pid: number;
  start: string;
  /** A worker thread's `<tid>-<start>` (src/proc.ts ownThread). */
  thread?: string;
  what: string;
  /** The link's target, as read. */
  text: string;
}

function readHolder(file: string): Holder | undefined {
  let text: string;
  try {
    text = fs.readlinkSync(file);
  } catch {
    return undefined;
  }
  const m = /^(\d+)-(\d+)(?:-(\d+-\d+))?-([a-z]+)$/.exec(text);
  return m ? { pid: Number(m[1]), start: m[2]!, ...(m[3] ? { thread: m[3] } : {}), what: m[4]!, text } : undefined;
}

/**
 * Breaks a lock whose owner is dead; true when the caller may try again. The lock is renamed
 * away first, then checked to be the one found dead: a lock taken meanwhile by a live process
 * is put back.
 */
function breakIfStale(file: string, layout: Layout): boolean {
  const holder = readHolder(file);
  if (!holder) return !isLink(file); // released meanwhile (true), or not a lock we can read: not ours to break
  if (ownerAlive(holder.pid, holder.start, holder.thread)) return false;
  const away = path.join(layout.locks, `.stale-${process.pid}-${newId()}`);
  try {
    fs.renameSync(file, away);
  } catch {
    return true; // gone meanwhile
  }
  try {
    const taken = fs.readlinkSync(away);
    if (taken !== holder.text) {
      // Someone else broke it and took it in between: theirs, give it back.
      try {
        fs.symlinkSync(taken, file);
      } catch {
        // taken again already: that claim stands
      }
      return false;
    }
    return true;
  } finally {
    fs.rmSync(away, { force: true });
  }
}

function isLink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Stale locks, and what breaking them left (names start with a dot), of dead processes. */
export function pruneLockLeftovers(layout: Layout): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(layout.locks);
  } catch {
    return;
  }
  for (const e of entries) {
    const file = path.join(layout.locks, e);
    if (e.startsWith('.')) {
      const pid = Number(/-(\d+)-[0-9a-f]{12}$/.exec(e)?.[1]);
      if (pid && !fs.existsSync(`/proc/${pid}`)) fs.rmSync(file, { force: true });
      continue;
    }
    breakIfStale(file, layout);
  }
}
