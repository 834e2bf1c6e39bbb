/**
 * cgroup v2 (the unified hierarchy): one directory per container, `<parent>/<id>`, where the
 * parent is `<supervisor's own v2 cgroup>/nsbox` or, with NSBOX_CGROUP_V2_PARENT, a v2 cgroup
 * that already exists (made and delegated by whoever runs the supervisor). The container's
 * first process is born in it (clone3 + CLONE_INTO_CGROUP with the directory's fd: see
 * src-cc/core/spawn.cc), so there is no moment when it runs outside, and no move (a move waits
 * for an RCU grace period). When it ends: cgroup.kill, wait for cgroup.events `populated 0`,
 * rmdir.
 *
 * Two uses:
 *   'limits'  the host's limits live here (a unified host): memory.max, memory.swap.max,
 *             cpu.max, cpu.weight, pids.max, cpuset.cpus, each needing its controller enabled
 *             in the parent's cgroup.subtree_control. A limit whose controller cannot be had
 *             fails the start, naming the controller.
 *   'track'   a hybrid host (v1 controllers, an empty v2 hierarchy beside, as systemd's hybrid
 *             layout has): the limits stay on v1, the v2 directory only tracks the container's
 *             processes, for cgroup.kill, cgroup.events and cpu.stat (which v2 has without
 *             any controller).
 * NSBOX_CGROUP_V2=off|track|limits overrides what the host's mode gives.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { NsboxError, errnoCode } from './errors';
import type { CgroupLimits } from './limits';

export type CgroupMode = 'unified' | 'hybrid' | 'legacy';

export interface UnifiedHierarchy {
  /** Where the cgroup2 filesystem is mounted. */
  mount: string;
  /** This process's cgroup in it (the `0::` line of /proc/self/cgroup). */
  path: string;
}

const unescape = (s: string) => s.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/**
 * The host's mode, as crun tells it: only cgroup2 mounted (unified), v1 controller hierarchies
 * with a cgroup2 mount beside (hybrid), or v1 alone (legacy). A v1 mount that carries no
 * controller (systemd's `name=systemd`) does not make a host hybrid.
 */
export function detectCgroupMode(mountinfo: string, cgroupFile: string): { mode: CgroupMode; unified?: UnifiedHierarchy } {
  let v1Controllers = false;
  let unifiedMount: string | undefined;
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const [fstype, , superOptions = ''] = right.split(' ');
    const fields = left.split(' ');
    if (fstype === 'cgroup2') {
      // Only a mount of the hierarchy's root holds this process's path under it.
      if (fields[3] === '/' && unifiedMount === undefined) unifiedMount = unescape(fields[4]!);
    } else if (fstype === 'cgroup') {
      const opts = superOptions.split(',');
      if (
        opts.some(
          (o) =>
            o !== 'rw' &&
            o !== 'ro' &&
            !o.startsWith('name=') &&
            !o.startsWith('release_agent=') &&
            o !== 'xattr' &&
            o !== 'noprefix' &&
            o !== 'clone_children' &&
            o !== 'cpuset_v2_mode',
        )
      ) {
        v1Controllers = true;
      }
    }
  }
  const own = /^0::(\/.*)$/m.exec(cgroupFile)?.[1];
  const unified = unifiedMount !== undefined && own !== undefined ? { mount: unifiedMount, path: own } : undefined;
  if (!unified) return { mode: 'legacy' };
  return { mode: v1Controllers ? 'hybrid' : 'unified', unified };
}

/** docker's --cpu-shares (2..262144) as a cgroup v2 cpu.weight (1..10000), as crun converts. */
export function cpuSharesToWeight(shares: number): number {
  return 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

export interface V2File {
  controller: string;
  file: string;
  value: string;
}

/**
 * What a set of limits writes on cgroup v2, file by file, in order. docker's memorySwap is
 * memory plus swap, v2's memory.swap.max is swap alone: the difference (0 when none was
 * asked: no swap), 'max' for -1. cpu.max is "quota period". cpuTime needs no file: cpu.stat
 * is there without any controller.
 */
export function v2LimitFiles(l: CgroupLimits): V2File[] {
  const out: V2File[] = [];
  if (l.cpuset !== undefined) out.push({ controller: 'cpuset', file: 'cpuset.cpus', value: l.cpuset });
  if (l.memory !== undefined) {
    out.push({ controller: 'memory', file: 'memory.max', value: String(l.memory) });
    const swap = l.memorySwap === undefined ? 0 : l.memorySwap === -1 ? 'max' : l.memorySwap - l.memory;
    out.push({ controller: 'memory', file: 'memory.swap.max', value: String(swap) });
  }
  if (l.cpuQuotaUs !== undefined) out.push({ controller: 'cpu', file: 'cpu.max', value: `${l.cpuQuotaUs} ${l.cpuPeriodUs!}` });
  if (l.cpuShares !== undefined) out.push({ controller: 'cpu', file: 'cpu.weight', value: String(cpuSharesToWeight(l.cpuShares)) });
  if (l.pids !== undefined) out.push({ controller: 'pids', file: 'pids.max', value: String(l.pids) });
  return out;
}

/** A flat-keyed cgroup file ("key value" lines: memory.events, cpu.stat, cgroup.events). */
export function parseKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out.set(k, Number(v));
  }
  return out;
}

