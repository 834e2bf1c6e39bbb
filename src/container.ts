/**
 * A running container's first process, as a Node object: its stdio as streams, its exit as a
 * promise, signals through its pidfd.
 */
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import type * as Net from 'node:net';
import { constants as osConstants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import type * as tty from 'node:tty';

import type { CopyInOptions, CopyOutOptions, CopyResult, CopySource } from './copy';
import { NsboxError, fromNative, invalid } from './errors';
import { native, type NativePlan, type NativeProcess } from './native';
import type { ImageInfo } from './image/store';
import { ContainerCgroup, homeDevicesTasks } from './cgroup';
import { parseDevice, type DeviceSpec } from './device';
import { newId } from './layout';
import { cgroupLimits, parseProcLimits, rlimitOptions, rlimitsFor, type Limits, type Ulimit } from './limits';
import { buildPlan, type PlanInput, type StdioMode } from './plan';
import { buildConfinement, checkOptions, type Confinement, type SecurityOptions } from './security';
import { execIn, notRunning, type ExecOptions, type ExecProcess } from './exec';
import { checkRootlessIds, rootlessCgroup, startUserNs } from './rootless';

export type Stdio = StdioMode | [StdioMode, StdioMode, StdioMode];

export interface ExitStatus {
  /** The command's exit code, or null when a signal ended it. */
  exitCode: number | null;
  /** The signal that ended it, or null. */
  signal: NodeJS.Signals | null;
  /** The kernel's OOM killer ended a process of the container (needs `limits.memory`). */
  oomKilled: boolean;
  /** `timeout` fired: the whole container was killed. */
  timedOut: boolean;
  /** The `signal` AbortSignal fired: the whole container was killed. */
  aborted: boolean;
  /** `limits.cpuTime` was used up: the whole container was killed. */
  cpuTimeExceeded: boolean;
  usage: Usage;
}

/** What a container used, read when it ended. */
export interface Usage {
  /** From the start until nsbox-init exited. */
  wallMs: number;
  /** CPU time of the command and every process nsbox-init reaped. */
  cpuUserMs: number;
  cpuSystemMs: number;
  /** The largest resident set of any one of those processes. */
  maxRssBytes: number;
  /** The container's peak memory (its memory cgroup: with `limits.memory`), else null. */
  memoryPeakBytes: number | null;
}

export interface ProcessOptions extends Omit<PlanInput, 'stdio' | 'tty' | 'security' | 'confine' | 'devices' | 'deviceNodesAllowed' | 'cgroupProcs' | 'initOptions' | 'bornIn' | 'cgroupFd'> {
  /**
   * Limits of the whole container (every process in it, through its cgroups): memory,
   * memorySwap, cpus, cpuset, cpuShares, pids, cpuTime; and per process: files, fileSize.
   */
  limits?: Limits;
  /** rlimits by name (nofile, nproc, core, ...): a number, or [soft, hard]. */
  ulimits?: Record<string, Ulimit>;
  /** Milliseconds of wall-clock time: then the whole container is killed (`timedOut`). */
  timeout?: number;
  /** Aborting it kills the whole container (`aborted`), as child_process's `signal` does. */
  signal?: AbortSignal;
  /**
   * Host device nodes the container may use (`'/dev/fuse'`, `'/dev/sda:/dev/disk'`): bound into
   * its /dev and allowed in its device cgroup. Nothing else opens a device node (every mount
   * it can write is nodev), unless `security.privileged`.
   */
  devices?: DeviceSpec[];
  /**
   * Capabilities, user, seccomp, masked paths. Default: docker's defaults (14 capabilities,
   * no_new_privs, the default seccomp filter, masked and read-only /proc and /sys paths).
   */
  security?: SecurityOptions;
  /** An already built confinement (buildConfinement's result); takes precedence over `security`. */
  confinement?: Confinement;
  stdio?: Stdio;
  /** A pseudo-terminal as the container's controlling terminal and stdio. */
  tty?: boolean | { cols?: number; rows?: number };
}

/** What a Runtime adds to a container it manages (see runtime.ts). */
export interface ManagedContainer {
  id: string;
  name: string | null;
  /** Runs once the process has exited and its streams have closed, before wait() resolves. */
  afterExit(status: ExitStatus): Promise<void> | void;
  commit(image: string, options?: CommitOptions): Promise<ImageInfo>;
  remove(options?: { force?: boolean }): Promise<void>;
  copyIn?(source: CopySource, dest: string, options?: CopyInOptions): Promise<CopyResult>;
  copyOut?(path: string, options?: CopyOutOptions): Promise<Readable>;
}

export interface CommitOptions {
  /** Also write the image as a tarball here. */
  output?: string;
}

/** The step a failure in the child's writing of its user namespace's id maps reports (common/report.h kUserNsPhase). */
const USERNS_PHASE = -3;

export const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(osConstants.signals).map(([name, num]) => [num, name as NodeJS.Signals]),
);

