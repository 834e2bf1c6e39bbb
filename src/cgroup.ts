/**
 * Each container's cgroup: made before clone, below the supervisor's own cgroup (so that
 * nsbox works inside a container or a systemd slice), joined by the container's first
 * process before anything else (PlanInput.cgroupProcs), removed when the container ends.
 * Limits' directories come from warm sets made ahead (src/cgroup-pool.ts) when one is ready.
 *
 * Today it carries the device allowlist (issue 9): on cgroup v1 (and hybrid hosts: v1
 * controllers beside a v2 hierarchy) a `devices` directory per container. The allowlist:
 * deny everything, then allow the standard nodes (the same list as plan.ts's
 * STANDARD_DEVICES), the terminals and mknod (as docker does; a node made anywhere the
 * container can write is unusable anyway: those mounts are nodev). A v1 child cgroup starts
 * with its parent's rules and can never allow more, so:
 *   <supervisor's devices cgroup>/nsbox/std/<id>   the usual container: inherits the list
 *                                                  from std/, set up once
 *   <supervisor's devices cgroup>/nsbox/<id>       a container given `devices`: the list
 *                                                  and its nodes written for it alone
 * On a host with only cgroup v2 the allowlist would be a BPF_CGROUP_DEVICE program: not
 * built yet, so there nodev is the only layer (see docs/DESIGN.md).
 *
 * cgroup v2 (limits on a unified host, tracking on a hybrid one) is src/cgroup-v2.ts: one
 * directory the container is born in, attached here as ContainerCgroup.v2 (forStart).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError, fromNative, fromSystemError, errnoCode } from './errors';
import { ownStartTime, processAlive } from './proc';
import { deviceProgram, parseDeviceRule } from './devbpf';
import { discardSync, makeSync, refillWarm, renameSet, takeWarm, warmOwner, type ShapeGroup, type WarmSet } from './cgroup-pool';
import { V2Cgroup, givenV2Parent, pruneGivenV2Parent, v2Use } from './cgroup-v2';
import type { CgroupLimits } from './limits';
import { native } from './native';
import type { DeviceNode } from './plan';

/** The parent's rules, in the order devices.list shows them. */
export const DEVICE_ALLOWLIST: readonly string[] = Object.freeze([
  'c *:* m',
  'b *:* m',
  'c 1:3 rwm',
  'c 1:5 rwm',
  'c 1:7 rwm',
  'c 1:8 rwm',
  'c 1:9 rwm', // null zero full random urandom
  'c 5:0 rwm',
  'c 5:2 rwm', // tty, ptmx
  'c 136:* rwm', // the container's own pseudo-terminals
]);

const PARENT = 'nsbox';
const STANDARD = 'std';
/** An empty cgroup this old was left by a supervisor that died: safe to remove. */
const STALE_AFTER_MS = 60_000;

interface V1Hierarchy {
  /** Where the hierarchy is mounted. */
  mount: string;
  /** This process's cgroup in it. */
  path: string;
}

/** The v1 hierarchies this process is in, by controller (devices, memory, ...). */
export function v1Hierarchies(mountinfo: string, cgroupFile: string): Map<string, V1Hierarchy> {
  const paths = new Map<string, string>();
  for (const line of cgroupFile.split('\n')) {
    const [, controllers, p] = line.split(':') as [string, string | undefined, string | undefined];
    if (!controllers || p === undefined) continue;
    for (const c of controllers.split(',')) paths.set(c, p);
  }
  const out = new Map<string, V1Hierarchy>();
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const [fstype, , superOptions] = right.split(' ');
    if (fstype !== 'cgroup' || !superOptions) continue;
    const fields = left.split(' ');
    // Only a mount of the hierarchy's root can hold this process's path under it.
    if (fields[3] !== '/') continue;
    const mount = fields[4]!.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    for (const opt of superOptions.split(',')) {
      const p = paths.get(opt);
      if (p !== undefined && !out.has(opt)) out.set(opt, { mount, path: p });
    }
  }
  return out;
}

let hierarchies: Map<string, V1Hierarchy> | undefined;
function hostHierarchies(): Map<string, V1Hierarchy> {
  hierarchies ??= v1Hierarchies(fs.readFileSync('/proc/self/mountinfo', 'utf8'), fs.readFileSync('/proc/self/cgroup', 'utf8'));
  return hierarchies;
}

/** The cgroup v2 (unified) hierarchy: where it is mounted and this process's cgroup in it. */
export function unifiedHierarchy(mountinfo: string, cgroupFile: string): V1Hierarchy | undefined {
  const p = /^0::(\/.*)$/m.exec(cgroupFile)?.[1];
  if (p === undefined) return undefined;
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right || right.split(' ')[0] !== 'cgroup2') continue;
    const fields = left.split(' ');
    if (fields[3] !== '/') continue;
    return { mount: fields[4]!.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))), path: p };
  }
  return undefined;
}

let unified: V1Hierarchy | null | undefined;
function hostUnified(): V1Hierarchy | undefined {
  if (unified === undefined) {
    unified = unifiedHierarchy(fs.readFileSync('/proc/self/mountinfo', 'utf8'), fs.readFileSync('/proc/self/cgroup', 'utf8')) ?? null;
  }
  return unified ?? undefined;
}

/**
 * Which device cgroup a container gets: v1's devices controller where the host has it, else a
 * cgroup v2 directory with a BPF device program. NSBOX_CGROUP_DEVICES=v1|v2|none chooses
 * (v2 on a hybrid host, to use the unified hierarchy beside the v1 controllers).
 */
