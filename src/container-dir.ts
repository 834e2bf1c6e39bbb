/**
 * The directories under containers/: a container's (`<id>`), or the tombstone of one being
 * removed (`<id>.removing-<pid>-<start>`: renamed so by the process removing it, before it
 * deletes anything). Read here; acted on by Runtime.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError, fromSystemError } from './errors';
import { ID_RE, type Layout } from './layout';
import { removeTree as removeDirTree, removeTreeAsync as removeDirTreeAsync } from './fsat';
import { mountsUnder, ownerTag } from './proc';
import { readRecord, type ContainerRecord } from './record';

/**
 * containers/<id>.removing-<pid>-<start>[-<tid>-<start>]: a container that process (that worker
 * thread of it: a terminated worker's process lives on) is removing.
 */
export const TOMBSTONE_RE = /^([0-9a-f]{12})\.removing-(\d{1,7})-(\d{1,20})(?:-(\d{1,10}-\d{1,20}))?$/;

/**
 * A directory under containers/, as found: a container (`live`, with its record, or why the
 * record cannot be trusted, or neither: no record at all), or a tombstone (`tomb`) of one
 * being removed by `remover`.
 */
export interface Entry {
  kind: 'live' | 'tomb';
  id: string;
  dir: string;
  rec?: ContainerRecord | undefined;
  bad?: NsboxError;
  remover?: { pid: number; start: string; thread?: string };
}

/** A name whose link points to a container that no longer exists. */
export interface Dangling {
  kind: 'dangling';
  id: string;
  name: string;
}

/** Where this process renames container `id` before deleting it. */
export function tombstonePath(layout: Layout, id: string): string {
  return path.join(layout.containers, `${id}.removing-${ownerTag()}`);
}

/** Entries of containers/: ids, tombstones, unless someone else put something there. */
export function containerEntries(layout: Layout): string[] {
  try {
    return fs.readdirSync(layout.containers);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []; // none made yet
    throw fromSystemError('list containers', e);
  }
}

/**
 * Reads one entry of containers/: undefined when it is gone (removed meanwhile); throws
 * BAD_STATE for a name that is neither an id nor a tombstone. `unsaved`: records known in
 * memory that could not be written (a full disk), used instead of what is on disk.
 */
export function readEntry(layout: Layout, unsaved: ReadonlyMap<string, ContainerRecord>, entry: string): Entry | undefined {
  const tomb = TOMBSTONE_RE.exec(entry);
  const id = tomb ? tomb[1]! : entry;
  const dir = path.join(layout.containers, entry);
  const e: Entry = {
    kind: tomb ? 'tomb' : 'live',
    id,
    dir,
    ...(tomb ? { remover: { pid: Number(tomb[2]), start: tomb[3]!, ...(tomb[4] ? { thread: tomb[4] } : {}) } } : {}),
  };
  try {
    e.rec = unsaved.get(id) ?? readRecord(layout, id, dir);
  } catch (err) {
    if (!(err instanceof NsboxError) || err.code !== 'BAD_STATE') throw err;
    if (!ID_RE.test(id)) throw err;
    e.bad = err;
  }
  if (!e.rec && !e.bad) {
    // No record: gone meanwhile (renamed to a tombstone, or removed), or left without one.
    try {
      if (!fs.lstatSync(dir).isDirectory()) return undefined;
    } catch {
      return undefined;
    }
  }
  return e;
}

/**
 * Deletes a container's directory (or tombstone) without using anything in it. A recursive
 * delete would walk into anything mounted below: refused instead.
 */
export function removeTree(id: string, dir: string): void {
  refuseMountsUnder(id, dir);
  try {
    // The addon's walk, not fs.rmSync: a container can make a tree deep enough (a few thousand
    // levels) to overflow the stack of Node's recursive removal, and stay for ever.
    removeDirTree(dir, { force: true });
  } catch (e) {
    throw e instanceof NsboxError ? e : fromSystemError(`remove container ${id}`, e);
  }
}

function refuseMountsUnder(id: string, dir: string): void {
  const mounted = mountsUnder(dir);
  if (mounted.length) {
    throw new NsboxError('EBUSY', `remove container ${id}: ${mounted[0]} is a mount point on the host`, { path: mounted[0]!, hint: `umount ${mounted[0]}` });
  }
}

/** removeTree with the walk on libuv's thread pool (prune, a tombstone's removal). */
export async function removeTreeOffLoop(id: string, dir: string): Promise<void> {
  refuseMountsUnder(id, dir);
  try {
    await removeDirTreeAsync(dir, { force: true });
  } catch (e) {
    throw e instanceof NsboxError ? e : fromSystemError(`remove container ${id}`, e);
  }
}

/**
 * What identifies the layers a commit walks: the container's directory, its write layer and
 * the image layer, by inode. A layer removed and made again differs; one gone has none.
 */
export function layerIdentity(rec: ContainerRecord, layout: Layout): string {
  const dir = layout.containerDir(rec.id);
  const ino = (p: string) => {
    try {
      const st = fs.lstatSync(p);
      return `${st.dev}:${st.ino}`;
    } catch {
      return 'gone';
    }
  };
  const upper = rec.readOnly ? '' : ino(path.join(dir, rec.driver === 'vfs' ? 'rootfs' : 'upper'));
  return [ino(dir), upper, ino(rec.imageLayer)].join(' ');
}