export function signalNumber(signal: NodeJS.Signals | number): number {
  if (typeof signal === 'number') {
    if (!Number.isInteger(signal) || signal < 0 || signal > 64) throw invalid(`signal: ${signal}: not a signal number`);
    return signal;
  }
  const n = (osConstants.signals as Record<string, number>)[signal];
  if (n === undefined) throw invalid(`signal: ${String(signal)}: unknown signal`);
  return n;
}

export function normaliseStdio(stdio: Stdio | undefined): [StdioMode, StdioMode, StdioMode] {
  if (stdio === undefined) return ['pipe', 'pipe', 'pipe'];
  const modes = typeof stdio === 'string' ? [stdio, stdio, stdio] : stdio;
  if (!Array.isArray(modes) || modes.length !== 3 || modes.some((m) => !['pipe', 'inherit', 'ignore'].includes(m))) {
    throw invalid(`stdio: ${JSON.stringify(stdio)}: 'pipe', 'inherit', 'ignore' or three of them`);
  }
  return modes as [StdioMode, StdioMode, StdioMode];
}

export function ttySize(t: ProcessOptions['tty']): { cols: number; rows: number } | undefined {
  if (!t) return undefined;
  const { cols = 80, rows = 24 } = t === true ? {} : t;
  for (const [k, v] of [['cols', cols], ['rows', rows]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 0xffff) throw invalid(`tty.${k}: ${v}: 1 to 65535`);
  }
  return { cols, rows };
}

/** The setup step named by a failure record, as the message will say it. */
export function describeFailure(plan: NativePlan, r: { step: number; detail?: number; code: string; syscall: string; errno: number; vanished?: number }): NsboxError {
  const details = { errno: r.errno, syscall: r.syscall } as const;
  if (r.vanished !== undefined) {
    const signal = r.vanished & 0x7f;
    const how = signal ? `was killed by ${SIGNAL_NAMES.get(signal) ?? `signal ${signal}`}` : `exited with ${(r.vanished >> 8) & 0xff}`;
    return new NsboxError('ECHILD', `start container: the setup process ${how} before it reported`, details);
  }
  if (r.step === USERNS_PHASE) {
    const file = ['setgroups', 'uid_map', 'gid_map'][r.detail ?? 0] ?? 'uid_map';
    return new NsboxError(r.code, `user namespace: ${r.syscall} /proc/self/${file}: ${r.code}`, { ...details, step: 'user namespace', path: `/proc/self/${file}`, hint: 'the kernel refused the one-id map of a rootless container (is /proc mounted with hidepid, or a security module in the way?)' });
  }
  if (r.step < 0 && plan.userns && r.syscall === 'clone' && (r.code === 'EPERM' || r.code === 'ENOSPC' || r.code === 'EUSERS' || r.code === 'EACCES')) {
    // The usual way rootless fails: the kernel does not let this user make a user namespace.
    const why = r.code === 'ENOSPC' || r.code === 'EUSERS' ? 'the limit on user namespaces is reached (or 0)' : 'unprivileged user namespaces are disabled here';
    return new NsboxError(r.code, `start container: clone: ${r.code}: rootless (uid ${process.geteuid?.()}) needs a user namespace, and ${why}`, {
      ...details, step: 'clone',
      hint: 'allow unprivileged user namespaces: sysctl user.max_user_namespaces=15000 (not 0), kernel.unprivileged_userns_clone=1 (Debian kernels), kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 23.10+, or an AppArmor profile for node allowing userns); in a container, its seccomp profile must allow CLONE_NEWUSER; or run as root',
    });
  }
  if (r.step < 0) {
    return new NsboxError(r.code, `start container: ${r.syscall}: ${r.code}`, details);
  }
  if (r.step >= plan.steps.length) {
    const program = plan.argv[0]!;
    if (r.syscall === 'execveat' && r.code === 'E2BIG') {
      // nsbox-init gets the command's arguments and environment to pass on: they did not fit.
      return new NsboxError(r.code, `exec ${program}: arguments and environment too big (E2BIG)`, { ...details, step: 'exec', path: program });
    }
    if (r.syscall !== 'execve') {
      return new NsboxError(r.code, `exec ${program}: ${r.syscall}: ${r.code}`, { ...details, step: 'exec', path: program });
    }
    const path = r.detail !== undefined && r.detail >= 0 ? plan.candidates[r.detail]! : program;
    const why = r.code === 'ENOENT'
      ? (program.includes('/') ? 'no such file' : `not found in PATH`)
      : r.code === 'EACCES' ? 'permission denied (a directory, or not executable)' : r.code;
    return new NsboxError(r.code, `exec ${path}: ${why} (${r.code})`, { ...details, step: 'exec', path });
  }
  const step = plan.steps[r.step]!;
  const path = step.target || step.source || '';
  const pathText = step.target ? `/${step.target.replace(/^\//, '')}` : step.source ?? '';
  const where = step.op === 'mountRootFs' || step.op === 'bindRoot' ? path : pathText;
  return new NsboxError(r.code, `${step.name}: ${r.syscall} ${where}: ${r.code}`, { ...details, step: step.name, path: where });
}