function deviceCgroupMode(): 'v1' | 'v2' | 'none' {
  const forced = process.env.NSBOX_CGROUP_DEVICES;
  if (forced === 'v1' || forced === 'v2' || forced === 'none') return forced;
  if (hostHierarchies().has('devices')) return 'v1';
  return hostUnified() ? 'v2' : 'none';
}

/** The setup cgroup's name, beside nsbox/ in this process's own v1 cpu cgroup. */
export const SETUP_CGROUP = 'nsbox-setup';
/**
 * Its cpu.shares: half a nice-0 group's 1024. A trade (bench/ANALYSIS.md, "Event-loop delay"):
 * lower keeps the loop's waits shorter, but leaves the setups less of the CPUs when other
 * groups load them (the loop itself uses little: the setups had nearly all of its group's).
 */
export const SETUP_SHARES = 512;

/** Where a container's setup runs, and how it leaves (core/spawner.h). */
export interface SetupCgroup {
  /** `tasks` of `<this process's cpu cgroup>/nsbox-setup`: the spawner threads join it. */
  tasks: string;
  /** This process's own v1 cpu cgroup's `tasks`, open for writing: the child's last step. */
  leaveFd: number;
  /** Where the cpu hierarchy is mounted: a container with a cgroup of its own there needs none. */
  mount: string;
}

let setupCgroup: SetupCgroup | null | undefined;
/** The cpu cgroup (its path in the hierarchy) `setupCgroup` was made for. */
let setupFor: string | undefined;
/** This process's path in the v1 cpu hierarchy now (it moves with `cgroup.procs` writes). */
function currentCpuPath(): string | undefined {
  for (const line of fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, controllers, p] = line.split(':');
    if (controllers?.split(',').includes('cpu') && p !== undefined) return p;
  }
  return undefined;
}

/**
 * The setup cgroup (issue 14: the event loop stays responsive while containers start), made
 * once per cpu cgroup this process is in and kept, like nsbox/ (an empty cgroup holds
 * nothing; the next process takes it again). Undefined without a v1 cpu controller, for a
 * process that cannot make it (rootless), or with NSBOX_SETUP_CGROUP=0: starts then run in the
 * caller's cpu cgroup throughout, as before. Checked against /proc/self/cgroup on every call:
 * a process moved to another cpu cgroup (its threads, the spawners' too, go with it) must not
 * send its containers back to the one it left, nor fail every start once that one is removed.
 */
