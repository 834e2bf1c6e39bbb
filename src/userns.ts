/**
 * `userns: 'auto'` for root's containers: each gets a user namespace of its own mapping a
 * range of 65536 host ids (`0 BASE 65536`, uid and gid), so that root inside is an unprivileged
 * id on the host. Ranges come from /etc/subuid and /etc/subgid entries of a user named
 * `nsbox` when there are any, else from a fixed range (host ids 2^30 and up, in slices of
 * 65536). A container's range is claimed host-wide, in one directory every nsbox on the host
 * shares whatever its state directory (claimsDir(): `<uid base>`, a symlink to
 * `<gid base>:<id>:<state dir>`, made and removed under a flock there), and kept in its
 * record; it is free again once the container is removed (a claim whose container directory
 * is gone, and in whose ids no process runs, is taken back by the next allocation, so a crash
 * leaks nothing for long).
 *
 * The maps are written by the spawner thread from outside the namespace (core/spawn.cc), and
 * the image layer is seen through an idmapped mount: see docs/DESIGN.md, "userns: 'auto'".
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError, errnoCode, fromNative, fromSystemError, invalid } from './errors';
import { Layout } from './layout';
import { parseSubid } from './subid-file';
import { HOSTFD_IDMAP, HOSTFD_NO_LINKS, native, type NativeHostFd, type NativeUserNs } from './native';
import { readRecord } from './record';
import type { BindMount, RootSource } from './plan';

/** Also read here for root's ranges; re-exported for the callers and tests that import it from this module. */
export { parseSubid };

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