export class Container extends EventEmitter {
  /** The id a Runtime gave it; null for a container started on a bare rootfs. */
  readonly id: string | null;
  readonly name: string | null;
  readonly pid: number;
  /** Piped stdin, when asked for. */
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /** The pty master, with `tty: true`: read the terminal's output, write its input. */
  readonly terminal: tty.ReadStream | null;

  private readonly proc: NativeProcess;
  private readonly managed: ManagedContainer | undefined;
  private readonly ptyFd: number;
  private status: ExitStatus | null = null;
  private readonly exited: Promise<ExitStatus>;
  private readonly closed: Promise<ExitStatus>;
  /** A failure of the Runtime's bookkeeping after exit, reported by wait(). */
  private cleanupError: unknown;

  /**
   * Starts a container process on a root filesystem (`root`), without images or state:
   * the building block Runtime.run uses. Throws NsboxError when setup fails.
   */
  static start(options: ProcessOptions): Container {
    return Container.launch(options);
  }

  /** @internal Runtime's way in: the same start, with the bookkeeping hooks attached. */
  static launch(options: ProcessOptions, managed?: ManagedContainer): Container {
    const size = ttySize(options.tty);
    const { security, confinement: given, devices: deviceSpecs, limits, ulimits, timeout, signal, ...rest } = options;
    const { security: nativeSecurity, confine } = given ?? confinement(security);
    if (deviceSpecs !== undefined && !Array.isArray(deviceSpecs)) throw invalid('devices: must be an array');
    const devices = (deviceSpecs ?? []).map(parseDevice);
    const privileged = security?.privileged === true;
    const bounds = cgroupLimits(limits);
    const initOptions = initRlimits(limits, ulimits);
    const time = timeBounds(timeout, signal, bounds.cpuTimeNs);
    if (time.signal?.aborted) throw new NsboxError('ABORT_ERR', 'run: aborted before it started', { cause: time.signal.reason });
    const userns = startUserNs();
    if (userns) checkRootlessIds(nativeSecurity, userns);
    // Rootless: no device cgroup and no spawner thread moved into one (see src/rootless.ts).
    const cgroup = userns ? rootlessCgroup(managed?.id ?? newId(), bounds) : ContainerCgroup.forStart(managed?.id ?? newId(), privileged ? 'all' : devices, bounds);
    const bornIn = userns ? cgroup?.bornIn : cgroup?.bornIn ?? homeDevicesTasks();
    try {
      const plan = buildPlan({
        cgroupNamespace: hasCgroupNamespaces(), ...rest, ...(userns ? { userns } : {}),
        stdio: normaliseStdio(options.stdio), tty: size, security: nativeSecurity, confine,
        deviceNodesAllowed: privileged, devices, initOptions,
        ...(cgroup?.procsFds.length ? { cgroupProcs: cgroup.procsFds } : {}),
        ...(bornIn ? { bornIn } : {}),
        ...(cgroup?.cgroupFd !== undefined ? { cgroupFd: cgroup.cgroupFd } : {}),
      });
      return new Container(plan, managed, cgroup, time);
    } catch (e) {
      // Nothing joined it (the start failed and its processes have been reaped).
      cgroup?.closeFds();
      cgroup?.remove().catch(() => {});
      throw e;
    } finally {
      cgroup?.closeFds();
    }
  }