export function setupCpuCgroup(): SetupCgroup | undefined {
  const h = hostHierarchies().get('cpu');
  if (!h || process.env.NSBOX_SETUP_CGROUP === '0') return undefined;
  const now = currentCpuPath();
  if (setupCgroup !== undefined && now === setupFor) return setupCgroup ?? undefined;
  // The leave fd of a cgroup this process was moved out of stays open (the addon owns it): a
  // start already planned may still hand its child that number, and a number closed and reused
  // by another file would have the child write "0" into that file.
  setupCgroup = null;
  setupFor = now;
  if (now === undefined) return undefined;
  const own = path.join(h.mount, now);
  const dir = path.join(own, SETUP_CGROUP);
  try {
    fs.mkdirSync(dir, { mode: 0o755 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return undefined;
  }
  try {
    const shares = path.join(dir, 'cpu.shares');
    if (fs.readFileSync(shares, 'utf8').trim() !== String(SETUP_SHARES)) fs.writeFileSync(shares, String(SETUP_SHARES));
  } catch {
    return undefined;
  }
  // Opened and owned by the addon, not fs.openSync: closed when this environment (a worker)
  // ends, and only after its spawner threads, which may still hand the number to a child.
  const leaveFd = native().openLeaveFd(path.join(own, 'tasks'));
  if (typeof leaveFd !== 'number') return undefined;
  setupCgroup = { tasks: path.join(dir, 'tasks'), leaveFd, mount: h.mount };
  return setupCgroup;
}

/**
 * The supervisor's own v1 devices cgroup (its `tasks` file): where a container that gets no
 * shared device cgroup (privileged, or a device cgroup of its own) is born, so that it never
 * inherits std/'s rules from the thread that clones it.
 */
export function homeDevicesTasks(): string | undefined {
  const h = hostHierarchies().get('devices');
  return h ? path.join(h.mount, h.path, 'tasks') : undefined;
}

/** `<supervisor's devices cgroup>/nsbox`, or undefined where there is no v1 devices controller. */
function devicesParent(): string | undefined {
  const h = hostHierarchies().get('devices');
  return h ? path.join(h.mount, h.path, PARENT) : undefined;
}

/** Deny all, then the allowlist and `extra` rules; checked by reading devices.list back. */
function writeDeviceRules(dir: string, extra: string[] = []): void {
  // As sets: the kernel lists a rule once, however often it is allowed.
  const want = [...new Set([...DEVICE_ALLOWLIST, ...extra])].sort().join('\n');
  const list = () => fs.readFileSync(path.join(dir, 'devices.list'), 'utf8').trim().split('\n');
  if ([...list()].sort().join('\n') === want) return;
  fs.writeFileSync(path.join(dir, 'devices.deny'), 'a');
  for (const rule of [...DEVICE_ALLOWLIST, ...extra]) fs.writeFileSync(path.join(dir, 'devices.allow'), rule);
  const got = list();
  if ([...got].sort().join('\n') !== want) {
    throw new NsboxError('EINVAL', `device cgroup ${dir}: rules are ${got.join('; ')}, not nsbox's allowlist`, { path: dir });
  }
}

let standardReady: string | undefined;

/**
 * `nsbox/` (allowing what the supervisor may) and `nsbox/std/` with the allowlist, once per
 * process. A cgroup's default (deny) can only change while it has no children: a std/ found
 * with other rules and children is an error, not overwritten.
 */
function ensureStandardParent(parent: string): string {
  const std = path.join(parent, STANDARD);
  if (standardReady === std) return std;
  fs.mkdirSync(std, { recursive: true, mode: 0o755 });
  writeDeviceRules(std);
  standardReady = std;
  return std;
}

/** Whether an error means cgroups are not ours to manage here (read-only or not delegated). */
function notOurs(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EACCES' || code === 'EROFS' || code === 'EPERM';
}

/** The v1 controllers a set of limits needs, and the files each one's values go to. */
function limitFiles(l: CgroupLimits, memswAvailable: boolean): Map<string, Array<[string, string]>> {
  const out = new Map<string, Array<[string, string]>>();
  const add = (controller: string, file: string, value: string | number) => {
    if (!out.has(controller)) out.set(controller, []);
    out.get(controller)!.push([file, String(value)]);
  };
  if (l.memory !== undefined) {
    add('memory', 'memory.limit_in_bytes', l.memory);
    // memory.memsw (memory + swap) only exists with swap accounting on; without it there is
    // no swap limit to set, and none asked for unless memorySwap was given.
    if (memswAvailable && l.memorySwap !== undefined) add('memory', 'memory.memsw.limit_in_bytes', l.memorySwap);
  }
  if (l.pids !== undefined) add('pids', 'pids.max', l.pids);
  if (l.cpuQuotaUs !== undefined) {
    add('cpu', 'cpu.cfs_period_us', l.cpuPeriodUs!);
    add('cpu', 'cpu.cfs_quota_us', l.cpuQuotaUs);
  }
  if (l.cpuShares !== undefined) add('cpu', 'cpu.shares', l.cpuShares);
  if (l.cpuset !== undefined) add('cpuset', 'cpuset.cpus', l.cpuset);
  if (l.cpuTimeNs !== undefined) out.set('cpuacct', out.get('cpuacct') ?? []);
  return out;
}

/** A v1 cpuset cgroup takes no process until it has CPUs and memory nodes: its parent's. */
function inheritCpuset(dir: string): void {
  for (const f of ['cpuset.cpus', 'cpuset.mems']) {
    if (fs.readFileSync(path.join(dir, f), 'utf8').trim() === '') {
      fs.writeFileSync(path.join(dir, f), fs.readFileSync(path.join(path.dirname(dir), f), 'utf8').trim());
    }
  }
}

let memswAvailable: boolean | undefined;
/** Whether the kernel accounts swap (memory.memsw files exist); asked once per process. */
function swapAccounting(): boolean {
  const m = hostHierarchies().get('memory');
  memswAvailable ??= !!m && fs.existsSync(path.join(m.mount, m.path, 'memory.memsw.limit_in_bytes'));
  return memswAvailable;
}

/** `nsbox/` parents made (and a cpuset one given its CPUs and nodes) by this process. */
const parentsReady = new Set<string>();

/**
 * The warm-set shape for a start's limit files: one group per hierarchy (controllers mounted
 * together, as cpu,cpuacct may be, share a directory), the controllers each group serves, and
 * the values by `${group}/${file}`. Throws UNSUPPORTED naming a controller the host lacks.
 */
function limitShape(wanted: Map<string, Array<[string, string]>>): { shape: ShapeGroup[]; controllers: string[][]; values: Map<string, string> } {
  const h = hostHierarchies();
  const shape: ShapeGroup[] = [];
  const controllers: string[][] = [];
  const values = new Map<string, string>();
  for (const [controller, files] of wanted) {
    const hier = h.get(controller);
    if (!hier) {
      throw new NsboxError(
        'UNSUPPORTED',
        `limits: no ${controller} cgroup controller on this host (cgroup v1 '${controller}' is not mounted, and limits are not on cgroup v2 here: see NSBOX_CGROUP_V2)`,
        { path: controller },
      );
    }
    const parent = path.join(hier.mount, hier.path, PARENT);
    let i = shape.findIndex((g) => g.parent === parent);
    if (i < 0) {
      if (!parentsReady.has(parent)) {
        try {
          fs.mkdirSync(parent, { recursive: true, mode: 0o755 });
          if (controller === 'cpuset') inheritCpuset(parent);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          const why = notOurs(e) ? ' (the cgroup is not writable by this process: not delegated)' : '';
          throw new NsboxError(errnoCode(code), `limits: cgroup controller ${controller}: ${(e as Error).message}${why}`, { cause: e, path: controller });
        }
        parentsReady.add(parent);
      }
      i = shape.push({ parent, files: [], cpuset: controller === 'cpuset' }) - 1;
      controllers.push([]);
    }
    controllers[i]!.push(controller);
    for (const [file, value] of files) {
      shape[i]!.files.push(file);
      values.set(`${i}/${file}`, value);
    }
  }
  return { shape, controllers, values };
}

/**
 * Writes group `i`'s limit values that the set does not hold yet. memory+swap can never be
 * below memory: when both change, memsw is lifted first, then memory, then memsw.
 */
function writeLimitFiles(set: WarmSet, i: number, files: string[], values: Map<string, string>): void {
  const dir = set.dirs[i]!;
  const differs = (f: string) => set.values.get(`${i}/${f}`) !== values.get(`${i}/${f}`);
  const memsw = 'memory.memsw.limit_in_bytes';
  if (set.values.size > 0 && files.includes(memsw) && files.some((f) => f !== memsw && f.startsWith('memory.') && differs(f))) {
    fs.writeFileSync(path.join(dir, memsw), '-1');
    set.values.delete(`${i}/${memsw}`);
  }
  for (const f of files) {
    if (!differs(f)) continue;
    fs.writeFileSync(path.join(dir, f), values.get(`${i}/${f}`)!);
    set.values.set(`${i}/${f}`, values.get(`${i}/${f}`)!);
  }
}

/** What the cgroups say once the container has ended (before they are removed). */
export interface CgroupStats {
  oomKilled: boolean;
  memoryPeakBytes?: number | undefined;
  cpuUsageNs?: number | undefined;
  /** The whole container's CPU time, from cgroup v2's cpu.stat. */
  cpuUserMs?: number;
  cpuSystemMs?: number;
}

export class ContainerCgroup {
  /** The cgroup directories made for this container. */
  readonly dirs: string[];
  /**
   * Open files (close-on-exec) the child writes "0" to, joining: PlanInput.cgroupProcs. On v1
   * the `tasks` file: the child is one thread, and a thread moving itself alone takes no global
   * lock (a write to `cgroup.procs` waits for an RCU grace period: bench/ANALYSIS.md). On v2
   * `cgroup.procs`.
   */
  readonly procsFds: number[];
  /** This container's own directory per controller (memory, cpuacct, ...). */
  readonly byController: Map<string, string>;
  /**
   * A shared v1 cgroup the container is born in (its `tasks` file): the thread that clones it
   * is in it (src-cc/core/spawner.h), so the container needs no move of its own.
   */
  readonly bornIn: string | undefined;
  /** The cgroup v2 directory the container is born in (CLONE_INTO_CGROUP), if any. */
  v2: V2Cgroup | undefined;

  private constructor(dirs: string[], fds: number[], byController: Map<string, string>, bornIn?: string) {
    this.dirs = dirs;
    this.procsFds = fds;
    this.byController = byController;
    this.bornIn = bornIn;
  }

  /**
   * The container's cgroups for `limits` (on top of the devices), each applied to the whole
   * process tree: every process of the container is in them before anything runs. A limit
   * that cannot be applied is an error naming the controller, never a silently unlimited
   * container. The directories come from a warm set when one is ready (src/cgroup-pool.ts),
   * else they are made here; either way they are named after the container.
   */
  static withLimits(id: string, devices: DeviceNode[] | 'all', limits: CgroupLimits): ContainerCgroup | null {
    const base = ContainerCgroup.create(id, devices);
    const memsw = limits.memory !== undefined && swapAccounting();
    const wanted = limitFiles(limits, memsw);
    if (wanted.size === 0) return base;
    let set: WarmSet | undefined;
    let current = '';
    try {
      if (limits.memorySwap !== undefined && limits.memorySwap !== limits.memory && !memsw) {
        throw new NsboxError('UNSUPPORTED', 'limits.memorySwap: this kernel has no swap accounting (memory.memsw), so swap cannot be limited', {
          hint: 'boot with swapaccount=1, or leave memorySwap out (then no swap is limited separately)',
        });
      }
      const { shape, controllers, values } = limitShape(wanted);
      const warm = takeWarm(shape);
      if (warm) {
        try {
          renameSet(warm, id);
          set = warm;
        } catch {
          // removed from outside: made afresh below
        }
      }
      if (!set) {
        try {
          set = makeSync(shape, id);
        } catch (e) {
          current = controllers[(e as { group?: number }).group ?? 0]![0]!;
          throw e;
        }
      }
      for (const [i, g] of shape.entries()) {
        current = controllers[i]![0]!;
        writeLimitFiles(set, i, g.files, values);
      }
      refillWarm(shape, values);
      const dirs = [...(base?.dirs ?? []), ...set.dirs];
      const fds = [...(base?.procsFds ?? []), ...set.fds];
      const byController = new Map(base?.byController ?? []);
      for (const [i, cs] of controllers.entries()) for (const c of cs) byController.set(c, set.dirs[i]!);
      return new ContainerCgroup(dirs, fds, byController, base?.bornIn);
    } catch (e) {
      // Nothing joined it: the set goes (and so would the base, had it a directory).
      if (set) discardSync(set);
      if (base) {
        base.closeFds();
        for (const d of base.dirs) fs.rmdirSync(d);
      }
      if (e instanceof NsboxError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'EACCES' || code === 'EROFS' || code === 'EPERM' ? ' (the cgroup is not writable by this process: not delegated)' : '';
      throw new NsboxError(errnoCode(code), `limits: cgroup controller ${current}: ${(e as Error).message}${why}`, { cause: e, path: current });
    }
  }

  /**
   * The container's cgroups for a start: on a host whose limits live in cgroup v2 (v2Use()
   * 'limits') the v1 part is the device cgroup only and the limits go to the v2 directory;
   * on a hybrid host the v1 limits as before, plus a v2 directory that only tracks.
   */
  static forStart(id: string, devices: DeviceNode[] | 'all', limits: CgroupLimits): ContainerCgroup | null {
    const use = v2Use();
    const v1 = ContainerCgroup.withLimits(id, devices, use === 'limits' ? {} : limits);
    if (!use) return v1;
    // The device program's directory (NSBOX_CGROUP_DEVICES=v2, or a unified host) is the same
    // one: born in it, the container needs no join.
    const existing = v1?.byController.get('unified');
    let v2: V2Cgroup | null;
    try {
      v2 = V2Cgroup.create(id, use, limits, existing);
    } catch (e) {
      v1?.closeFds();
      v1?.remove().catch(() => {});
      throw e;
    }
    if (!v2) return v1;
    const out = v1 ?? new ContainerCgroup([], [], new Map());
    if (existing) {
      const i = out.dirs.indexOf(existing);
      if (i >= 0) out.dirs.splice(i, 1);
      // Its join step would be a move into the cgroup it is born in: dropped. It is the first
      // fd: withLimits puts the device cgroup's (create()) before those of the limits.
      for (const fd of out.procsFds.splice(0, 1)) fs.closeSync(fd);
    }
    out.v2 = v2;
    return out;
  }

  /** Every directory of it, v1 and v2. */
  get allDirs(): string[] {
    return this.v2 ? [...this.dirs, this.v2.dir] : [...this.dirs];
  }

  /** The open v2 directory for CLONE_INTO_CGROUP, until closeFds(). */
  get cgroupFd(): number | undefined {
    return this.v2 && this.v2.fd >= 0 ? this.v2.fd : undefined;
  }

  /** OOM kills, peak memory and CPU time, read before the directories go. */
  stats(): CgroupStats {
    const out: CgroupStats = { oomKilled: false };
    if (this.v2) Object.assign(out, this.v2.stats());
    const mem = this.byController.get('memory');
    if (mem) {
      try {
        out.oomKilled = /^oom_kill [1-9]/m.test(fs.readFileSync(path.join(mem, 'memory.oom_control'), 'utf8'));
        out.memoryPeakBytes = Number(fs.readFileSync(path.join(mem, 'memory.max_usage_in_bytes'), 'utf8'));
      } catch {
        // gone already
      }
    }
    const acct = this.byController.get('cpuacct');
    if (acct) out.cpuUsageNs = this.cpuUsageNs();
    return out;
  }

  /** The file cpuUsageNs() reads: v1 cpuacct.usage (ns), or v2 cpu.stat (`v2`: usage_usec). */
  cpuUsageFile(): { file: string; v2: boolean } | undefined {
    const acct = this.byController.get('cpuacct');
    if (acct) return { file: path.join(acct, 'cpuacct.usage'), v2: false };
    return this.v2 ? { file: path.join(this.v2.dir, 'cpu.stat'), v2: true } : undefined;
  }

  /** CPU time of the whole container so far (cpuacct), or undefined without that cgroup. */
  cpuUsageNs(): number | undefined {
    const acct = this.byController.get('cpuacct');
    if (!acct) return this.v2?.cpuUsageNs();
    try {
      return Number(fs.readFileSync(path.join(acct, 'cpuacct.usage'), 'utf8'));
    } catch {
      return undefined;
    }
  }

  /**
   * The container's cgroups. `devices`: the nodes it may use beyond the allowlist, or 'all'
   * (privileged: no device cgroup at all). Null where this host gives nsbox no cgroup to
   * manage (no v1 devices controller, or one that is read-only for us).
   */
  static create(id: string, devices: DeviceNode[] | 'all'): ContainerCgroup | null {
    if (devices === 'all') return null;
    const mode = deviceCgroupMode();
    if (mode === 'none') return null;
    if (mode === 'v2') return ContainerCgroup.createV2(id, devices);
    const parent = devicesParent();
    if (!parent) return null;
    let std: string;
    try {
      std = ensureStandardParent(parent);
    } catch (e) {
      if (notOurs(e)) return null;
      throw e instanceof NsboxError ? e : fromSystemError(`device cgroup ${parent}`, e);
    }
    // The usual container is born in the shared std/ (no move: see bornIn).
    if (!devices.length) return new ContainerCgroup([], [], new Map(), path.join(std, 'tasks'));
    const dir = path.join(parent, id);
    const made: string[] = [];
    let fd = -1;
    try {
      fs.mkdirSync(dir, { mode: 0o755 });
      made.push(dir);
      writeDeviceRules(
        dir,
        devices.map((d) => `${d.type} ${d.major}:${d.minor} rwm`),
      );
      // libuv opens with O_CLOEXEC: the container gets it only through the plan's step.
      fd = fs.openSync(path.join(dir, 'tasks'), fs.constants.O_WRONLY);
      return new ContainerCgroup(made, [fd], new Map([['devices', dir]]));
    } catch (e) {
      if (fd >= 0) fs.closeSync(fd);
      for (const d of made) fs.rmdirSync(d);
      throw fromSystemError(`container cgroup ${dir}`, e);
    }
  }

  /**
   * cgroup v2: the container's own directory under `<supervisor's cgroup>/nsbox/`, with the
   * allowlist (and its `devices`) as a BPF_CGROUP_DEVICE program attached to it.
   */
  private static createV2(id: string, devices: DeviceNode[]): ContainerCgroup | null {
    const h = hostUnified();
    if (!h) return null;
    const dir = path.join(h.mount, h.path, PARENT, id);
    const made: string[] = [];
    let fd = -1;
    try {
      fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o755 });
      fs.mkdirSync(dir, { mode: 0o755 });
      made.push(dir);
      const rules = [...DEVICE_ALLOWLIST, ...devices.map((d) => `${d.type} ${d.major}:${d.minor} rwm`)].map(parseDeviceRule);
      const err = native().attachDeviceProgram(dir, deviceProgram(rules));
      if (err) throw fromNative(`device cgroup ${dir}`, err, { path: dir });
      fd = fs.openSync(path.join(dir, 'cgroup.procs'), fs.constants.O_WRONLY);
      return new ContainerCgroup(made, [fd], new Map([['unified', dir]]));
    } catch (e) {
      if (fd >= 0) fs.closeSync(fd);
      for (const d of made) fs.rmdirSync(d);
      if (notOurs(e) && made.length === 0) return null;
      throw e instanceof NsboxError ? e : fromSystemError(`container cgroup ${dir}`, e);
    }
  }

  /** After the start (failed or not): the child has joined, or will never. */
  closeFds(): void {
    for (const fd of this.procsFds.splice(0)) fs.closeSync(fd);
    this.v2?.closeFd();
  }

  /**
   * Removes the directories once the container's processes are gone. When PID 1 of a pid
   * namespace exits the kernel kills the rest, which takes a moment: rmdir says EBUSY until then.
   */
  async remove(): Promise<void> {
    this.closeFds();
    // Started first: cgroup.kill takes every process that is left (at once, synchronously),
    // which the v1 rmdirs below would wait for; awaited last, so that without stragglers
    // every directory is gone before the first await.
    const v2 = this.v2?.remove();
    v2?.catch(() => {}); // reported by the await below; handled here should a v1 rmdir throw first
    for (const dir of this.dirs) {
      for (let attempt = 0; ; attempt++) {
        try {
          fs.rmdirSync(dir);
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || attempt >= 200) throw fromSystemError(`remove cgroup ${dir}`, e);
          await new Promise((r) => setTimeout(r, attempt < 10 ? 1 : 10));
        }
      }
    }
    await v2;
  }
}

