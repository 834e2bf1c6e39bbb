/**
 * Warm cgroup sets (v1): directories made ahead of time for containers with limits, so that a
 * start does not pay for mkdir (60-110 µs per controller here, most for memory) on its path.
 *
 * A set is one empty directory per hierarchy a shape of limits needs (memory, pids, cpu, ...),
 * named `nsbox/warm-<pid>-<start time>-<n>` (so that prune knows whose it is), its `tasks`
 * files already open and its limit files already holding the values the last start of that
 * shape asked for. A start takes one, renames each directory to the container's id (rename(2)
 * within the same parent, about 20 µs), writes only values that differ, and the container's
 * first process joins it as before. The pool is refilled after the start has returned, on
 * the JS thread while the container runs (makeSoon). Nothing is made before the second limited start of a shape in a process (a
 * process that starts one, as the CLI does, pays nothing), and with NSBOX_WARM_CGROUPS=0
 * nothing ever is.
 *
 * No process is ever in a warm set, so values written ahead (a pids.max of 1, a small memory
 * limit) bound nobody until the container joins. The pool is emptied when the process exits;
 * after a SIGKILL, prune removes the sets of supervisors that are gone.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { native } from './native';
import { ownStartTime } from './proc';

/** One hierarchy of a shape: `<supervisor's cgroup>/nsbox` there, and the files set in it. */
export interface ShapeGroup {
  parent: string;
  files: string[];
  /** A cpuset directory takes no process until it has memory nodes (its parent's). */
  cpuset: boolean;
}

export interface WarmSet {
  /** One directory per group of the shape, in its order. */
  dirs: string[];
  /** Their `tasks` files, open (close-on-exec). */
  fds: number[];
  /** `${group index}/${file}` -> the value it holds. */
  values: Map<string, string>;
  /**
   * A warm set's tokens of the addon's teardown (undoAtTeardown): a worker terminated while
   * it holds idle sets runs no 'exit' listener, and its process lives on, so prune would never
   * find them stale. Let go once a start takes the set, or it is removed.
   */
  undo?: number[];
}

const WARM_PREFIX = 'warm-';
/** Sets kept ready per shape: one start after another needs one; a few in flight, a few. */
const PER_SHAPE = 2;
/** Shapes kept; a process whose limits keep changing shape drops the oldest. */
const MAX_SHAPES = 4;

interface Pool {
  shape: ShapeGroup[];
  idle: WarmSet[];
  /** Sets being made. */
  filling: number;
  /** The values the last start of this shape asked for: new sets are made with them. */
  values: Map<string, string>;
}

const pools = new Map<string, Pool>();
/** Limited starts of each shape before its pool exists. */
const uses = new Map<string, number>();
let serial = 0;
let exitHooked = false;
/** Sets being made in the background, so that drain() can wait for them. */
const inFlight = new Set<Promise<void>>();

export function warmEnabled(): boolean {
  return process.env.NSBOX_WARM_CGROUPS !== '0';
}

export function shapeKey(shape: ShapeGroup[]): string {
  return JSON.stringify(shape.map((g) => [g.parent, g.files]));
}

/** Whether a directory name is a warm set's, and whose: [pid, start time]. */
export function warmOwner(name: string): [number, string] | undefined {
  const m = /^warm-(\d+)-(\d+)-\d+$/.exec(name);
  return m ? [Number(m[1]), m[2]!] : undefined;
}

function newName(): string {
  return `${WARM_PREFIX}${process.pid}-${ownStartTime()}-${serial++}`;
}

/** A ready set of that shape, or undefined (none made yet, or all taken). */
export function takeWarm(shape: ShapeGroup[]): WarmSet | undefined {
  return warmEnabled() ? pools.get(shapeKey(shape))?.idle.shift() : undefined;
}

/**
 * After a start of this shape (with these values, all written): brings its pool back to
 * PER_SHAPE sets in the background. The pool is made at the second start of a shape: a
 * process that starts one limited container (the CLI, a `-d` supervisor) makes none.
 */