export function checkUsernsMode(v: unknown, what = 'userns'): UsernsMode | undefined {
  if (v === undefined) return undefined;
  if (v !== 'auto' && v !== 'host') throw invalid(`${what}: ${JSON.stringify(v)}: 'auto' (a range of host ids of its own) or 'host' (none)`);
  return v;
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

/** Where the host-wide claims are kept when NSBOX_IDRANGES_DIR does not say. */
export const DEFAULT_CLAIMS_DIR = '/var/lib/nsbox-idranges';
/** The file in the claims directory whose flock guards every claim's creation and removal. */
export const CLAIMS_LOCK = 'lock';

/**
 * The host-wide claims directory: one for every state directory on the host, so that two
 * (`--root A`, `--root B`, two library users) never hand out the same ids. Persistent, as the
 * write layer of a stopped container stays owned by its range across reboots.
 */
export function claimsDir(env: NodeJS.ProcessEnv = process.env): string {
  const d = env.NSBOX_IDRANGES_DIR;
  return d ? path.resolve(d) : DEFAULT_CLAIMS_DIR;
}

/**
 * A claim: `<claims dir>/<uid base>`, a symlink to `<gid base>:<container id>:<state dir>`
 * (made whole in one step, EEXIST when taken; the state directory's real path).
 */
export interface Claim {
  uidBase: number;
  gidBase: number;
  id: string;
  stateDir: string;
}

export function claimTarget(c: Claim): string {
  return `${c.gidBase}:${c.id}:${c.stateDir}`;
}

/** A claim read back from its name and target; undefined for anything else in the directory. */
export function parseClaim(name: string, target: string): Claim | undefined {
  if (!/^\d{1,10}$/.test(name)) return undefined;
  const m = /^(\d{1,10}):([0-9a-f]{12}):(\/[^\0]*)$/.exec(target);
  if (!m) return undefined;
  const stateDir = m[3]!;
  if (path.normalize(stateDir) !== stateDir || (stateDir.length > 1 && stateDir.endsWith('/'))) return undefined;
  return { uidBase: Number(name), gidBase: Number(m[1]), id: m[2]!, stateDir };
}

/**
 * What is known of a claim's container: its directory is gone (with its state directory,
 * maybe), its record names the range it holds (`range`, absent while its first start has not
 * written it yet), or nothing sure (unreadable, a bad record, an unsafe state directory).
 */
export type Holder = { kind: 'gone' } | { kind: 'record'; range?: { uidBase: number; gidBase: number } } | { kind: 'unknown' };

/**
 * Whether a claim may be taken back. Only on evidence that its container no longer holds the
 * range; when in doubt it is kept (a leaked range costs a slice, a shared one an escape).
 */
export function claimIsStale(c: Claim, h: Holder): boolean {
  if (h.kind === 'gone') return true;
  if (h.kind === 'record' && h.range) return h.range.uidBase !== c.uidBase || h.range.gidBase !== c.gidBase;
  return false;
}

/**
 * The holder of a claim, looked up in its state directory. `records`: read the container's
 * record too (prune, a restart's check); without, the directory's existence only, as an
 * allocation does for every claim (a record names another range only after a lost release
 * and a reused id: the claim is then kept until a prune, which is safe).
 */
function holderOf(c: Claim, records: boolean, layouts: Map<string, Layout | null>): Holder {
  let layout = layouts.get(c.stateDir);
  if (layout === undefined) {
    layout = new Layout(c.stateDir);
    try {
      // A state directory nsbox would refuse is no evidence: its claims are kept.
      layout.verify();
    } catch {
      layout = null;
    }
    layouts.set(c.stateDir, layout);
  }
  if (layout === null) return { kind: 'unknown' };
  try {
    if (!fs.lstatSync(layout.containerDir(c.id)).isDirectory()) return { kind: 'unknown' };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? { kind: 'gone' } : { kind: 'unknown' };
  }
  if (!records) return { kind: 'record' };
  try {
    const rec = readRecord(layout, c.id);
    return rec?.userns ? { kind: 'record', range: rec.userns } : { kind: 'record' };
  } catch {
    return { kind: 'unknown' };
  }
}

/** The state directory as claims name it: its real path (a symlinked --root is one directory). */
function stateDirOf(layout: Layout): string {
  try {
    return fs.realpathSync(layout.root);
  } catch (e) {
    throw fromSystemError(`state directory ${layout.root}`, e);
  }
}

function claimsDirError(dir: string, why: string, cause?: unknown): NsboxError {
  return new NsboxError(
    cause ? errnoCode((cause as NodeJS.ErrnoException).code) : 'UNSAFE_PATH',
    `userns auto: host id range claims directory ${dir}: ${why}`,
    {
      path: dir,
      hint: 'it must be a directory of root, mode 0700, on a writable persistent file system (NSBOX_IDRANGES_DIR names another)',
      ...(cause === undefined ? {} : { cause }),
    },
  );
}

/**
 * Checks the claims directory (made 0700 when `create` and missing): root's, and writable by
 * nobody else, since the claims in it decide which ids a container gets. False when it does
 * not exist and was not to be made.
 */
function readyClaimsDir(dir: string, create: boolean): boolean {
  const uid = process.geteuid?.() ?? 0;
  // Before anything is made there, and again once it exists (its real path known).
  const unsafe = unsafeAncestor(dir, uid);
  if (unsafe) throw claimsDirError(dir, unsafe);
  if (create) {
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw claimsDirError(dir, `cannot make it (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e);
    }
  }
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch (e) {
    if (!create && (e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw claimsDirError(dir, `cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e);
  }
  if (!st.isDirectory()) throw claimsDirError(dir, st.isSymbolicLink() ? 'a symbolic link' : 'not a directory');
  if (st.uid !== uid) throw claimsDirError(dir, `owned by uid ${st.uid}, not ${uid}`);
  if (st.mode & 0o022) throw claimsDirError(dir, `writable by others than its owner (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`);
  const above = unsafeAncestor(dir, uid);
  if (above) throw claimsDirError(dir, above);
  return true;
}

/**
 * Why a directory above `dir` (by its path and by its real path) lets another user change
 * which directory `dir` is, or undefined. Such a user could rename the claims away, and the
 * next allocation would make an empty directory and hand out the ranges of running
 * containers again. Writable by others is fine with the sticky bit (/tmp): there only an
 * entry's owner may rename it.
 */
function unsafeAncestor(dir: string, uid: number): string | undefined {
  const above = new Set<string>();
  // Its real path: that of the nearest directory above it that exists, and the rest.
  let real = dir;
  for (let p = dir, rest = ''; ; rest = path.join(path.basename(p), rest), p = path.dirname(p)) {
    try {
      real = path.join(fs.realpathSync(p), rest);
      break;
    } catch {
      if (p === path.dirname(p)) break;
    }
  }
  for (const start of [dir, real]) {
    for (let p = path.dirname(start); ; p = path.dirname(p)) {
      above.add(p);
      if (p === path.dirname(p)) break;
    }
  }
  for (const p of above) {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch (e) {
      // Not there yet: mkdir makes it, ours and 0700 (a file in the way fails that mkdir).
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') continue;
      return `cannot read ${p} above it (${(e as NodeJS.ErrnoException).code ?? String(e)})`;
    }
    if (st.uid !== 0 && st.uid !== uid) return `${p} above it is owned by uid ${st.uid}`;
    if (st.mode & 0o022 && !(st.mode & 0o1000)) {
      return `${p} above it is writable by others than its owner (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}), who could rename the claims away`;
    }
  }
  return undefined;
}

/**
 * The host-wide lock: a flock on `<claims dir>/lock`, held by the open file (close-on-exec, as
 * every fd libuv opens) and dropped by the kernel when its holder dies, whatever pid namespace
 * it ran in; nothing to find stale. Every claim is made and removed under it.
 */
export class ClaimsLock {
  private constructor(private fd: number | undefined) {}

  /** Takes the lock now, or undefined while another open file of it holds it. */
  static tryTake(dir: string): ClaimsLock | undefined {
    const file = path.join(dir, CLAIMS_LOCK);
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
    } catch (e) {
      throw claimsDirError(dir, `cannot open its lock ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e);
    }
    const r = native().tryLockFd(fd);
    if (r === true) return new ClaimsLock(fd);
    fs.closeSync(fd);
    if (r === false) return undefined;
    throw fromNative(`userns auto: lock ${file}`, r, { path: file });
  }

  /** Takes the lock, waiting up to `waitMs` (off the event loop) for its holder. */
  static async take(dir: string, waitMs: number): Promise<ClaimsLock> {
    const deadline = Date.now() + waitMs;
    for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
      const lock = ClaimsLock.tryTake(dir);
      if (lock) return lock;
      if (Date.now() >= deadline) {
        throw new NsboxError('IN_USE', `userns auto: the host id range claims (${dir}) are locked by another process, still after ${waitMs} ms`, {
          hint: 'try again',
        });
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  release(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    fs.closeSync(fd);
  }
}

/**
 * The claims in `dir`: uid base -> claim (and its file). `opaque`: the uid bases of entries
 * named like a claim that cannot be read as one (another version's, a damaged one): taken, as
 * nothing says their ids are free, and never removed.
 */
function readClaims(dir: string, opaque = new Set<number>()): Map<number, Claim & { file: string }> {
  const out = new Map<number, Claim & { file: string }>();
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw claimsDirError(dir, `cannot list it (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e);
  }
  for (const n of names) {
    if (!/^\d{1,10}$/.test(n)) continue;
    const file = path.join(dir, n);
    let target: string;
    try {
      target = fs.readlinkSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') opaque.add(Number(n));
      continue;
    }
    const c = parseClaim(n, target);
    if (c) out.set(c.uidBase, { ...c, file });
    else opaque.add(Number(n));
  }
  return out;
}

/**
 * Claims of an nsbox before host-wide claims (`idranges/<uid base>` -> `<id>:<gid base>` in the
 * state directory): moved into the host-wide directory, so an upgrade never hands a range a
 * stopped container of it holds to another container. One whose container is gone is dropped;
 * one whose base another live container claims already (two state directories that shared
 * ids before the upgrade) stays where it is, and its container is refused at its next start
 * (holdRange). Under the host-wide lock.
 */
function importLegacyClaims(layout: Layout, me: string, dir: string, claims: Map<number, Claim & { file: string }>): void {
  const legacy = layout.idranges;
  let st: fs.Stats;
  try {
    st = fs.lstatSync(legacy);
  } catch {
    return;
  }
  // As Layout.verify() would have refused it: claims from a directory others could write are not taken.
  if (!st.isDirectory() || st.uid !== (process.geteuid?.() ?? 0) || st.mode & 0o022) return;
  for (const n of fs.readdirSync(legacy)) {
    const file = path.join(legacy, n);
    let target: string;
    try {
      target = fs.readlinkSync(file);
    } catch {
      continue;
    }
    const m = /^([0-9a-f]{12}):(\d{1,10})$/.exec(target);
    if (!/^\d{1,10}$/.test(n) || !m) continue;
    const c: Claim = { uidBase: Number(n), gidBase: Number(m[2]), id: m[1]!, stateDir: me };
    if (!fs.existsSync(layout.containerDir(c.id))) {
      fs.rmSync(file, { force: true });
      continue;
    }
    const held = claims.get(c.uidBase);
    if (!held) {
      const hostFile = path.join(dir, String(c.uidBase));
      // An entry there that is no claim (readClaims' opaque): the old claim stays where it is.
      if (entryExists(hostFile)) continue;
      makeClaim(dir, c);
      claims.set(c.uidBase, { ...c, file: hostFile });
    } else if (held.id !== c.id || held.stateDir !== me || held.gidBase !== c.gidBase) {
      continue;
    }
    fs.rmSync(file, { force: true });
  }
  try {
    fs.rmdirSync(legacy);
  } catch {
    // claims left in it (above), or made meanwhile by an older nsbox
  }
}

/** Whether anything is at `file`, a dangling symlink included. */
function entryExists(file: string): boolean {
  try {
    fs.lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

function makeClaim(dir: string, c: Claim): void {
  try {
    fs.symlinkSync(claimTarget(c), path.join(dir, String(c.uidBase)));
  } catch (e) {
    throw claimsDirError(dir, `cannot claim ${c.uidBase} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e);
  }
}

/**
 * The claims of `dir` that stand, stale ones removed (under the lock). `records`: decide on
 * the containers' records too (see holderOf).
 */
function liveClaims(dir: string, records: boolean, opaque?: Set<number>): Map<number, Claim & { file: string }> {
  const claims = readClaims(dir, opaque);
  const layouts = new Map<string, Layout | null>();
  let running: { uids: number[]; gids: number[] } | undefined;
  for (const [uidBase, c] of claims) {
    if (!claimIsStale(c, holderOf(c, records, layouts))) continue;
    // Its container's directory gone is no proof that nothing runs in the range (deleted by
    // hand while it ran: its overlay is mounted in its own mount namespace, nothing on the
    // host holds the directory): a process with one of its ids keeps it. Looked at only
    // when a claim is stale.
    running ??= hostIdsInUse();
    if (running.uids.some((u) => u >= c.uidBase && u < c.uidBase + RANGE_SIZE) || running.gids.some((g) => g >= c.gidBase && g < c.gidBase + RANGE_SIZE)) {
      continue;
    }
    fs.rmSync(c.file, { force: true });
    claims.delete(uidBase);
  }
  return claims;
}

/**
 * The uids and gids (real, effective, saved, file system) of every process in /proc: in this
 * pid namespace, the host's when nsbox runs there. Processes gone meanwhile are skipped.
 */
export function hostIdsInUse(proc = '/proc'): { uids: number[]; gids: number[] } {
  const uids = new Set<number>();
  const gids = new Set<number>();
  for (const e of fs.readdirSync(proc)) {
    if (!/^\d+$/.test(e)) continue;
    let text: string;
    try {
      text = fs.readFileSync(path.join(proc, e, 'status'), 'utf8');
    } catch {
      continue;
    }
    for (const [re, into] of [
      [/^Uid:\s+(.*)$/m, uids],
      [/^Gid:\s+(.*)$/m, gids],
    ] as const) {
      const m = re.exec(text);
      if (m) for (const v of m[1]!.trim().split(/\s+/)) into.add(Number(v));
    }
  }
  return { uids: [...uids], gids: [...gids] };
}

/**
 * Claims a free range for container `id` (whose directory exists) in the host-wide claims
 * directory, under its lock, so that no two starts on the host, of any state directory, pick
 * the same one. A claim whose container directory is gone (a removal that did not get the
 * lock, a crash, a deleted state directory) is taken back here.
 */
export async function allocateRange(layout: Layout, id: string): Promise<IdRange> {
  return withClaims(layout, false, ({ dir, me, claims, opaque }) => {
    const usedUids = new Set<number>(opaque);
    const usedGids = new Set<number>();
    for (const c of claims.values()) {
      usedUids.add(c.uidBase);
      usedGids.add(c.gidBase);
    }
    const { subuid, subgid } = subidFiles();
    const range = pickRange(candidateRanges(subuid, subgid), usedUids, usedGids);
    if (!range) {
      throw new NsboxError('ENOSPC', `userns auto: every host id range is in use (${usedUids.size} containers on this host hold one)`, {
        hint: `remove containers, or give the user ${SUBID_USER} more ranges in /etc/subuid and /etc/subgid`,
      });
    }
    makeClaim(dir, { ...range, id, stateDir: me });
    return range;
  });
}

/**
 * Before a stopped container runs again in the range its record names: its claim must stand.
 * Made again when missing (its state directory moved, or it was taken back while that
 * directory was out of sight: unmounted, another mount namespace), unless another live
 * container holds the uid or gid base meanwhile: then it is refused, never run sharing ids.
 */
export async function holdRange(layout: Layout, id: string, range: IdRange): Promise<void> {
  await withClaims(layout, true, ({ dir, me, claims, opaque }) => {
    if (opaque.has(range.uidBase)) {
      throw new NsboxError('IN_USE', `container ${id}: its host uid ${range.uidBase} is named in ${dir} by an entry that is not a claim this nsbox reads`, {
        path: path.join(dir, String(range.uidBase)),
        hint: 'a newer nsbox may have claimed it: remove that entry only if no container of any nsbox holds those ids',
      });
    }
    const mine = (c: Claim) => c.id === id && c.stateDir === me && c.uidBase === range.uidBase && c.gidBase === range.gidBase;
    const other = [...claims.values()].find((c) => !mine(c) && (c.uidBase === range.uidBase || c.gidBase === range.gidBase));
    if (other) {
      throw new NsboxError(
        'IN_USE',
        `container ${id}: its host ids (uid ${range.uidBase}, gid ${range.gidBase}) are claimed by container ${other.id} of ${other.stateDir}`,
        {
          hint: 'two containers must not share host ids: remove one of them (its files belong to those ids)',
        },
      );
    }
    if (!claims.has(range.uidBase)) makeClaim(dir, { ...range, id, stateDir: me });
  });
}

interface ClaimsView {
  dir: string;
  /** This runtime's state directory, as claims name it. */
  me: string;
  claims: Map<number, Claim & { file: string }>;
  /** uid bases named by entries that are not claims this nsbox reads: never handed out. */
  opaque: Set<number>;
}

/**
 * Runs `work` on the live claims under the host-wide lock (waited for up to 10 s), the
 * directory made ready and the state directory's legacy claims imported first. `records`: decide
 * on the containers' records too (see holderOf).
 */
async function withClaims<T>(layout: Layout, records: boolean, work: (view: ClaimsView) => T): Promise<T> {
  const dir = claimsDir();
  const me = stateDirOf(layout);
  readyClaimsDir(dir, true);
  const lock = await ClaimsLock.take(dir, 10_000);
  try {
    const opaque = new Set<number>();
    const claims = liveClaims(dir, records, opaque);
    importLegacyClaims(layout, me, dir, claims);
    return work({ dir, me, claims, opaque });
  } finally {
    lock.release();
  }
}

/**
 * Runs `work` under the host-wide lock, waited for synchronously (an allocation holds it for
 * a few file steps). A claim is removed only after reading it says what the remover expects; an
 * allocation between the read and the removal (it takes back a claim whose container directory
 * is gone, and may give that base to a new container at once) would have the removal delete the
 * new container's live claim, and the next allocation hand the same range out twice. Not got in
 * time, nothing is removed: the next allocation takes the stale claim back itself.
 */
function underClaimsLock(dir: string, work: () => void, waitMs = 500): void {
  const deadline = Date.now() + waitMs;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    const lock = ClaimsLock.tryTake(dir);
    if (lock) {
      try {
        work();
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
  const dir = claimsDir();
  const file = path.join(dir, String(range.uidBase));
  try {
    if (!readyClaimsDir(dir, false)) return;
    const mine = claimTarget({ ...range, id, stateDir: stateDirOf(layout) });
    underClaimsLock(
      dir,
      () => {
        try {
          if (fs.readlinkSync(file) === mine) fs.rmSync(file, { force: true });
        } catch {
          // already gone
        }
      },
      waitMs,
    );
  } catch {
    // A claims directory gone bad does not fail the removal that is done already: the claim
    // stays, and the next allocation (which does fail on it, naming why) takes it back.
  }
}

/**
 * prune: the host's stale claims (containers gone, or whose record names another range), and
 * this state directory's claims of an older nsbox moved into the host-wide directory.
 */
export function pruneStaleRanges(layout: Layout, waitMs?: number): void {
  // Only root's containers claim ranges: a rootless prune has none to look at (nor may it).
  if ((process.geteuid?.() ?? 0) !== 0) return;
  const dir = claimsDir();
  let legacy = false;
  try {
    legacy = fs.lstatSync(layout.idranges).isDirectory();
  } catch {
    // none
  }
  if (!readyClaimsDir(dir, legacy)) return;
  const me = stateDirOf(layout);
  underClaimsLock(dir, () => importLegacyClaims(layout, me, dir, liveClaims(dir, true)), waitMs);
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