/** `<supervisor's cgroup>/nsbox` in every hierarchy this host has, v1 and v2. */
function nsboxParents(): string[] {
  const all = [...hostHierarchies().values()];
  const u = hostUnified();
  if (u) all.push(u);
  return [...new Set(all.map((h) => path.join(h.mount, h.path, PARENT)))];
}

/**
 * Thaws a freezer cgroup a commit made, puts its processes back in the cgroup above it (where
 * they were born: nsbox's spawner threads stay in the supervisor's freezer cgroup), removes it.
 */
function thawAndRemove(dir: string): void {
  const home = path.dirname(path.dirname(dir));
  try {
    fs.writeFileSync(path.join(dir, 'freezer.state'), 'THAWED');
    for (const p of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        fs.writeFileSync(path.join(home, 'cgroup.procs'), p);
      } catch {
        // exited meanwhile
      }
    }
  } catch {
    // the container ended meanwhile, and took its processes with it
  }
  try {
    fs.rmdirSync(dir);
  } catch {
    // removed already, or a process still on its way out: prune takes it later
  }
}

/** Host pids of every process in the pid namespace `ns` (`pid:[INODE]`). */
function pidsInNamespace(ns: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readlinkSync(`/proc/${e}/ns/pid`) === ns) out.push(Number(e));
    } catch {
      // gone, or a kernel thread
    }
  }
  return out;
}