  protected constructor(plan: NativePlan, managed?: ManagedContainer, cgroup?: ContainerCgroup | null, time: TimeBounds = {}) {
    super();
    this.managed = managed;
    this.id = managed?.id ?? null;
    this.name = managed?.name ?? null;
    let resolveExit!: (s: ExitStatus) => void;
    this.exited = new Promise((resolve) => (resolveExit = resolve));
    const started = performance.now();
    const ended = { timedOut: false, aborted: false, cpuTimeExceeded: false };
    const r = native().spawn(plan, (code, sig, usage) => {
      this.status = {
        exitCode: code, signal: sig === null ? null : SIGNAL_NAMES.get(sig) ?? (`SIG${sig}` as NodeJS.Signals),
        oomKilled: false, ...ended,
        usage: {
          wallMs: performance.now() - started,
          cpuUserMs: (usage?.userUs ?? 0) / 1000, cpuSystemMs: (usage?.systemUs ?? 0) / 1000,
          maxRssBytes: (usage?.maxRssKiB ?? 0) * 1024, memoryPeakBytes: null,
        },
      };
      stopTimers();
      resolveExit(this.status);
    });
    if (!r.ok) throw describeFailure(plan, r);
    // Time bounds: the whole container goes (SIGKILL to nsbox-init ends its pid namespace).
    const end = (why: keyof typeof ended) => {
      if (this.status) return;
      ended[why] = true;
      this.proc.kill(9);
    };
    const timers: NodeJS.Timeout[] = [];
    const onAbort = () => end('aborted');
    if (time.timeoutMs !== undefined) timers.push(setTimeout(() => end('timedOut'), time.timeoutMs));
    time.signal?.addEventListener('abort', onAbort, { once: true });
    if (time.cpuTimeNs !== undefined && cgroup) {
      timers.push(setInterval(() => {
        const used = cgroup.cpuUsageNs();
        if (used !== undefined && used > time.cpuTimeNs!) end('cpuTimeExceeded');
      }, 50));
    }
    // Timers never keep Node alive on their own: the container's pidfd does while it runs.
    for (const t of timers) t.unref();
    const stopTimers = () => {
      for (const t of timers) clearTimeout(t);
      time.signal?.removeEventListener('abort', onAbort);
    };
    this.pid = r.pid;
    this.proc = r.process;
    this.ptyFd = r.pty;
    ({ stdin: this.stdin, stdout: this.stdout, stderr: this.stderr, terminal: this.terminal } = processStreams(r, (e) => this.emit('error', e)));
    this.closed = this.exited.then(async (status) => {
      // Nobody reads the pipe any more: close our end, as child_process does, or its fd
      // stays open for as long as the Container object lives.
      this.stdin?.destroy();
      this.emit('exit', status.exitCode, status.signal);
      await Promise.all([this.stdout, this.stderr, this.terminal].map(drain));
      try {
        if (cgroup) {
          const stats = cgroup.stats();
          status.oomKilled = stats.oomKilled;
          if (stats.memoryPeakBytes !== undefined) status.usage.memoryPeakBytes = stats.memoryPeakBytes;
          // cgroup v2's cpu.stat counts every process, also those nsbox-init never reaped.
          if (stats.cpuUserMs !== undefined) status.usage.cpuUserMs = stats.cpuUserMs;
          if (stats.cpuSystemMs !== undefined) status.usage.cpuSystemMs = stats.cpuSystemMs;
          await cgroup.remove();
        }
        await this.managed?.afterExit(status);
      } catch (e) {
        // Kept for wait() rather than rejected here: nobody may be waiting, and an unhandled
        // rejection would take the whole supervisor down.
        this.cleanupError = e;
      }
      this.emit('close', status.exitCode, status.signal);
      return status;
    });
  }

  /** The exit status, once the process has exited and its output streams have ended. */
  wait(): Promise<ExitStatus> {
    return this.closed.then((status) => {
      if (this.cleanupError !== undefined) throw this.cleanupError;
      return status;
    });
  }

  get running(): boolean {
    return this.status === null;
  }

  get exitStatus(): ExitStatus | null {
    return this.status;
  }

