/**
 * Each container's cgroup: made before clone, below the supervisor's own cgroup (so that
 * nsbox works inside a container or a systemd slice), joined by the container's first
 * process before anything else (PlanInput.cgroupProcs), removed when the container ends.
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
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError, fromSystemError } from './errors';
import type { DeviceNode } from './plan';

/** The parent's rules, in the order devices.list shows them. */
export const DEVICE_ALLOWLIST: readonly string[] = Object.freeze([
  'c *:* m', 'b *:* m',
  'c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', // null zero full random urandom
  'c 5:0 rwm', 'c 5:2 rwm', // tty, ptmx
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

/** `<supervisor's devices cgroup>/nsbox`, or undefined where there is no v1 devices controller. */
function devicesParent(): string | undefined {
  const h = hostHierarchies().get('devices');
  return h ? path.join(h.mount, h.path, PARENT) : undefined;
}

/** Deny all, then the allowlist and `extra` rules; checked by reading devices.list back. */
function writeDeviceRules(dir: string, extra: string[] = []): void {
  const want = [...DEVICE_ALLOWLIST, ...extra];
  const list = () => fs.readFileSync(path.join(dir, 'devices.list'), 'utf8').trim().split('\n');
  if (list().join('\n') === want.join('\n')) return;
  fs.writeFileSync(path.join(dir, 'devices.deny'), 'a');
  for (const rule of want) fs.writeFileSync(path.join(dir, 'devices.allow'), rule);
  const got = list();
  if (got.join('\n') !== want.join('\n')) {
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

export class ContainerCgroup {
  /** The cgroup directories made for this container. */
  readonly dirs: string[];
  /** Open cgroup.procs files (close-on-exec) for the child to join: PlanInput.cgroupProcs. */
  readonly procsFds: number[];

  private constructor(dirs: string[], fds: number[]) {
    this.dirs = dirs;
    this.procsFds = fds;
  }

  /**
   * The container's cgroups. `devices`: the nodes it may use beyond the allowlist, or 'all'
   * (privileged: no device cgroup at all). Null where this host gives nsbox no cgroup to
   * manage (no v1 devices controller, or one that is read-only for us).
   */
  static create(id: string, devices: DeviceNode[] | 'all'): ContainerCgroup | null {
    if (devices === 'all') return null;
    const parent = devicesParent();
    if (!parent) return null;
    let std: string;
    try {
      std = ensureStandardParent(parent);
    } catch (e) {
      if (notOurs(e)) return null;
      throw e instanceof NsboxError ? e : fromSystemError(`device cgroup ${parent}`, e);
    }
    const dir = path.join(devices.length ? parent : std, id);
    const made: string[] = [];
    let fd = -1;
    try {
      fs.mkdirSync(dir, { mode: 0o755 });
      made.push(dir);
      if (devices.length) writeDeviceRules(dir, devices.map((d) => `${d.type} ${d.major}:${d.minor} rwm`));
      // libuv opens with O_CLOEXEC: the container gets it only through the plan's step.
      fd = fs.openSync(path.join(dir, 'cgroup.procs'), fs.constants.O_WRONLY);
      return new ContainerCgroup(made, [fd]);
    } catch (e) {
      if (fd >= 0) fs.closeSync(fd);
      for (const d of made) fs.rmdirSync(d);
      throw fromSystemError(`container cgroup ${dir}`, e);
    }
  }

  /** After the start (failed or not): the child has joined, or will never. */
  closeFds(): void {
    for (const fd of this.procsFds.splice(0)) fs.closeSync(fd);
  }

  /**
   * Removes the directories once the container's processes are gone. When PID 1 of a pid
   * namespace exits the kernel kills the rest, which takes a moment: rmdir says EBUSY until then.
   */
  async remove(): Promise<void> {
    this.closeFds();
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
  }
}

/**
 * Removes container cgroups left by supervisors that died (SIGKILL): those with no process
 * and older than a minute (a fresh empty one may be a start in progress). Returns their paths.
 */
export function pruneStaleCgroups(now = Date.now()): string[] {
  const parent = devicesParent();
  if (!parent) return [];
  const removed: string[] = [];
  const dirs: string[] = [];
  for (const p of [parent, path.join(parent, STANDARD)]) {
    try {
      for (const d of fs.readdirSync(p, { withFileTypes: true })) {
        if (d.isDirectory() && d.name !== STANDARD) dirs.push(path.join(p, d.name));
      }
    } catch {
      // not made yet
    }
  }
  for (const dir of dirs) {
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

/**
 * Removes one container's cgroup at once (both places it may be), when the container is known
 * to be dead: its supervisor died before removing it. Its last processes may still be on
 * their way out (the kernel kills a pid namespace's processes once its PID 1 is gone): rmdir
 * says EBUSY until then, retried for up to `waitMs`. What stays busy is left to
 * pruneStaleCgroups. Returns what it removed.
 */
export function removeContainerCgroup(id: string, waitMs = 3000): string[] {
  const parent = devicesParent();
  if (!parent || !/^[0-9a-f]{12}$/.test(id)) return [];
  const removed: string[] = [];
  const deadline = Date.now() + waitMs;
  for (const dir of [path.join(parent, STANDARD, id), path.join(parent, id)]) {
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