/**
 * Freezes every process of the container whose PID 1 is `pid` and whose pid namespace is
 * `ns`, so that a commit reads layers nothing changes. The freezer cgroup is made now, at
 * commit time, and the processes moved into it: a move waits for an RCU grace period (about
 * 7 ms here), a price a commit can pay and a start should not. Processes forked meanwhile are
 * caught by going round until none is left outside; a frozen cgroup freezes what joins it.
 * Returns the function that thaws the container and puts its processes back, or null where
 * there is no v1 freezer or nothing runs.
 */
export async function freezeContainer(pid: number, ns: string): Promise<(() => void) | null> {
  const h = hostHierarchies().get('freezer');
  if (!h) return null;
  const home = path.join(h.mount, h.path);
  // Named after the committing process: if it dies mid-commit, pruneStaleCgroups thaws.
  const dir = path.join(home, PARENT, `freeze-${process.pid}-${ownStartTime()}-${pid}`);
  try {
    fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o755 });
    for (let i = 0; ; i++) {
      try {
        fs.mkdirSync(dir, { mode: 0o755 });
        break;
      } catch (e) {
        // This process's own freezer of an earlier commit of this container, whose rmdir met a
        // process still on its way out: thawed and removed now that it has gone.
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || i >= 100) throw e;
        thawAndRemove(dir);
        if (fs.existsSync(dir)) await new Promise((r) => setTimeout(r, 10));
      }
    }
  } catch (e) {
    if (notOurs(e)) return null;
    throw fromSystemError('freeze container', e);
  }
  // A worker terminated mid-commit runs no JS, not even 'exit' listeners: its environment's
  // teardown in the addon thaws and removes the freezer then (src-cc/binding/teardown.cc).
  const undo = native().undoAtTeardown('thaw', dir);
  // pid -> the freezer cgroup it was in, to put it back there.
  const moved = new Map<number, string>();
  const procs = path.join(dir, 'cgroup.procs');
  const state = path.join(dir, 'freezer.state');
  const gather = (): number => {
    let added = 0;
    for (const p of pidsInNamespace(ns)) {
      if (moved.has(p)) continue;
      try {
        const from =
          fs
            .readFileSync(`/proc/${p}/cgroup`, 'utf8')
            .split('\n')
            .find((l) => /^\d+:freezer:/.test(l))
            ?.split(':')[2] ?? h.path;
        fs.writeFileSync(procs, String(p));
        moved.set(p, path.join(h.mount, from));
        added++;
      } catch {
        // exited meanwhile
      }
    }
    return added;
  };
  const thaw = () => {
    thawAtExit.delete(thaw);
    try {
      fs.writeFileSync(state, 'THAWED');
      for (const [p, from] of moved) {
        try {
          fs.writeFileSync(path.join(from, 'cgroup.procs'), String(p));
        } catch {
          // exited meanwhile
        }
      }
    } catch {
      // the container ended meanwhile
    }
    thawAndRemove(dir); // whatever is left (forked after its parent was put back)
    // Last: a worker terminated in the middle of this (its 'exit' listeners run, and are cut
    // short) leaves the rest to the addon's teardown.
    native().keepAfterTeardown(undo);
  };
  holdThawAtExit(thaw);
  try {
    if (!moved.has(pid) && !pidsInNamespace(ns).includes(pid)) {
      thaw();
      return null;
    }
    gather();
    fs.writeFileSync(state, 'FROZEN');
    // Round until a pass finds no process outside (frozen ones fork no more).
    for (let round = 0; gather() > 0; round++) {
      if (round > 100) throw new NsboxError('EBUSY', 'freeze container: its processes multiply faster than they can be frozen');
    }
    for (let i = 0; fs.readFileSync(state, 'utf8').trim() !== 'FROZEN'; i++) {
      if (i > 400) throw new NsboxError('EBUSY', `freeze container: ${state} stays FREEZING`, { path: state });
      await new Promise((r) => setTimeout(r, 5));
    }
  } catch (e) {
    thaw();
    throw e instanceof NsboxError ? e : fromSystemError('freeze container', e);
  }
  return thaw;
}

