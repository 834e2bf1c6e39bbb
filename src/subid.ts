/**
 * Rootless with a subordinate id range: when the user has entries in /etc/subuid and
 * /etc/subgid and shadow-utils' setuid `newuidmap`/`newgidmap` are installed, a rootless
 * container maps the user as 0 and the first subordinate range after it (podman's layout:
 * `0 UID 1` and `1 SUBUID COUNT`, the same for gids, setgroups allowed), so that chown, `--user
 * 1000` and images with several owners work. Else the one-id map (src/plan.ts rootlessUserNs).
 *
 * The maps are written by the helpers from outside the container's namespace (core/subid.h,
 * core/spawn.cc give_userns). Files the container gives to other ids inside are owned by
 * subordinate ids on the host, which the user cannot read or delete directly: removal falls
 * back to a helper process in a user namespace with the same map (runAsMappedRoot).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { NsboxError, errnoCode, invalid } from './errors';
import { native, type NativeUserNs } from './native';
import { parseSubid } from './subid-file';

/** A rootless container's range: inside 1..count are host start..start+count-1 (uid and gid). */
export interface SubidMap {
  uid: number;
  gid: number;
  subuid: number;
  subgid: number;
  count: number;
}

export type IdMapMode = 'single' | 'subuid';

/** Where shadow-utils installs them; never looked up on $PATH (a setuid helper's path is ours to choose). */
const HELPER_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'];

/**
 * The absolute path of `name` in the system's directories: a regular file owned by root that
 * nobody else may write, else undefined.
 */
export function findHelper(name: 'newuidmap' | 'newgidmap', dirs = HELPER_DIRS): string | undefined {
  for (const d of dirs) {
    const p = path.join(d, name);
    try {
      const st = fs.statSync(p);
      if (st.isFile() && st.uid === 0 && (st.mode & 0o022) === 0 && (st.mode & 0o111) !== 0) return p;
    } catch {
      // not there
    }
  }
  return undefined;
}