/** memory.events: whether the OOM killer killed a process of the cgroup. */
export function parseOomKilled(memoryEvents: string): boolean {
  return oomKillCount(memoryEvents) > 0;
}

/** OOM kills so far, from v2's memory.events or v1's memory.oom_control (both `oom_kill N`). */
export function oomKillCount(keyed: string): number {
  return parseKeyed(keyed).get('oom_kill') ?? 0;
}

/** cpu.stat: CPU time of the whole cgroup, microseconds. */
export function parseCpuStat(cpuStat: string): { usageUs?: number | undefined; userUs?: number | undefined; systemUs?: number | undefined } {
  const m = parseKeyed(cpuStat);
  return { usageUs: m.get('usage_usec'), userUs: m.get('user_usec'), systemUs: m.get('system_usec') };
}

/** memory.peak: bytes, or undefined when not a number. */
export function parseMemoryPeak(text: string): number | undefined {
  const t = text.trim();
  return /^\d+$/.test(t) ? Number(t) : undefined;
}

export type V2Use = 'limits' | 'track';

let host: { mode: CgroupMode; unified?: UnifiedHierarchy } | undefined;
function hostMode(): { mode: CgroupMode; unified?: UnifiedHierarchy } {
  host ??= detectCgroupMode(fs.readFileSync('/proc/self/mountinfo', 'utf8'), fs.readFileSync('/proc/self/cgroup', 'utf8'));
  return host;
}

/** The host's cgroup mode (read once). */
export function cgroupMode(): CgroupMode {
  return hostMode().mode;
}

/** Whether the running kernel is at least `major.minor`. */
export function kernelAtLeast(release: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return !!m && (Number(m[1]) > major || (Number(m[1]) === major && Number(m[2]) >= minor));
}

/**
 * What v2 is used for on this host: limits (unified), tracking (hybrid), nothing (legacy).
 * By default only on kernels with CLONE_INTO_CGROUP (5.7) for limits and with cgroup.kill
 * (5.14) for tracking, which is a bonus and must cost nothing.
 */
export function v2Use(): V2Use | null {
  const forced = process.env.NSBOX_CGROUP_V2;
  if (forced === 'off') return null;
  const { mode, unified } = hostMode();
  if (!unified) return null;
  if (forced === 'limits' || forced === 'track') return forced;
  if (mode === 'unified') return kernelAtLeast(os.release(), 5, 7) ? 'limits' : null;
  return mode === 'hybrid' && kernelAtLeast(os.release(), 5, 14) ? 'track' : null;
}

/** `<supervisor's v2 cgroup>/nsbox`, or NSBOX_CGROUP_V2_PARENT (which must exist). */
export function v2Parent(): string | undefined {
  const given = process.env.NSBOX_CGROUP_V2_PARENT;
  if (given) return given;
  const u = hostMode().unified;
  return u ? path.join(u.mount, u.path, 'nsbox') : undefined;
}

/** The v2 parent named by NSBOX_CGROUP_V2_PARENT, for prune (the default one is nsbox's). */
export function givenV2Parent(): string | undefined {
  return process.env.NSBOX_CGROUP_V2_PARENT || undefined;
}

const O_PATH = 0o10000000;

