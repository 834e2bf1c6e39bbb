/**
 * `userns: 'auto'` for root's containers: each gets a user namespace of its own mapping a
 * range of 65536 host ids (`0 BASE 65536`, uid and gid), so that root inside is an unprivileged
 * id on the host. Ranges come from /etc/subuid and /etc/subgid entries of a user named
 * `nsbox` when there are any, else from a fixed range (host ids 2^30 and up, in slices of
 * 65536). A container's range is claimed in the state directory (`idranges/<uid base>`, a
 * symlink to `<id>:<gid base>`, made and removed under the `idranges` lock) and kept in its record; it is
 * free again once the container is removed (a claim whose container directory is gone is
 * taken back by the next allocation, so a crash leaks nothing for long).
 *
 * The maps are written by the spawner thread from outside the namespace (core/spawn.cc), and
 * the image layer is seen through an idmapped mount: see docs/DESIGN.md, "userns: 'auto'".
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError, invalid } from './errors';
import { ContainerLock } from './lock';
import type { Layout } from './layout';
import { HOSTFD_IDMAP, HOSTFD_NO_LINKS, type NativeHostFd, type NativeUserNs } from './native';
import type { BindMount, RootSource } from './plan';

export type UsernsMode = 'auto' | 'host';

/** The ids one container maps: 0..size-1 inside are uidBase.. and gidBase.. on the host. */
export interface IdRange {
  uidBase: number;
  gidBase: number;
  size: number;
}

export const RANGE_SIZE = 65536;
/** Without /etc/subuid entries for `nsbox`: host ids from 2^30, 16384 slices (up to 2^31). */
export const DEFAULT_BASE = 2 ** 30;
export const DEFAULT_SLICES = 16384;
/** The user whose /etc/subuid and /etc/subgid entries give the ranges, when it has any. */
export const SUBID_USER = 'nsbox';
/** The highest id a map may name is 2^32 - 2 (-1 is "no id"). */
const ID_LIMIT = 2 ** 32 - 1;

export function checkUsernsMode(v: unknown, what = 'userns'): UsernsMode | undefined {
  if (v === undefined) return undefined;
  if (v !== 'auto' && v !== 'host') throw invalid(`${what}: ${JSON.stringify(v)}: 'auto' (a range of host ids of its own) or 'host' (none)`);
  return v;
}

/**
 * The ranges /etc/subuid (or subgid) gives `user` ("name:start:count" lines; `uid` also
 * matches a numeric first field, as shadow-utils reads them). Malformed lines are skipped, as
 * shadow-utils skips them.
 */
export function parseSubid(text: string, user: string, uid?: number): Array<{ start: number; count: number }> {
  const out: Array<{ start: number; count: number }> = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const parts = line.split(':');
    if (parts.length !== 3) continue;
    const [who, s, c] = parts as [string, string, string];
    if (who !== user && (uid === undefined || who !== String(uid))) continue;
    if (!/^\d{1,10}$/.test(s) || !/^\d{1,10}$/.test(c)) continue;
    const start = Number(s);
    const count = Number(c);
    if (count === 0 || start + count > ID_LIMIT) continue;
    out.push({ start, count });
  }
  return out;
}

/**
 * The bases of whole slices of `size` ids in `ranges`, in file order, without overlaps. Never
 * the slice holding id 0: its container's root would be the host's root (a line like
 * `nsbox:0:131072` gives the slices after it only).
 */
export function slicesOf(ranges: Array<{ start: number; count: number }>, size = RANGE_SIZE): number[] {
  const out: number[] = [];
  const taken: Array<[number, number]> = [];
  for (const r of ranges) {
    for (let b = r.start; b + size <= r.start + r.count; b += size) {
      if (b === 0) continue;
      if (taken.some(([s, e]) => b < e && b + size > s)) continue;
      taken.push([b, b + size]);
      out.push(b);
    }
  }
  return out;
}

let defaults: Array<{ uidBase: number; gidBase: number }> | undefined;
/** The default ranges: DEFAULT_SLICES of RANGE_SIZE from DEFAULT_BASE, uid and gid alike (made once). */
function defaultRanges(): Array<{ uidBase: number; gidBase: number }> {
  defaults ??= Array.from({ length: DEFAULT_SLICES }, (_, i) => ({ uidBase: DEFAULT_BASE + i * RANGE_SIZE, gidBase: DEFAULT_BASE + i * RANGE_SIZE }));
  return defaults;
}