/** The thaws of this process's commits under way: run at process.exit() (thawCommitsNow). */
const thawAtExit = new Set<() => void>();
let thawHooked = false;

function holdThawAtExit(thaw: () => void): void {
  thawAtExit.add(thaw);
  if (thawHooked) return;
  thawHooked = true;
  // First: a container SIGKILLed while frozen (the 'exit' listener's killAllSync, its
  // supervisor's end) dies only once thawed, and the process that froze it is the one to thaw.
  process.prependListener('exit', thawCommitsNow);
}

/**
 * Thaws (and removes the freezer cgroups of) the commits this process has under way, at once:
 * for process.exit() in the middle of one, before its containers are killed. Left frozen, the
 * container's processes stayed alive with their SIGKILL pending, the 'exit' listener waited its
 * whole budget for them, and only the next Runtime's first use thawed them.
 */
export function thawCommitsNow(): void {
  for (const thaw of [...thawAtExit]) {
    try {
      thaw();
    } catch {
      // never an exception out of an 'exit' listener; the next Runtime thaws what is left
    }
  }
}

/** A commit's freezer cgroup (freezeContainer): `freeze-<committer pid>-<its start time>-<container pid>`. */
const FREEZER_NAME = /^freeze-(\d+)-(\d+)-\d+$/;