/** Whether a v2 cgroup directory's `cgroup.events` says a process is in it or below. */
function populated(dir: string): boolean {
  return parseKeyed(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8')).get('populated') === 1;
}

/**
 * Makes `controllers` usable by the directories made under `chain`'s last member: each one
 * listed in cgroup.controllers and enabled in cgroup.subtree_control of every member, top
 * down (the default chain: the supervisor's own cgroup, then its nsbox/). Enabling fails
 * (EBUSY) in a cgroup that holds processes, the root excepted (v2's no-internal-process
 * rule): that is an error naming the controller, never an unlimited container.
 */
export function enableControllers(chain: string[], controllers: Set<string>): void {
  const words = (dir: string, f: string) => new Set(fs.readFileSync(path.join(dir, f), 'utf8').trim().split(/\s+/).filter(Boolean));
  for (const c of controllers) for (const parent of chain) enableController(parent, c, words);
}

function enableController(parent: string, c: string, words: (dir: string, f: string) => Set<string>): void {
  if (words(parent, 'cgroup.subtree_control').has(c)) return;
  const available = words(parent, 'cgroup.controllers');
  if (!available.has(c)) {
    throw new NsboxError(
      'UNSUPPORTED',
      `limits: no ${c} controller in cgroup v2 at ${parent} (its cgroup.controllers: ${[...available].join(' ') || 'none'})`,
      {
        path: c,
        hint: `the cgroup above must delegate '${c}' (systemd: Delegate=yes), or name a parent that has it with NSBOX_CGROUP_V2_PARENT`,
      },
    );
  }
  try {
    fs.writeFileSync(path.join(parent, 'cgroup.subtree_control'), `+${c}`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    const why =
      code === 'EBUSY' ? `${parent} holds processes, and cgroup v2 enables a controller for children only in a cgroup without any` : (e as Error).message;
    throw new NsboxError(errnoCode(code), `limits: cannot enable the ${c} controller in ${parent}: ${why}`, {
      path: c,
      cause: e,
      hint: 'run the supervisor in a leaf cgroup below a delegated one, or set NSBOX_CGROUP_V2_PARENT to an empty cgroup with the controllers enabled',
    });
  }
}

/** What the v2 directory says once the container has ended. */
export interface V2Stats {
  oomKilled: boolean;
  memoryPeakBytes?: number | undefined;
  cpuUserMs?: number;
  cpuSystemMs?: number;
}

export class V2Cgroup {
  readonly dir: string;
  /** The directory, open O_PATH | O_DIRECTORY | O_CLOEXEC: clone3's CLONE_INTO_CGROUP fd. */
  fd: number;
  readonly use: V2Use;

  private constructor(dir: string, fd: number, use: V2Use) {
    this.dir = dir;
    this.fd = fd;
    this.use = use;
  }

  /**
   * The container's v2 directory with `limits` written (use 'limits'), or an empty one for
   * tracking. `existing`: the directory is there already (made for the device program).
   * Null for tracking where the hierarchy is not ours to write (read-only, not delegated).
   */
  static create(id: string, use: V2Use, limits: CgroupLimits, existing?: string): V2Cgroup | null {
    const parent = v2Parent();
    if (!parent) {
      if (use === 'track') return null;
      throw new NsboxError('UNSUPPORTED', 'limits: no cgroup v2 hierarchy for this process', { path: 'cgroup2' });
    }
    const dir = existing ?? path.join(parent, id);
    const files = use === 'limits' ? v2LimitFiles(limits) : [];
    let made = false;
    let fd = -1;
    try {
      if (process.env.NSBOX_CGROUP_V2_PARENT) {
        if (!fs.existsSync(path.join(parent, 'cgroup.controllers'))) {
          throw new NsboxError('ENOENT', `NSBOX_CGROUP_V2_PARENT: ${parent} is not a cgroup v2 directory`, { path: parent });
        }
      } else {
        fs.mkdirSync(parent, { recursive: true, mode: 0o755 });
      }
      const given = !!process.env.NSBOX_CGROUP_V2_PARENT;
      enableControllers(given ? [parent] : [path.dirname(parent), parent], new Set(files.map((f) => f.controller)));
      if (!existing) {
        fs.mkdirSync(dir, { mode: 0o755 });
        made = true;
      }
      for (const f of files) {
        // Without swap accounting there is no memory.swap.max: nothing to hold when no swap
        // was asked for beyond memory (as on v1), an error when some was.
        if (f.file === 'memory.swap.max' && !fs.existsSync(path.join(dir, f.file))) {
          if (f.value === '0') continue;
          throw new NsboxError('UNSUPPORTED', 'limits.memorySwap: this kernel has no swap accounting (memory.swap.max), so swap cannot be limited', {
            path: 'memory',
          });
        }
        fs.writeFileSync(path.join(dir, f.file), f.value);
      }
      fd = fs.openSync(dir, O_PATH | fs.constants.O_DIRECTORY);
      // Its removal is this object's from now on, an `existing` directory's too.
      return new V2Cgroup(dir, fd, use);
    } catch (e) {
      if (fd >= 0) fs.closeSync(fd);
      if (made) fs.rmdirSync(dir);
      const code = (e as NodeJS.ErrnoException).code;
      if (use === 'track' && !made && (code === 'EACCES' || code === 'EROFS' || code === 'EPERM')) return null;
      if (e instanceof NsboxError) throw e;
      const file = files.length ? ` (${files.map((f) => f.file).join(', ')})` : '';
      throw new NsboxError(errnoCode(code), `cgroup v2 ${dir}${file}: ${(e as Error).message}`, { cause: e, path: dir });
    }
  }

  /** After the start: the child is born in it, or never will be. */
  closeFd(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  /** CPU time of the whole container so far (cpu.stat usage_usec). */
  cpuUsageNs(): number | undefined {
    try {
      const us = parseCpuStat(fs.readFileSync(path.join(this.dir, 'cpu.stat'), 'utf8')).usageUs;
      return us === undefined ? undefined : us * 1000;
    } catch {
      return undefined;
    }
  }

  /** OOM kills, peak memory, CPU time; read before the directory goes. */
  stats(): V2Stats {
    const read = (f: string) => {
      try {
        return fs.readFileSync(path.join(this.dir, f), 'utf8');
      } catch {
        return undefined; // no memory controller here
      }
    };
    const out: V2Stats = { oomKilled: false };
    // Tracking only: no memory files (on a hybrid host the memory controller is v1's).
    if (this.use === 'limits') {
      const events = read('memory.events');
      if (events !== undefined) out.oomKilled = parseOomKilled(events);
      const peak = read('memory.peak');
      if (peak !== undefined) out.memoryPeakBytes = parseMemoryPeak(peak);
    }
    const cpu = read('cpu.stat');
    if (cpu !== undefined) {
      const { userUs, systemUs } = parseCpuStat(cpu);
      if (userUs !== undefined) out.cpuUserMs = userUs / 1000;
      if (systemUs !== undefined) out.cpuSystemMs = systemUs / 1000;
    }
    return out;
  }

  /**
   * Kills whatever is left in it (cgroup.kill, or SIGKILL to every process in cgroup.procs
   * on kernels before 5.14), waits for cgroup.events `populated 0`, removes it.
   */
  async remove(): Promise<void> {
    this.closeFd();
    await killAndRemove(this.dir);
  }
}

/** cgroup.kill where the kernel has it, else a kill loop; then the wait and the rmdir. */
export async function killAndRemove(dir: string, waitMs = 5000): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (let attempt = 0; ; attempt++) {
    try {
      if (!populated(dir)) break;
      killAll(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new NsboxError(errnoCode((e as NodeJS.ErrnoException).code), `cgroup v2 ${dir}: ${(e as Error).message}`, { cause: e, path: dir });
    }
    if (Date.now() > deadline) throw new NsboxError('EBUSY', `cgroup v2 ${dir}: processes still in it after cgroup.kill`, { path: dir });
    await new Promise((r) => setTimeout(r, attempt < 10 ? 1 : 10));
  }
  for (let attempt = 0; ; attempt++) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() > deadline)
        throw new NsboxError(errnoCode(code), `remove cgroup ${dir}: ${(e as Error).message}`, { cause: e, path: dir });
      await new Promise((r) => setTimeout(r, attempt < 10 ? 1 : 10));
    }
  }
}