  /** Sends a signal through the pidfd. False when the process has already exited. */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    const err = this.proc.kill(signalNumber(signal));
    if (err === null) return true;
    if (err.code === 'ESRCH') return false;
    throw fromNative(`kill ${this.pid}`, err);
  }

  /**
   * Stops the container as docker does: SIGTERM (nsbox-init passes it to the command), then,
   * if it is still running after `timeout` ms (default 10 s), SIGKILL of the whole container.
   * Resolves to its exit status.
   */
  async stop(options: { timeout?: number; signal?: NodeJS.Signals | number } = {}): Promise<ExitStatus> {
    const timeout = options.timeout ?? 10_000;
    if (typeof timeout !== 'number' || !(timeout >= 0)) throw invalid('stop: timeout: expected milliseconds');
    if (this.running) {
      this.kill(options.signal ?? 'SIGTERM');
      const timer = setTimeout(() => this.running && this.kill('SIGKILL'), timeout);
      try {
        await this.exited;
      } finally {
        clearTimeout(timer);
      }
    }
    return this.wait();
  }

  /** Sets the terminal size of a `tty` container; does nothing once its terminal has closed. */
  resize(cols: number, rows: number): void {
    if (this.ptyFd < 0) throw invalid('resize: this container has no terminal');
    const size = ttySize({ cols, rows })!;
    // Once the terminal stream has closed, its fd number may already belong to another file:
    // there is no terminal left to resize.
    if (this.terminal!.destroyed) return;
    const err = native().resizePty(this.ptyFd, size.cols, size.rows);
    if (err) throw fromNative('resize terminal', err);
  }

  /**
   * Runs another command in this container while it runs (`docker exec`): in all its
   * namespaces, its root and cgroups, with its capabilities, user, no_new_privs, seccomp
   * filter and rlimits; its environment plus `env`. Throws NOT_RUNNING once it has exited.
   */
  exec(options: ExecOptions): ExecProcess {
    const label = this.name ?? this.id ?? String(this.pid);
    if (!this.running) throw notRunning(label, 'has exited');
    // Our own unreaped child: its pid cannot be reused, no record needed to prove it.
    return execIn({ pid: this.pid, label }, options);
  }

  /** Makes a new image of this container's root (image, writes, deletions; no volumes). */
  commit(image: string, options?: CommitOptions): Promise<ImageInfo> {
    if (!this.managed) return Promise.reject(invalid('commit: only containers of a Runtime have layers to commit'));
    return this.managed.commit(image, options);
  }

  /**
   * Copies a tar stream (extracted into the directory `dest`) or a host path (docker cp's
   * rules) into the container; see Runtime.copyIn.
   */
  copyIn(source: CopySource, dest: string, options?: CopyInOptions): Promise<CopyResult> {
    if (!this.managed?.copyIn) return Promise.reject(invalid('copyIn: only containers of a Runtime can be copied to'));
    return this.managed.copyIn(source, dest, options);
  }

  /** A tar stream of a path in the container, links as links; see Runtime.copyOut. */
  copyOut(path: string, options?: CopyOutOptions): Promise<Readable> {
    if (!this.managed?.copyOut) return Promise.reject(invalid('copyOut: only containers of a Runtime can be copied from'));
    return this.managed.copyOut(path, options);
  }

  /**
   * Removes the container: its write layer and state. A running container is refused unless
   * `force`, which kills it first. On a bare-rootfs container it only stops the process.
   */
  async remove(options: { force?: boolean } = {}): Promise<void> {
    if (this.managed) return this.managed.remove(options);
    if (this.running) {
      if (!options.force) throw new NsboxError('IN_USE', `container ${this.pid} is running (use force to kill it)`);
      this.kill('SIGKILL');
    }
    await this.wait();
  }

  /** `await using c = await rt.run(...)`: killed if still running, then removed. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.remove({ force: true });
  }

  /** Lets Node exit while the container runs (it still dies with this process). */
  unref(): this {
    this.proc.unref();
    return this;
  }

  ref(): this {
    this.proc.ref();
    return this;
  }
}

interface TimeBounds {
  timeoutMs?: number;
  signal?: AbortSignal;
  cpuTimeNs?: number;
}

function timeBounds(timeout: unknown, signal: unknown, cpuTimeNs: number | undefined): TimeBounds {
  const out: TimeBounds = {};
  if (timeout !== undefined) {
    if (typeof timeout !== 'number' || !(timeout > 0) || timeout > 2 ** 31 - 1) throw invalid('timeout: expected milliseconds, more than 0');
    out.timeoutMs = timeout;
  }
  if (signal !== undefined) {
    if (!(signal instanceof AbortSignal)) throw invalid('signal: expected an AbortSignal');
    out.signal = signal;
  }
  if (cpuTimeNs !== undefined) out.cpuTimeNs = cpuTimeNs;
  return out;
}