/**
 * The (uid base, gid base) pairs containers may get: the k-th subuid slice with the k-th
 * subgid slice of `nsbox` when both files give it some, else the default range for both.
 */
export function candidateRanges(subuid: string | null, subgid: string | null): Array<{ uidBase: number; gidBase: number }> {
  const uids = subuid === null ? [] : slicesOf(parseSubid(subuid, SUBID_USER));
  const gids = subgid === null ? [] : slicesOf(parseSubid(subgid, SUBID_USER));
  if (uids.length > 0 && gids.length > 0) {
    return uids.slice(0, gids.length).map((u, i) => ({ uidBase: u, gidBase: gids[i]! }));
  }
  return defaultRanges();
}

/** The first candidate whose uid base and gid base no claim holds. */
export function pickRange(candidates: Array<{ uidBase: number; gidBase: number }>, usedUids: Set<number>, usedGids: Set<number>): IdRange | undefined {
  for (const c of candidates) {
    if (!usedUids.has(c.uidBase) && !usedGids.has(c.gidBase)) return { ...c, size: RANGE_SIZE };
  }
  return undefined;
}

function readOrNull(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** /etc/subuid and /etc/subgid, or the files NSBOX_SUBUID / NSBOX_SUBGID name (tests). */
function subidFiles(): { subuid: string | null; subgid: string | null } {
  return {
    subuid: readOrNull(process.env.NSBOX_SUBUID ?? '/etc/subuid'),
    subgid: readOrNull(process.env.NSBOX_SUBGID ?? '/etc/subgid'),
  };
}

/** The claims in idranges/: uid base -> [container id, gid base]. */
function readClaims(layout: Layout): Map<number, { id: string; gidBase: number; file: string }> {
  const out = new Map<number, { id: string; gidBase: number; file: string }>();
  let names: string[];
  try {
    names = fs.readdirSync(layout.idranges);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw e;
  }
  for (const n of names) {
    if (!/^\d{1,10}$/.test(n)) continue;
    const file = path.join(layout.idranges, n);
    let target: string;
    try {
      target = fs.readlinkSync(file);
    } catch {
      continue;
    }
    const m = /^([0-9a-f]{12}):(\d{1,10})$/.exec(target);
    if (!m) continue;
    out.set(Number(n), { id: m[1]!, gidBase: Number(m[2]), file });
  }
  return out;
}

/**
 * Claims a free range for container `id` (whose directory exists). Under the `idranges` lock,
 * so that two starts never pick the same one; a claim whose container directory is gone (a
 * removal or a crash that did not get to free it) is taken back here.
 */
export async function allocateRange(layout: Layout, id: string): Promise<IdRange> {
  const lock = await ContainerLock.acquire(layout, 'idranges', 'idrange', 10_000);
  try {
    const claims = readClaims(layout);
    const usedUids = new Set<number>();
    const usedGids = new Set<number>();
    for (const [uidBase, c] of claims) {
      if (!fs.existsSync(layout.containerDir(c.id))) {
        fs.rmSync(c.file, { force: true });
        continue;
      }
      usedUids.add(uidBase);
      usedGids.add(c.gidBase);
    }
    const { subuid, subgid } = subidFiles();
    const range = pickRange(candidateRanges(subuid, subgid), usedUids, usedGids);
    if (!range) {
      throw new NsboxError('ENOSPC', `userns auto: every host id range is in use (${usedUids.size} containers hold one)`, {
        hint: `remove containers, or give the user ${SUBID_USER} more ranges in /etc/subuid and /etc/subgid`,
      });
    }
    fs.symlinkSync(`${id}:${range.gidBase}`, path.join(layout.idranges, String(range.uidBase)));
    return range;
  } finally {
    lock.release();
  }
}

/**
 * Runs `remove` under the `idranges` lock, waited for synchronously (an allocation holds it for
 * a few file steps). A claim is removed only after reading it says what the remover expects; an
 * allocation between the read and the removal (it takes back a claim whose container directory
 * is gone, and may give that base to a new container at once) would have the removal delete the
 * new container's live claim, and the next allocation hand the same range out twice. Not got in
 * time, nothing is removed: the next allocation takes the stale claim back itself.
 */
function underRangeLock(layout: Layout, remove: () => void, waitMs = 500): void {
  const deadline = Date.now() + waitMs;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    const lock = ContainerLock.tryAcquire(layout, 'idranges', 'idrange');
    if (lock) {
      try {
        remove();
      } finally {
        lock.release();
      }
      return;
    }
    if (Date.now() >= deadline) return;
    Atomics.wait(nap, 0, 0, 5);
  }
}