export function refillWarm(shape: ShapeGroup[], values: Map<string, string>): void {
  if (!warmEnabled()) return;
  const key = shapeKey(shape);
  let pool = pools.get(key);
  if (!pool) {
    const n = (uses.get(key) ?? 0) + 1;
    uses.set(key, n);
    if (n < 2) return;
    if (pools.size >= MAX_SHAPES) {
      const [oldKey, old] = pools.entries().next().value as [string, Pool];
      pools.delete(oldKey);
      for (const s of old.idle.splice(0)) discardSync(s);
    }
    pool = { shape, idle: [], filling: 0, values };
    pools.set(key, pool);
    if (!exitHooked) {
      exitHooked = true;
      process.on('exit', dropWarmSync);
    }
  } else {
    // Most recently used last: the first entry is the one dropped.
    pools.delete(key);
    pools.set(key, pool);
  }
  pool.values = values;
  // Sets whose values differ are still good: a start writes what differs.
  while (pool.idle.length + pool.filling < PER_SHAPE) {
    pool.filling++;
    const p: Promise<void> = makeSoon(shape, values)
      .then(
        (set) => {
          pool.filling--;
          // Dropped meanwhile (drain, or more shapes than kept): not wanted any more.
          if (pools.get(key) !== pool) discardSync(set);
          else pool.idle.push(set);
        },
        () => {
          // Not made (the hierarchy went, or is not writable): the next start makes its own.
          pool.filling--;
        },
      )
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  }
}

/** A set made now, named `name` (a container's id), with no values written: the fallback. */
export function makeSync(shape: ShapeGroup[], name: string): WarmSet {
  const set: WarmSet = { dirs: [], fds: [], values: new Map(), ...(name.startsWith(WARM_PREFIX) ? { undo: [] } : {}) };
  try {
    for (const g of shape) {
      const dir = path.join(g.parent, name);
      fs.mkdirSync(dir, { mode: 0o755 });
      set.undo?.push(native().undoAtTeardown('rmdir', dir));
      set.dirs.push(dir);
      if (g.cpuset) fs.writeFileSync(path.join(dir, 'cpuset.mems'), fs.readFileSync(path.join(g.parent, 'cpuset.mems'), 'utf8').trim());
      set.fds.push(fs.openSync(path.join(dir, 'tasks'), fs.constants.O_WRONLY));
    }
    return set;
  } catch (e) {
    discardSync(set);
    throw Object.assign(e as Error, { group: set.dirs.length });
  }
}

/**
 * A warm set made on the JS thread once the current work is done (setImmediate: after the
 * start that asked for it has returned, while its container runs). These are a dozen
 * cgroupfs calls of 10-110 µs, no disk; on libuv's thread pool the same calls cost 0.76 ms
 * more CPU per start here (a thread hop and a promise per call).
 */
function makeSoon(shape: ShapeGroup[], values: Map<string, string>): Promise<WarmSet> {
  return new Promise((resolve, reject) =>
    setImmediate(() => {
      let set: WarmSet;
      try {
        set = makeSync(shape, newName());
      } catch (e) {
        reject(e as Error);
        return;
      }
      for (const [i, g] of shape.entries()) {
        for (const file of g.files) {
          const v = values.get(`${i}/${file}`);
          if (v === undefined) continue;
          try {
            fs.writeFileSync(path.join(set.dirs[i]!, file), v);
            set.values.set(`${i}/${file}`, v);
          } catch {
            // left at the kernel's default: the start writes it
          }
        }
      }
      resolve(set);
    }),
  );
}

/** Closes a set's fds and removes its directories (empty: no process ever joined). */
export function discardSync(set: WarmSet): void {
  for (const fd of set.fds.splice(0)) fs.closeSync(fd);
  for (const d of set.dirs.splice(0).reverse()) {
    try {
      fs.rmdirSync(d);
    } catch {
      // gone already
    }
  }
  letGo(set);
}

function letGo(set: WarmSet): void {
  for (const token of set.undo?.splice(0) ?? []) native().keepAfterTeardown(token);
}

/**
 * Renames a taken set's directories to `name` (the container's id), in place. On failure
 * (a directory removed from outside) the set is discarded and the error thrown.
 */
export function renameSet(set: WarmSet, name: string): void {
  try {
    for (let i = 0; i < set.dirs.length; i++) {
      const to = path.join(path.dirname(set.dirs[i]!), name);
      fs.renameSync(set.dirs[i]!, to);
      set.dirs[i] = to;
    }
    letGo(set); // the container's now: its Process's teardown removes them
  } catch (e) {
    discardSync(set);
    throw e;
  }
}

/** Removes every idle set now; sets still being made are removed when they land. */
function dropWarmSync(): void {
  for (const pool of pools.values()) for (const s of pool.idle.splice(0)) discardSync(s);
  pools.clear();
  uses.clear();
}

/**
 * Empties the pool: every warm set of this process is removed, including those being made.
 * The next limited start begins again (it makes its own set, then a pool).
 */
export async function drainWarmCgroups(): Promise<void> {
  dropWarmSync();
  while (inFlight.size) await Promise.all([...inFlight]);
}

/** The directories of this process's idle warm sets (for tests and inspection). */
export function warmCgroupDirs(): string[] {
  return [...pools.values()].flatMap((p) => p.idle.flatMap((s) => s.dirs));
}