let defaultRlimits: string[] | undefined;
/** nsbox-init's rlimit options; the usual case (no limits of its own) is made once. */
export function initRlimits(limits: Limits | undefined, ulimits: Record<string, Ulimit> | undefined): string[] {
  const usual = limits?.files === undefined && limits?.fileSize === undefined && ulimits === undefined;
  if (usual && defaultRlimits) return defaultRlimits;
  const options = rlimitOptions(rlimitsFor(limits, ulimits, supervisorHardLimits()));
  if (usual) defaultRlimits = options;
  return options;
}

let hardLimits: Record<string, number> | undefined;
/** This process's hard rlimits, where it cannot raise them (no CAP_SYS_RESOURCE); read once. */
function supervisorHardLimits(): Record<string, number> {
  if (hardLimits) return hardLimits;
  const status = readFileSync('/proc/self/status', 'utf8');
  const eff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  const canRaise = eff !== undefined && (BigInt(`0x${eff}`) >> 24n) & 1n; // CAP_SYS_RESOURCE
  hardLimits = canRaise ? {} : parseProcLimits(readFileSync('/proc/self/limits', 'utf8'));
  return hardLimits;
}

let cgroupNamespaces: boolean | undefined;
/** A new cgroup namespace where the kernel has them (4.6 and later); asked once. */
export function hasCgroupNamespaces(): boolean {
  cgroupNamespaces ??= existsSync('/proc/self/ns/cgroup');
  return cgroupNamespaces;
}

/**
 * The seccomp program and steps for a set of options are the same every time: built once.
 * The plan only reads them, so every container with the same options shares them.
 */
const confinements = new Map<string, Confinement>();
export function confinement(options: SecurityOptions | undefined): Confinement {
  // Checked before the cache: a wrong value that serialises like a right one (a Boolean
  // object, a toJSON) must be refused, not served the right one's confinement.
  checkOptions(options ?? {});
  const key = JSON.stringify(options ?? {});
  let c = confinements.get(key);
  if (!c) {
    c = buildConfinement(options ?? {});
    if (confinements.size > 64) confinements.clear();
    confinements.set(key, c);
  }
  return c;
}

/**
 * The streams over a started process's stdio fds (a container's or an exec's), with the
 * errors that are its normal end taken out: EPIPE on stdin (the process exited before reading
 * it all; child_process ignores that too, the exit status says what happened) and EIO on the
 * pty master (the last process holding the terminal is gone). Other errors go to `onError`.
 */
export function processStreams(
  r: { stdin: number; stdout: number; stderr: number; pty: number },
  onError: (e: Error) => void,
): { stdin: Net.Socket | null; stdout: Net.Socket | null; stderr: Net.Socket | null; terminal: tty.ReadStream | null } {
  const stdin = r.stdin >= 0 ? pipeSocket(r.stdin, 'write') : null;
  const terminal = r.pty >= 0 ? ptyStream(r.pty) : null;
  stdin?.on('error', () => {});
  terminal?.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EIO') onError(e);
  });
  return {
    stdin,
    stdout: r.stdout >= 0 ? pipeSocket(r.stdout, 'read') : null,
    stderr: r.stderr >= 0 ? pipeSocket(r.stderr, 'read') : null,
    terminal,
  };
}

/**
 * A stream over one end of a stdio pipe. node:net is loaded on the first piped start only:
 * a CLI run with inherited stdio never needs it (~2.5 ms of every CLI start otherwise).
 */
export function pipeSocket(fd: number, direction: 'read' | 'write'): Net.Socket {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Socket } = require('node:net') as typeof Net;
  return new Socket({ fd, readable: direction === 'read', writable: direction === 'write' });
}

/** A stream over the pty's controlling side; node:tty (which loads node:net) only when used. */
export function ptyStream(fd: number): tty.ReadStream {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return new (require('node:tty') as typeof tty).ReadStream(fd);
}

/**
 * Resolves when a stream has closed. As child_process does, output nobody reads is let flow
 * (and dropped) once the process has exited, so waiting never hangs on an unread pipe.
 */
export function drain(stream: Readable | null): Promise<void> {
  if (!stream || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once('close', () => resolve());
    if (stream.readableFlowing === null && stream.listenerCount('data') === 0 && stream.listenerCount('readable') === 0) {
      stream.resume();
    }
  });
}