/** Frees `id`'s claim on `range` (nothing if another container holds it now). */
export function releaseRange(layout: Layout, id: string, range: IdRange, waitMs?: number): void {
  const file = path.join(layout.idranges, String(range.uidBase));
  underRangeLock(
    layout,
    () => {
      try {
        if (fs.readlinkSync(file) === `${id}:${range.gidBase}`) fs.rmSync(file, { force: true });
      } catch {
        // already gone
      }
    },
    waitMs,
  );
}

/** The claims of containers whose directory is gone (prune). */
export function pruneStaleRanges(layout: Layout, waitMs?: number): void {
  underRangeLock(
    layout,
    () => {
      for (const c of readClaims(layout).values()) {
        if (!fs.existsSync(layout.containerDir(c.id))) fs.rmSync(c.file, { force: true });
      }
    },
    waitMs,
  );
}

export function idMapText(base: number, size: number): string {
  return `0 ${base} ${size}\n`;
}

/**
 * Rewrites a start's host paths for a container with its own id range: the child, root of its
 * namespace only, cannot walk root's 0700 state directory, so the parent opens each path for it
 * (core/spawn.cc give_userns) and it uses /proc/self/fd/N. Each N is reserved here (an fd on
 * /dev/null that the child replaces in its own fd table); the caller closes `reserved` after
 * the start. The image layer is idmapped to the container's namespace, so that its files, owned
 * by host root, are root's inside.
 */
export function externalUserNs(
  range: IdRange,
  root: RootSource,
  mounts: BindMount[],
  etcFiles: Array<{ source: string; target: string }>,
): { userns: NativeUserNs; root: RootSource; mounts: BindMount[]; etcFiles: Array<{ source: string; target: string }>; reserved: number[] } {
  const reserved: number[] = [];
  const hostFds: NativeHostFd[] = [];
  try {
    const ref = (p: string, flags = 0): { fd: number; path: string } => {
      const fd = fs.openSync('/dev/null', fs.constants.O_RDONLY);
      reserved.push(fd);
      hostFds.push({ path: p, fd, flags });
      return { fd, path: `/proc/self/fd/${fd}` };
    };
    let newRoot: RootSource;
    if (root.type === 'overlay') {
      if (root.writeLayer) throw new NsboxError('UNSUPPORTED', 'userns auto: not with limits.disk yet (its write layer is mounted by the container itself)');
      newRoot = {
        ...root,
        lower: root.lower.map((l) => ref(l, HOSTFD_IDMAP).path),
        upper: ref(root.upper).path,
        work: ref(root.work).path,
        target: ref(root.target).path,
      };
    } else if (root.type === 'bind' && root.readonly) {
      newRoot = { ...root, path: ref(root.path, HOSTFD_IDMAP).path };
    } else {
      throw new NsboxError('UNSUPPORTED', `userns auto: needs the overlay storage driver (or --read-only), not ${root.type === 'bind' ? 'vfs' : root.type}`);
    }
    const newEtc = etcFiles.map((e) => ({ ...e, source: ref(e.source).path }));
    const newMounts = mounts.map((m) => ({ ...m, fd: ref(m.source, HOSTFD_NO_LINKS).fd }));
    const userns: NativeUserNs = {
      uidMap: idMapText(range.uidBase, range.size),
      gidMap: idMapText(range.gidBase, range.size),
      setgroupsDeny: false,
      external: true,
      hostFds,
    };
    return { userns, root: newRoot, mounts: newMounts, etcFiles: newEtc, reserved };
  } catch (e) {
    for (const fd of reserved) fs.closeSync(fd);
    throw e;
  }
}

/** An id as the host sees it: inside ids within the range are shifted, others are unmapped (-1). */
export function hostId(range: IdRange, inside: number, gid = false): number {
  return inside >= 0 && inside < range.size ? (gid ? range.gidBase : range.uidBase) + inside : -1;
}

/** An id as the container sees it, or `fallback` (the overflow id) for one outside the range. */
export function insideIdOf(range: IdRange, host: number, gid = false, fallback = 65534): number {
  const base = gid ? range.gidBase : range.uidBase;
  return host >= base && host < base + range.size ? host - base : fallback;
}