/** One round of killing: cgroup.kill (Linux 5.14) kills the whole subtree, forks included. */
function killAll(dir: string): void {
  const kill = path.join(dir, 'cgroup.kill');
  if (process.env.NSBOX_CGROUP_V2_KILL !== 'loop' && fs.existsSync(kill)) {
    fs.writeFileSync(kill, '1');
    return;
  }
  // Without it: SIGKILL each process listed, below too; what forked meanwhile is found next round.
  const visit = (d: string) => {
    for (const p of fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) visit(path.join(d, e.name));
  };
  visit(dir);
}

/**
 * Container directories under NSBOX_CGROUP_V2_PARENT left by a supervisor that died (the
 * default parent is pruned with the v1 ones): 12-hex names, empty, older than `staleMs`.
 */
export function pruneGivenV2Parent(now: number, staleMs: number): string[] {
  const parent = givenV2Parent();
  if (!parent) return [];
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(parent).filter((n) => /^[0-9a-f]{12}$/.test(n));
  } catch {
    return [];
  }
  for (const n of names) {
    const dir = path.join(parent, n);
    try {
      if (now - fs.statSync(dir).mtimeMs < staleMs || populated(dir)) continue;
      fs.rmdirSync(dir);
      removed.push(dir);
    } catch {
      // in use again, or gone
    }
  }
  return removed;
}