function readOrNull(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Whether the host ids start..start+count-1 hold `id`. */
function holds(r: { start: number; count: number }, id: number): boolean {
  return id >= r.start && id < r.start + r.count;
}

/**
 * The map of a user from the text of /etc/subuid and /etc/subgid: the first entry of each (by
 * name or by uid, as shadow-utils reads them) that holds neither host id 0 nor the user's own
 * id; both needed, and the shorter count used for both so that uids and gids line up.
 * Undefined when either has none. An entry holding 0 (a mistyped `user:0:65536`, which
 * newuidmap would accept) would make an id inside the container the host's root, as
 * userns.ts never gives root's containers the slice of 0; one holding the user's own id
 * overlaps `0 UID 1`, and the kernel refuses the map.
 */
export function subidMapOf(subuid: string | null, subgid: string | null, user: string, uid: number, gid: number): SubidMap | undefined {
  const us = subuid === null ? [] : parseSubid(subuid, user, uid);
  const gs = subgid === null ? [] : parseSubid(subgid, user, uid);
  const u = us.find((r) => !holds(r, 0) && !holds(r, uid));
  const g = gs.find((r) => !holds(r, 0) && !holds(r, gid));
  if (!u || !g) return undefined;
  // Inside ids 1..count: the highest (count) must stay below 2^32 - 1.
  const count = Math.min(u.count, g.count, 2 ** 32 - 2);
  return { uid, gid, subuid: u.start, subgid: g.start, count };
}

/** The maps as /proc/PID/uid_map and gid_map take them. */
export function mapTexts(m: SubidMap): { uidMap: string; gidMap: string } {
  return { uidMap: `0 ${m.uid} 1\n1 ${m.subuid} ${m.count}\n`, gidMap: `0 ${m.gid} 1\n1 ${m.subgid} ${m.count}\n` };
}

/** newuidmap's and newgidmap's arguments after the PID. */
export function helperArgs(m: SubidMap): { uidArgs: string[]; gidArgs: string[] } {
  return {
    uidArgs: ['0', String(m.uid), '1', '1', String(m.subuid), String(m.count)],
    gidArgs: ['0', String(m.gid), '1', '1', String(m.subgid), String(m.count)],
  };
}

/** The host id an id inside is (its owner on disk), or -1 when unmapped. */
export function hostIdOf(m: SubidMap, inside: number, gid = false): number {
  if (inside === 0) return gid ? m.gid : m.uid;
  if (inside >= 1 && inside <= m.count) return (gid ? m.subgid : m.subuid) + inside - 1;
  return -1;
}

/** NSBOX_ID_MAP: 'single' or 'subuid' forces the choice (tests; a user who wants one id). */
export function idMapFromEnv(): IdMapMode | undefined {
  const v = process.env.NSBOX_ID_MAP;
  if (v === undefined || v === '' || v === 'auto') return undefined;
  if (v !== 'single' && v !== 'subuid') throw invalid(`NSBOX_ID_MAP: ${JSON.stringify(v)}: 'single', 'subuid' or 'auto'`);
  return v;
}

export interface Helpers {
  newuidmap: string;
  newgidmap: string;
}

let cached: { key: string; map: SubidMap | undefined; helpers: Helpers | undefined } | undefined;

/**
 * This user's range and the helpers, when both exist (read once per process and files: a
 * start must not read /etc/subuid each time).
 */
export function available(): { map: SubidMap; helpers: Helpers } | undefined {
  const uidFile = process.env.NSBOX_SUBUID ?? '/etc/subuid';
  const gidFile = process.env.NSBOX_SUBGID ?? '/etc/subgid';
  const key = `${uidFile}\0${gidFile}`;
  if (cached?.key !== key) {
    const uid = process.geteuid!();
    let user = String(uid);
    try {
      user = os.userInfo().username;
    } catch {
      // no passwd entry: the numeric form of /etc/subuid still matches
    }
    const map = subidMapOf(readOrNull(uidFile), readOrNull(gidFile), user, uid, process.getegid!());
    const newuidmap = findHelper('newuidmap');
    const newgidmap = findHelper('newgidmap');
    cached = { key, map, helpers: newuidmap && newgidmap ? { newuidmap, newgidmap } : undefined };
  }
  return cached.map && cached.helpers ? { map: cached.map, helpers: cached.helpers } : undefined;
}

/**
 * The map a new rootless container gets: `wanted` (the run option, else NSBOX_ID_MAP), else the
 * range when there is one. 'subuid' asked for without one is an error naming what is missing.
 */
export function chooseIdMap(wanted?: IdMapMode): SubidMap | undefined {
  const mode = wanted ?? idMapFromEnv();
  if (mode === 'single') return undefined;
  const a = available();
  if (!a && mode === 'subuid') {
    throw new NsboxError(
      'UNSUPPORTED',
      `idMap subuid: uid ${process.geteuid!()} has no range in /etc/subuid and /etc/subgid (one holding host id 0 or the user's own is never used), or newuidmap/newgidmap are not installed`,
      {
        hint: 'install uidmap (newuidmap, newgidmap) and give the user ranges: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER',
      },
    );
  }
  return a?.map;
}

/** What a failed newuidmap or newgidmap becomes; `what`: the step it was for (a start, or a job of the mapped helper). */
export function helperError(helper: string, status: number, m: SubidMap, what = 'start container'): NsboxError {
  const args = helper === 'newuidmap' ? helperArgs(m).uidArgs : helperArgs(m).gidArgs;
  return new NsboxError('EPERM', `${what}: ${helper} PID ${args.join(' ')} failed (exit status ${status}): the range was refused`, {
    syscall: helper,
    step: 'user namespace',
    hint: `the user needs the range ${helper === 'newuidmap' ? m.subuid : m.subgid}:${m.count} in ${helper === 'newuidmap' ? '/etc/subuid' : '/etc/subgid'} (usermod --add-subuids/--add-subgids), and ${helper} must be shadow-utils' setuid helper; NSBOX_ID_MAP=single runs with the one-id map`,
  });
}

/** Whether a host-side failure is one that the mapped root could get past. */
export function isAccessError(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return code === 'EACCES' || code === 'EPERM';
}

/** The helper's entry (dist/ns-helper.js), next to this module. */
const HELPER_ENTRY = path.join(__dirname, 'ns-helper.js');

/** An fd of a new unlinked file in the temp directory (the helper's output; no deadlock on a full pipe). */
function tempFd(): number {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-helper-'));
  try {
    const file = path.join(dir, 'out');
    const fd = fs.openSync(file, 'w+', 0o600);
    fs.unlinkSync(file);
    return fd;
  } finally {
    fs.rmdirSync(dir);
  }
}

export interface HelperReply {
  ok: boolean;
  code?: string;
  message?: string;
  result?: unknown;
}

/**
 * A helper's job that must succeed (commit's walk, import): its result, else its failure as an
 * NsboxError with the helper's code and message.
 */
export async function mappedJob<T>(op: string, args: unknown, what: string, hint?: (code: string, message: string) => string | undefined): Promise<T> {
  const r = await runAsMappedRootAsync([op, JSON.stringify(args)], what);
  if (!r.ok) {
    const h = hint?.(r.code ?? '', r.message ?? '');
    throw new NsboxError(errnoCode(r.code), `${what}: ${r.message ?? 'failed'} (as the mapped root of the subordinate range)`, h ? { hint: h } : {});
  }
  return r.result as T;
}

function spec(a: { map: SubidMap; helpers: Helpers }, op: string[], out: number) {
  return {
    file: process.execPath,
    argv: [process.execPath, HELPER_ENTRY, ...op],
    env: [],
    out,
    newuidmap: a.helpers.newuidmap,
    newgidmap: a.helpers.newgidmap,
    ...helperArgs(a.map),
  };
}

type NativeUsernsResult = { status: number } | { helper: string; helperStatus: number } | { code: string; errno: number; syscall: string };

function reply(a: { map: SubidMap }, r: NativeUsernsResult, out: number, what: string): HelperReply {
  if ('helper' in r) throw helperError(r.helper, r.helperStatus, a.map, `${what} (as the mapped root of the subordinate range)`);
  if ('code' in r) throw new NsboxError(errnoCode(r.code), `${what}: the helper in the user namespace: ${r.syscall}: ${r.code}`, { syscall: r.syscall });
  const size = fs.fstatSync(out).size;
  const buf = Buffer.alloc(Math.min(size, 1 << 20));
  fs.readSync(out, buf, 0, buf.length, 0);
  const text = buf.toString('utf8').trim();
  const last = text.split('\n').pop() ?? '';
  try {
    const parsed = JSON.parse(last) as HelperReply;
    if (typeof parsed.ok === 'boolean') return parsed;
  } catch {
    // not a reply: the output says what went wrong
  }
  throw new NsboxError('EIO', `${what}: the helper in the user namespace ${waitStatusText(r.status)}: ${text.slice(0, 400) || 'no output'}`, {
    hint: 'what it did not finish is left as it was: run the same command again (or nsbox prune) to finish a removal',
  });
}

/** A wait(2) status as words: "exited with status N" or "was killed by SIGNAME". */
export function waitStatusText(status: number): string {
  const sig = status & 0x7f;
  if (sig === 0) return `exited with status ${(status >> 8) & 0xff}`;
  const name = Object.entries(os.constants.signals).find(([, n]) => n === sig)?.[0];
  return `was killed by ${name ?? `signal ${sig}`}`;
}

/**
 * Runs `op` (src/ns-helper.ts) as root of a user namespace with this user's map, where the
 * subordinate ids' files are the helper's to read and delete. Synchronous: only removal's
 * fallback uses it, where the user's own walk already failed.
 */
export function runAsMappedRoot(op: string[], what: string): HelperReply {
  const a = available();
  if (!a) throw new NsboxError('UNSUPPORTED', `${what}: no subordinate id range or newuidmap for uid ${process.geteuid!()}`);
  const out = tempFd();
  try {
    return reply(a, native().runInUserns(spec(a, op, out)) as NativeUsernsResult, out, what);
  } finally {
    fs.closeSync(out);
  }
}

/** runAsMappedRoot on libuv's pool (the clone, the helpers and the wait), the loop free meanwhile. */
export async function runAsMappedRootAsync(op: string[], what: string): Promise<HelperReply> {
  const a = available();
  if (!a) throw new NsboxError('UNSUPPORTED', `${what}: no subordinate id range or newuidmap for uid ${process.geteuid!()}`);
  const out = tempFd();
  try {
    const r = await new Promise<NativeUsernsResult>((resolve) => native().runInUserns(spec(a, op, out), (x: unknown) => resolve(x as NativeUsernsResult)));
    return reply(a, r, out, what);
  } finally {
    fs.closeSync(out);
  }
}

/** Whether removal may fall back to the helper: rootless, with a range and the helpers. */
export function canFallBack(): boolean {
  return (process.geteuid?.() ?? 0) !== 0 && available() !== undefined;
}

/**
 * The user namespace of a rootless container with the range: external maps, written by
 * newuidmap and newgidmap (core/spawn.cc give_userns), setgroups allowed (newgidmap leaves it
 * so for a map of more than the user's own gid).
 */
export function subidUserNs(m: SubidMap): NativeUserNs {
  const a = available();
  if (!a) {
    throw new NsboxError(
      'UNSUPPORTED',
      `idMap subuid: newuidmap and newgidmap are not installed (in /usr/bin or /bin), and this container was made with the range`,
      {
        hint: 'install uidmap (shadow-utils)',
      },
    );
  }
  return { ...mapTexts(m), setgroupsDeny: false, external: true, mapHelper: { ...a.helpers, ...helperArgs(m) } };
}

/** The helper's failure in a start's report: errno is kMapHelperFailed + its status (core/subid.h), else an errno of running it. */
export const MAP_HELPER_FAILED = 100000;