/**
 * Thaws (and removes) the freezer cgroups of commits whose process died mid-commit: the
 * container stays frozen until then, and a SIGKILL it got meanwhile (its supervisor's death)
 * waits for the thaw. A Runtime's first use does it (one readdir), not only prune. Returns
 * the directories it removed.
 */
export function thawDeadCommits(): string[] {
  const h = hostHierarchies().get('freezer');
  if (!h) return [];
  const parent = path.join(h.mount, h.path, PARENT);
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return removed; // no commit ever froze a container here
  }
  for (const n of names) {
    const m = FREEZER_NAME.exec(n);
    if (!m || processAlive(Number(m[1]), m[2])) continue;
    const dir = path.join(parent, n);
    thawAndRemove(dir);
    if (!fs.existsSync(dir)) removed.push(dir);
  }
  return removed;
}

/**
 * Removes container cgroups left by supervisors that died (SIGKILL): those with no process
 * and older than a minute (a fresh empty one may be a start in progress), and the warm sets
 * of supervisors that are gone, at once. Returns their paths.
 */
export function pruneStaleCgroups(now = Date.now()): string[] {
  // NSBOX_CGROUP_V2_PARENT is someone else's cgroup: only nsbox's own names are looked at there.
  const removed: string[] = pruneGivenV2Parent(now, STALE_AFTER_MS);
  const dirs: string[] = [];
  for (const p of nsboxParents()) {
    try {
      for (const d of fs.readdirSync(p, { withFileTypes: true })) {
        if (d.isDirectory() && d.name !== STANDARD) dirs.push(path.join(p, d.name));
      }
    } catch {
      // not made yet
    }
  }
  for (const dir of dirs) {
    // A freezer a commit made (freezeContainer): its committer died with the container frozen.
    const freeze = FREEZER_NAME.exec(path.basename(dir));
    if (freeze) {
      if (processAlive(Number(freeze[1]), freeze[2])) continue;
      thawAndRemove(dir);
      if (!fs.existsSync(dir)) removed.push(dir);
      continue;
    }
    // A warm set (src/cgroup-pool.ts): no process ever joined it; its maker's alone to use.
    const warm = warmOwner(path.basename(dir));
    if (warm) {
      if (processAlive(warm[0], warm[1])) continue;
      try {
        fs.rmdirSync(dir);
        removed.push(dir);
      } catch {
        // taken and joined after all, or gone
      }
      continue;
    }
    try {
      if (now - fs.statSync(dir).mtimeMs < STALE_AFTER_MS) continue;
      if (fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').trim() !== '') continue;
      fs.rmdirSync(dir);
      removed.push(dir);
    } catch {
      // in use again, or gone: not stale
    }
  }
  return removed;
}

/** The directories a container's cgroups may have below this process's cgroup, in every hierarchy. */
export function containerCgroupDirs(id: string): string[] {
  if (!/^[0-9a-f]{12}$/.test(id)) return [];
  const given = givenV2Parent();
  const dirs = [...nsboxParents(), ...(given ? [given] : [])].map((p) => path.join(p, id));
  const devices = devicesParent();
  if (devices) dirs.push(path.join(devices, STANDARD, id));
  return dirs;
}

/** The file system types of cgroup v1 and cgroup v2 (statfs f_type). */
const CGROUP_SUPER_MAGIC = 0x27e0eb;
const CGROUP2_SUPER_MAGIC = 0x63677270;

/**
 * The cgroup directories a record names (`cgroups`: where its supervisor made them, maybe in
 * another cgroup than this process's), those that may be removed: absolute and normal, named
 * after the container, in a directory on a cgroup file system named by its real path (an rmdir there removes only an
 * empty cgroup).
 */
export function recordedCgroupDirs(id: string, recorded: readonly string[] | undefined): string[] {
  if (!recorded?.length || !/^[0-9a-f]{12}$/.test(id)) return [];
  return recorded.filter((d) => {
    if (!path.isAbsolute(d) || path.normalize(d) !== d || path.basename(d) !== id) return false;
    try {
      // Its own path, no link in it: a symlinked parent would take the rmdir to another
      // cgroup than the one its supervisor made (the paths recorded are mount points' below).
      if (fs.realpathSync(path.dirname(d)) !== path.dirname(d)) return false;
      const type = fs.statfsSync(path.dirname(d)).type;
      return type === CGROUP_SUPER_MAGIC || type === CGROUP2_SUPER_MAGIC;
    } catch {
      return false; // its parent is gone: nothing left there
    }
  });
}

/** Every place container `id`'s cgroups may be: this process's parents, and those its record names. */
function allCgroupDirs(id: string, recorded: readonly string[] | undefined): string[] {
  return [...new Set([...containerCgroupDirs(id), ...recordedCgroupDirs(id, recorded)])];
}

/**
 * The cgroups of a container that is known to be dead (its supervisor and its first process
 * are gone), removed now, without waiting: an rmdir removes only an empty cgroup. True when
 * none is left.
 */
export function removeDeadCgroups(id: string, recorded: readonly string[] | undefined): boolean {
  let all = true;
  for (const dir of allCgroupDirs(id, recorded)) {
    try {
      fs.rmdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') all = false;
    }
  }
  return all;
}

/** removeContainerCgroup off the event loop: rmdirs on the pool, waits as timers. */
export async function removeContainerCgroupAsync(id: string, waitMs = 3000, recorded?: readonly string[]): Promise<string[]> {
  if (!/^[0-9a-f]{12}$/.test(id)) return [];
  const removed: string[] = [];
  const deadline = Date.now() + waitMs;
  const dirs = allCgroupDirs(id, recorded);
  await Promise.all(
    dirs.map(async (dir) => {
      for (;;) {
        try {
          await fs.promises.rmdir(dir);
          removed.push(dir);
          return;
        } catch (e) {
          // ENOENT: not there
          if ((e as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() >= deadline) return;
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    }),
  );
  return removed;
}

/**
 * Removes one container's cgroup at once (every place it may be), when the container is known
 * to be dead: its supervisor died before removing it. Its last processes may still be on
 * their way out (the kernel kills a pid namespace's processes once its PID 1 is gone): rmdir
 * says EBUSY until then, retried for up to `waitMs`. What stays busy is left to
 * pruneStaleCgroups. `recorded`: the directories its record names (recordedCgroupDirs).
 * Returns what it removed.
 */
export function removeContainerCgroup(id: string, waitMs = 3000, recorded?: readonly string[]): string[] {
  if (!/^[0-9a-f]{12}$/.test(id)) return [];
  const removed: string[] = [];
  const deadline = Date.now() + waitMs;
  // Its own directory in every hierarchy (devices with `devices`, memory, pids, cpu, cpuset,
  // cpuacct and freezer for limits and commit), below this process's cgroup and wherever its
  // record says its supervisor made them.
  const dirs = allCgroupDirs(id, recorded);
  for (const dir of dirs) {
    for (;;) {
      try {
        fs.rmdirSync(dir);
        removed.push(dir);
        break;
      } catch (e) {
        // ENOENT: not there
        if ((e as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() >= deadline) break;
        // A few milliseconds, synchronously: removal is synchronous, and this is its last step.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      }
    }
  }
  return removed;
}
