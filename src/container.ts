/**
 * A running container's first process, as a Node object: its stdio as streams, its exit as a
 * promise, signals through its pidfd.
 */
import { EventEmitter } from 'node:events';
import { closeSync, existsSync, readFileSync, rmdirSync } from 'node:fs';
import type * as Net from 'node:net';
import { constants as osConstants } from 'node:os';
import type { Readable } from 'node:stream';
import type * as tty from 'node:tty';

import type { CopyInOptions, CopyOutOptions, CopyResult, CopySource } from './copy';
import { NsboxError, fromNative, invalid, errnoCode } from './errors';
import { native, type NativeEnded, type NativePlan, type NativeProcess, type NativeUsage, type SpawnResult } from './native';
import type { ImageInfo } from './image/store';
import { ContainerCgroup, homeDevicesTasks, setupCpuCgroup, thawCommitsNow } from './cgroup';
import { parseDevice, type DeviceSpec } from './device';
import { newId } from './layout';
import { cgroupLimits, parseProcLimits, rlimitOptions, rlimitsFor, type CgroupLimits, type Limits, type Ulimit } from './limits';
import { buildPlan, tmpfsMountsCheck, type BindMount, type RootSource, type TmpfsMount } from './plan';
import { buildConfinement, checkOptions, type Confinement, type SecurityOptions } from './security';
import { execIn, notRunning, type ExecOptions, type ExecProcess } from './exec';
import { normaliseStdio, type PlanStdio, type ProcessEvents, type ProcessStreams, type Stdio, type StreamsOf, type TerminalSize } from './stdio';
import {
  arrayOf,
  boolean,
  checkObject,
  expected,
  integer,
  isObject,
  oneOf,
  optional,
  pathString,
  shape,
  string,
  union,
  type Check,
  type Spec,
} from './validate';
import { checkRootlessIds, isRootless, needsCgroup, rootlessCgroup, startUserNs } from './rootless';
import { externalUserNs, type IdRange } from './userns';
import { MAP_HELPER_FAILED, chooseIdMap, helperError, type SubidMap } from './subid';

/**
 * Milliseconds on the monotonic clock, for a container's wall time. Not the global
 * `performance`: Node 20 loads perf_hooks and its timing modules on its first use, about
 * 2 ms of a CLI run's first start (bench/ANALYSIS.md).
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export type { ProcessEvents, ProcessStreams, Stdio, StdioEntry, StdioMode, StreamsOf, TerminalSize } from './stdio';

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
  /** What it used: time, CPU, memory. */
  usage: Usage;
}

/** What a container used, read when it ended. */
export interface Usage {
  /** From the start until nsbox-init exited. */
  wallMs: number;
  /** User-mode CPU time of the command and every process nsbox-init reaped. */
  cpuUserMs: number;
  /** CPU time in the kernel on their behalf, as `cpuUserMs`. */
  cpuSystemMs: number;
  /** The largest resident set of any one of those processes. */
  maxRssBytes: number;
  /** The container's peak memory (its memory cgroup: with `limits.memory`), else null. */
  memoryPeakBytes: number | null;
}

/** Container.start's options: a container on a root filesystem of the caller's, without images or state. */
export interface ProcessOptions {
  /** The root filesystem: a directory bound as it is, or overlay (or aufs) layers mounted as the root. */
  root: RootSource;
  /** The program and its arguments; the program is looked up in the PATH of `env`. */
  command: string[];
  /** The environment, over the defaults (PATH, HOSTNAME, HOME, TERM with `tty`); nothing from the host's. */
  env?: Record<string, string> | undefined;
  /** Its hostname (UTS namespace); default 'nsbox'. */
  hostname?: string | undefined;
  /** Working directory inside the container; default /. */
  cwd?: string | undefined;
  /** 'none' (default): a network namespace with only lo; 'host': the host's network. */
  network?: 'none' | 'host' | undefined;
  /** Host paths bound into the container (volumes), parents before children. */
  mounts?: BindMount[] | undefined;
  /** tmpfs mounts of the container's own, in its memory (charged to `limits.memory`). */
  tmpfs?: TmpfsMount[] | undefined;
  /**
   * Limits of the whole container (every process in it, through its cgroups): memory,
   * memorySwap, cpus, cpuset, cpuShares, pids, cpuTime; and per process: files, fileSize.
   */
  limits?: Limits | undefined;
  /** rlimits by name (nofile, nproc, core, ...): a number, or [soft, hard]. */
  ulimits?: Record<string, Ulimit> | undefined;
  /** Milliseconds of wall-clock time: then the whole container is killed (`timedOut`). */
  timeout?: number | undefined;
  /** Aborting it kills the whole container (`aborted`), as child_process's `signal` does. */
  signal?: AbortSignal | undefined;
  /**
   * Host device nodes the container may use (`'/dev/fuse'`, `'/dev/sda:/dev/disk'`): bound into
   * its /dev and allowed in its device cgroup. Nothing else opens a device node (every mount
   * it can write is nodev), unless `security.privileged`.
   */
  devices?: DeviceSpec[] | undefined;
  /**
   * Capabilities, user, seccomp, masked paths. Default: docker's defaults (14 capabilities,
   * no_new_privs, the default seccomp filter, masked and read-only /proc and /sys paths).
   */
  security?: SecurityOptions | undefined;
  /**
   * fds 0, 1, 2 of the command: `'pipe'` (default) gives `stdin`, `stdout`, `stderr` streams;
   * `'inherit'` this process's; `'ignore'` /dev/null; per fd also an fd number or a stream
   * with one, as child_process.spawn takes them.
   */
  stdio?: Stdio | undefined;
  /** A pseudo-terminal as the container's controlling terminal and stdio. */
  tty?: boolean | TerminalSize | undefined;
}

export interface ContainerStopOptions {
  /** Milliseconds from the first signal to SIGKILL of the whole container; default 10 000. */
  timeout?: number | undefined;
  /** The first signal; default SIGTERM (nsbox-init passes it to the command). */
  signal?: NodeJS.Signals | number | undefined;
}

export interface RemoveOptions {
  /** Kill it first when it runs (else a running container is refused: IN_USE). */
  force?: boolean | undefined;
}

const STOP_OPTIONS: Spec<ContainerStopOptions> = {
  timeout: optional(integer(0, 2 ** 31 - 1)),
  signal: optional(
    union<NodeJS.Signals | number>('a signal name or number', [
      [(v) => typeof v === 'string', string as Check<NodeJS.Signals>],
      [(v) => typeof v === 'number', integer(0, 64)],
    ]),
  ),
};
const REMOVE_OPTIONS: Spec<RemoveOptions> = { force: optional(boolean) };

/** @internal What Runtime.run and the detached start add to ProcessOptions. */
export interface LaunchOptions extends ProcessOptions {
  /** An already built confinement (confinement()'s result); takes precedence over `security`. */
  confinement?: Confinement | undefined;
  /** Files nsbox wrote for the container (/etc/hosts, ...), bound over the root's own. */
  etcFiles?: Array<{ source: string; target: string }> | undefined;
  /** Root's `userns: 'auto'`: the host ids its user namespace maps (src/userns.ts). */
  idRange?: IdRange | undefined;
  /**
   * Rootless: the subordinate range its user namespace maps (src/subid.ts), or 'single' for
   * the one-id map; absent: the range when the user has one (NSBOX_ID_MAP may say otherwise).
   */
  idMap?: SubidMap | 'single' | undefined;
}

/** Checked by its own code later: here only its presence among the known keys. */
const given =
  <T>(): Check<T> =>
  (v) =>
    v as T;
const PATHS = arrayOf(pathString, { min: 1 });
const ROOT_TYPES = ['bind', 'overlay', 'aufs'] as const;
const ROOT = ((v: unknown, name: string): RootSource => {
  const type = isObject(v) ? oneOf(ROOT_TYPES)(v.type, `${name}.type`) : oneOf(ROOT_TYPES)(v, name);
  switch (type) {
    case 'bind':
      return checkObject<RootSource>({ type: given(), path: pathString, readonly: optional(boolean) } as Spec<RootSource>, v, name);
    case 'overlay':
      return checkObject<RootSource>(
        {
          type: given(),
          lower: PATHS,
          upper: pathString,
          work: pathString,
          target: pathString,
          volatile: optional(boolean),
          writeLayer: optional(given()),
        } as Spec<RootSource>,
        v,
        name,
      );
    case 'aufs':
      return checkObject<RootSource>({ type: given(), lower: PATHS, upper: pathString, target: pathString } as Spec<RootSource>, v, name);
  }
}) as Check<RootSource>;

/**
 * Container.start's options, checked at run time: an unknown key (a typo such as `timeOut`)
 * is refused, naming the nearest known one. What start's own code checks in detail (the
 * command, env, limits, security, ...) is only let through here.
 */
const PROCESS_OPTIONS: Spec<ProcessOptions> = {
  root: ROOT,
  command: given(),
  env: given(),
  hostname: optional(string),
  cwd: optional(string),
  network: given(),
  mounts: optional(
    arrayOf(
      shape<BindMount>({
        source: pathString,
        target: string,
        readonly: optional(boolean) as Check<boolean>,
        file: optional(boolean),
        fd: (v, name) => (v === undefined ? undefined : expected(name, 'nothing (set by a Runtime only)', v)),
      }),
    ),
  ),
  tmpfs: tmpfsMountsCheck,
  limits: given(),
  ulimits: given(),
  timeout: given(),
  signal: given(),
  devices: given(),
  security: given(),
  stdio: given(),
  tty: (v, name) => (isObject(v) ? shape<TerminalSize>({ cols: given(), rows: given() })(v, name) : (v as boolean | undefined)),
};

/**
 * Fork-style clone instead of CLONE_VM | CLONE_VFORK, for the benchmark that compares them
 * (bench/run.mjs, growth): $NSBOX_BENCH_FORK_STYLE=1 when this module loads. No option of
 * the API: it only makes starts slower.
 */
const FORK_STYLE = process.env.NSBOX_BENCH_FORK_STYLE === '1';

/** What a Runtime adds to a container it manages (see runtime.ts). */
export interface ManagedContainer {
  id: string;
  name: string | null;
  /** Runs once the process has exited and its streams have closed, before wait() resolves. */
  afterExit(status: ExitStatus): Promise<void> | void;
  /**
   * The 'exit' event instead (process.exit(), or the end of the script with the container
   * unref'd): synchronous, no later turn of the loop comes. `clean`: the container was reaped
   * and its cgroups removed; `deadline` (Date.now() time): what is left to do after it stays
   * for the next Runtime.
   */
  endedAtExit?(status: ExitStatus, clean: boolean, deadline: number): void;
  commit(image: string, options?: CommitOptions): Promise<ImageInfo>;
  remove(options?: RemoveOptions): Promise<void>;
  copyIn?(source: CopySource, dest: string, options?: CopyInOptions): Promise<CopyResult>;
  copyOut?(path: string, options?: CopyOutOptions): Promise<Readable>;
}

export interface CommitOptions {
  /** Also write the image as a tarball here. */
  output?: string | undefined;
}

/** The step a failure in the child's writing of its user namespace's id maps reports (common/report.h kUserNsPhase). */
const USERNS_PHASE = -3;

export const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(Object.entries(osConstants.signals).map(([name, num]) => [num, name as NodeJS.Signals]));

export function signalNumber(signal: NodeJS.Signals | number): number {
  if (typeof signal === 'number') {
    if (!Number.isInteger(signal) || signal < 0 || signal > 64) throw invalid(`signal: ${signal}: not a signal number`);
    return signal;
  }
  const n = (osConstants.signals as Record<string, number>)[signal];
  if (n === undefined) throw invalid(`signal: ${String(signal)}: unknown signal`);
  return n;
}

export function ttySize(t: boolean | TerminalSize | undefined): { cols: number; rows: number } | undefined {
  if (!t) return undefined;
  const { cols = 80, rows = 24 } = t === true ? {} : t;
  for (const [k, v] of [
    ['cols', cols],
    ['rows', rows],
  ] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 0xffff) throw invalid(`tty.${k}: ${v}: 1 to 65535`);
  }
  return { cols, rows };
}

/** The setup step named by a failure record, as the message will say it. */
export function describeFailure(
  plan: NativePlan,
  r: { step: number; detail?: number; code: string; syscall: string; errno: number; vanished?: number },
): NsboxError {
  const details = { errno: r.errno, syscall: r.syscall } as const;
  if (r.vanished !== undefined) {
    const signal = r.vanished & 0x7f;
    const how = signal ? `was killed by ${SIGNAL_NAMES.get(signal) ?? `signal ${signal}`}` : `exited with ${(r.vanished >> 8) & 0xff}`;
    return new NsboxError('ECHILD', `start container: the setup process ${how} before it reported`, details);
  }
  const helper = plan.userns?.mapHelper;
  if (r.step < 0 && helper && (r.syscall === 'newuidmap' || r.syscall === 'newgidmap')) {
    // Rootless with a range (core/subid.h): the setuid helper refused, or could not be run.
    const args = r.syscall === 'newuidmap' ? helper.uidArgs : helper.gidArgs;
    if (r.errno >= MAP_HELPER_FAILED) {
      const [, uid, , , start, count] = args.map(Number);
      const gid = Number(helper.gidArgs[1]);
      const subgid = Number(helper.gidArgs[4]);
      return helperError(r.syscall, r.errno - MAP_HELPER_FAILED, { uid: uid!, gid, subuid: start!, subgid, count: count! });
    }
    return new NsboxError(errnoCode(r.code), `start container: run ${r.syscall}: ${r.code}`, { ...details, step: 'user namespace' });
  }
  if (r.step === USERNS_PHASE && plan.userns?.external) {
    // Root's userns 'auto' (core/child.cc wait_for_userns): the child's side of the handover.
    const what =
      ['', '', '', 'receive the maps and host fds', 'become root of its user namespace', 'make / private', 'mount an idmapped image layer', 'place a host fd'][
        r.detail ?? 0
      ] ?? 'user namespace';
    return new NsboxError(errnoCode(r.code), `user namespace (${helper ? 'subuid' : 'auto'}): ${what}: ${r.syscall}: ${r.code}`, {
      ...details,
      step: 'user namespace',
    });
  }
  if (r.step < 0 && plan.userns?.external && r.syscall !== 'clone') {
    // The parent's side (core/spawn.cc give_userns): maps, the host paths, the idmapped layer.
    return new NsboxError(errnoCode(r.code), `start container: user namespace (${helper ? 'subuid' : 'auto'}): ${r.syscall}: ${r.code}`, {
      ...details,
      step: 'user namespace',
      hint: "writing the id maps, opening the host paths in the container's mount namespace, or idmapping the image layer (its filesystem must support idmapped mounts)",
    });
  }
  if (r.step === USERNS_PHASE) {
    const file = ['setgroups', 'uid_map', 'gid_map'][r.detail ?? 0] ?? 'uid_map';
    return new NsboxError(errnoCode(r.code), `user namespace: ${r.syscall} /proc/self/${file}: ${r.code}`, {
      ...details,
      step: 'user namespace',
      path: `/proc/self/${file}`,
      hint: 'the kernel refused the one-id map of a rootless container (is /proc mounted with hidepid, or a security module in the way?)',
    });
  }
  if (
    r.step < 0 &&
    plan.userns &&
    (!plan.userns.external || plan.userns.mapHelper) &&
    r.syscall === 'clone' &&
    (r.code === 'EPERM' || r.code === 'ENOSPC' || r.code === 'EUSERS' || r.code === 'EACCES')
  ) {
    // The usual way rootless fails: the kernel does not let this user make a user namespace.
    const why =
      r.code === 'ENOSPC' || r.code === 'EUSERS' ? 'the limit on user namespaces is reached (or 0)' : 'unprivileged user namespaces are disabled here';
    return new NsboxError(errnoCode(r.code), `start container: clone: ${r.code}: rootless (uid ${process.geteuid?.()}) needs a user namespace, and ${why}`, {
      ...details,
      step: 'clone',
      hint: 'allow unprivileged user namespaces: sysctl user.max_user_namespaces=15000 (not 0), kernel.unprivileged_userns_clone=1 (Debian kernels), kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 23.10+, or an AppArmor profile for node allowing userns); in a container, its seccomp profile must allow CLONE_NEWUSER; or run as root',
    });
  }
  if (r.step < 0) {
    return new NsboxError(errnoCode(r.code), `start container: ${r.syscall}: ${r.code}`, details);
  }
  if (r.step >= plan.steps.length) {
    const program = plan.argv[0]!;
    if (r.syscall === 'execveat' && r.code === 'E2BIG') {
      // nsbox-init gets the command's arguments and environment to pass on: they did not fit.
      return new NsboxError(r.code, `exec ${program}: arguments and environment too big (E2BIG)`, { ...details, step: 'exec', path: program });
    }
    if (r.syscall !== 'execve') {
      return new NsboxError(errnoCode(r.code), `exec ${program}: ${r.syscall}: ${r.code}`, { ...details, step: 'exec', path: program });
    }
    const path = r.detail !== undefined && r.detail >= 0 ? plan.candidates[r.detail]! : program;
    const why =
      r.code === 'ENOENT'
        ? program.includes('/')
          ? 'no such file'
          : `not found in PATH`
        : r.code === 'EACCES'
          ? 'permission denied (a directory, or not executable)'
          : r.code;
    return new NsboxError(errnoCode(r.code), `exec ${path}: ${why} (${r.code})`, { ...details, step: 'exec', path });
  }
  const step = plan.steps[r.step]!;
  const path = step.target || step.source || '';
  const pathText = step.target ? `/${step.target.replace(/^\//, '')}` : (step.source ?? '');
  const where = step.op === 'mountRootFs' || step.op === 'bindRoot' ? path : pathText;
  return new NsboxError(errnoCode(r.code), `${step.name}: ${r.syscall} ${where}: ${r.code}`, { ...details, step: step.name, path: where });
}

/**
 * A started container. `S` says which of its streams exist, from the options it was started
 * with (see StreamsOf): `stdio: 'pipe'` (the default) makes `stdin`, `stdout` and `stderr`
 * non-null, `tty: true` makes `terminal` non-null. Events: `exit` and `close` (exit code,
 * signal), `error`.
 */
export class Container<S extends ProcessStreams = ProcessStreams> extends EventEmitter<ProcessEvents> {
  /** The id a Runtime gave it; null for a container started on a bare rootfs. */
  readonly id: string | null;
  /** The name it was run with, or null. */
  readonly name: string | null;
  /** Its nsbox-init's pid, in this process's pid namespace. */
  readonly pid: number;
  /** Its stdin, when piped: write to it, end() it for EOF. */
  readonly stdin: S['stdin'];
  /** Its stdout, when piped. */
  readonly stdout: S['stdout'];
  /** Its stderr, when piped. */
  readonly stderr: S['stderr'];
  /** The pty master, with `tty: true`: read the terminal's output, write its input. */
  readonly terminal: S['terminal'];

  private readonly proc: NativeProcess;
  private readonly managed: ManagedContainer | undefined;
  /** Its cgroups (null: none of its own). */
  private readonly cgroup: ContainerCgroup | null | undefined;
  /** Its exit is handled to the end (afterExit included): nothing left for the 'exit' event. */
  private settled = false;
  private readonly ptyFd: number;
  private status: ExitStatus | null = null;
  private readonly exited: Promise<ExitStatus>;
  private readonly closed: Promise<ExitStatus>;
  /** A failure of the Runtime's bookkeeping after exit, reported by wait(). */
  private cleanupError: unknown;
  /**
   * The exit is handled (streams drained, afterExit) only once the container is in its
   * caller's hands: a stream nobody listens to is drained at the exit, and a caller must have
   * had the chance to listen first. Opened at once by launch(); by the Runtime through
   * handOver() after an async start, once run() has done its bookkeeping.
   */
  private openGate!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.openGate = resolve));

  /**
   * Starts a container process on a root filesystem (`root`), without images or state:
   * the building block Runtime.run uses. Throws NsboxError when setup fails.
   */
  static start<O extends ProcessOptions>(options: O): Container<StreamsOf<O>> {
    return Container.launch(checkObject(PROCESS_OPTIONS, options, 'start options', (k) => k)) as Container<StreamsOf<O>>;
  }

  /** @internal Runtime's way in: the same start, with the bookkeeping hooks attached. */
  static launch(options: LaunchOptions, managed?: ManagedContainer): Container {
    const { plan, cgroup, time } = prepareStart(options, managed);
    try {
      const exit = new ExitRelay();
      const startedAt = monotonicMs();
      const r = native().spawn(plan, exit.onExit);
      if (!r.ok) throw describeFailure(plan, r);
      const c = new Container(managed, cgroup, time, { r, exit, startedAt });
      c.openGate();
      return c;
    } catch (e) {
      // Nothing joined it (the start failed and its processes have been reaped).
      cgroup?.closeFds();
      cgroup?.remove().catch(() => {});
      throw e;
    } finally {
      cgroup?.closeFds();
      releasePlanFds(plan);
    }
  }

  /**
   * @internal The same start with the JS thread free while it runs: the clone, the child's
   * setup and nsbox-init's first report happen on a spawner thread (src-cc/core/spawner.h),
   * so several starts run at once, on several cores. Its exit is handled once handOver()
   * was called.
   */
  static async launchAsync(options: LaunchOptions, managed?: ManagedContainer): Promise<Container> {
    const { plan, cgroup, time } = prepareStart(options, managed);
    let r: SpawnResult;
    const exit = new ExitRelay();
    const startedAt = monotonicMs();
    try {
      // The cgroup fds the plan names stay open until the child has used them.
      hookExit();
      r = await new Promise<SpawnResult>((resolve) => {
        const early = native().spawnAsync(plan, exit.onExit, resolve);
        if (early) resolve(early);
      });
    } catch (e) {
      // A plan the addon refused: nothing started.
      cgroup?.closeFds();
      cgroup?.remove().catch(() => {});
      throw e;
    } finally {
      cgroup?.closeFds();
      releasePlanFds(plan);
    }
    if (!r.ok) {
      cgroup?.remove().catch(() => {});
      throw describeFailure(plan, r);
    }
    return new Container(managed, cgroup, time, { r, exit, startedAt });
  }

  /**
   * @internal After launchAsync: the caller has the container (or is done with it). Its exit
   * is handled from the next turn of the loop on, after the caller's own continuation (which
   * attaches its listeners) has run.
   */
  handOver(): void {
    setImmediate(this.openGate);
  }

  protected constructor(managed: ManagedContainer | undefined, cgroup: ContainerCgroup | null | undefined, time: TimeBounds, started: Started) {
    super();
    this.managed = managed;
    this.cgroup = cgroup;
    this.id = managed?.id ?? null;
    this.name = managed?.name ?? null;
    let resolveExit!: (s: ExitStatus) => void;
    this.exited = new Promise((resolve) => (resolveExit = resolve));
    const { r, exit, startedAt } = started;
    const ended = { timedOut: false, aborted: false, cpuTimeExceeded: false };
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
      timers.push(
        setInterval(() => {
          const used = cgroup.cpuUsageNs();
          if (used !== undefined && used > time.cpuTimeNs!) end('cpuTimeExceeded');
        }, 50),
      );
    }
    // Timers never keep Node alive on their own: the container's pidfd does while it runs.
    for (const t of timers) t.unref();
    const stopTimers = () => {
      for (const t of timers) clearTimeout(t);
      time.signal?.removeEventListener('abort', onAbort);
    };
    this.pid = r.pid;
    this.proc = r.process;
    supervise(this);
    exit.attach((code, sig, usage) => {
      this.status = {
        exitCode: code,
        signal: sig === null ? null : (SIGNAL_NAMES.get(sig) ?? (`SIG${sig}` as NodeJS.Signals)),
        oomKilled: false,
        ...ended,
        usage: {
          wallMs: monotonicMs() - startedAt,
          cpuUserMs: (usage?.userUs ?? 0) / 1000,
          cpuSystemMs: (usage?.systemUs ?? 0) / 1000,
          maxRssBytes: (usage?.maxRssKiB ?? 0) * 1024,
          memoryPeakBytes: null,
        },
      };
      stopTimers();
      resolveExit(this.status);
    });
    // Aborted while the start was in flight: it goes now.
    if (time.signal?.aborted) end('aborted');
    this.ptyFd = r.pty;
    ({ stdin: this.stdin, stdout: this.stdout, stderr: this.stderr, terminal: this.terminal } = processStreams(r, (e) => this.emit('error', e)) as S);
    this.closed = Promise.all([this.exited, this.gate]).then(async ([status]) => {
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
      this.settled = true;
      supervised.delete(this);
      this.emit('close', status.exitCode, status.signal);
      return status;
    });
  }

  /** @internal Its cgroup directories, v1 and v2 (a Runtime keeps them in the record). */
  get cgroupDirs(): string[] {
    return this.cgroup?.allDirs ?? [];
  }

  /**
   * @internal The 'exit' event (endAtExit): `ended` is what killAllSync did to it; without it
   * the container had exited already, and its cgroups go here. The Runtime then records its
   * end, or removes a `remove` one, synchronously.
   */
  endAtExit(ended: NativeEnded | undefined, deadline: number): void {
    supervised.delete(this);
    if (this.settled) return;
    let status = this.status;
    let clean: boolean;
    if (ended) {
      clean = ended.clean;
      status = {
        exitCode: ended.code,
        signal: ended.signal === null ? null : (SIGNAL_NAMES.get(ended.signal) ?? (`SIG${ended.signal}` as NodeJS.Signals)),
        oomKilled: false,
        timedOut: false,
        aborted: false,
        cpuTimeExceeded: false,
        usage: {
          wallMs: 0,
          cpuUserMs: (ended.usage?.userUs ?? 0) / 1000,
          cpuSystemMs: (ended.usage?.systemUs ?? 0) / 1000,
          maxRssBytes: (ended.usage?.maxRssKiB ?? 0) * 1024,
          memoryPeakBytes: null,
        },
      };
      if (!ended.reaped) return; // still dying: its record stays the run of a dead supervisor
    } else {
      if (!status) return; // not ours to end (killAllSync saw every running one)
      clean = removeDirsNow(this.cgroup?.allDirs ?? []);
    }
    this.managed?.endedAtExit?.(status, clean, deadline);
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
  async stop(options: ContainerStopOptions = {}): Promise<ExitStatus> {
    const o = checkObject(STOP_OPTIONS, options, 'stop options', (k) => `stop option ${k}`);
    const timeout = o.timeout ?? 10_000;
    if (this.running) {
      this.kill(o.signal ?? 'SIGTERM');
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
  exec<O extends ExecOptions>(options: O): ExecProcess<StreamsOf<O>> {
    const label = this.name ?? this.id ?? String(this.pid);
    if (!this.running) throw notRunning(label, 'has exited');
    // Our own unreaped child: its pid cannot be reused, no record needed to prove it.
    return execIn({ pid: this.pid, label }, options) as ExecProcess<StreamsOf<O>>;
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
  async remove(options: RemoveOptions = {}): Promise<void> {
    const o = checkObject(REMOVE_OPTIONS, options, 'remove options', (k) => `remove option ${k}`);
    if (this.managed) return this.managed.remove(o);
    if (this.running) {
      if (!o.force) throw new NsboxError('IN_USE', `container ${this.pid} is running (use force to kill it)`);
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

/**
 * The 'exit' event's budget. The kill and reap of every container gets EXIT_REAP_MS: once its
 * nsbox-init is SIGKILLed the kernel tears its pid namespace down in milliseconds, but a
 * process stuck in an uninterruptible sleep (a hung FUSE or NFS server) or with gigabytes to
 * unmap must not hold process.exit(); what is not reaped by then is left to the next Runtime.
 * The removal of `remove` containers starts only before EXIT_TOTAL_MS (their write layers:
 * milliseconds each, as rm takes); those left are tombstones or abandoned `remove` records,
 * which the next Runtime's recovery removes.
 */
const EXIT_REAP_MS = 1000;
const EXIT_TOTAL_MS = 2000;

/** Containers of this process whose end is not handled to the end yet. */
const supervised = new Set<Container>();
let exitHooked = false;

function supervise(c: Container): void {
  supervised.add(c);
  hookExit();
}

/**
 * Puts endAtExit first among the 'exit' listeners. Called before a start is posted too: a
 * process.exit() while the first start of a process is on a spawner thread must still run
 * killAllSync, which waits for that start and removes its cgroups (else they stayed on the
 * host, the CLI's `run` included, whose first start is its only one).
 */
function hookExit(): void {
  // First among the 'exit' listeners, again at each start (the program may have added some
  // since): Node calls none after one that throws, and a program's throwing listener must not
  // leave the containers to die unreaped with their cgroups on the host.
  if (exitHooked && process.listeners('exit')[0] === endAtExit) return;
  if (exitHooked) process.removeListener('exit', endAtExit);
  exitHooked = true;
  process.prependListener('exit', endAtExit);
}

/**
 * process.exit() (or the end of the script while an unref'd container runs): no turn of the
 * loop will come to reap a container, remove its cgroups or write its record. They would die
 * anyway (PR_SET_PDEATHSIG), but leave empty cgroup directories on the host and records that
 * say 'running'. So they are ended here, synchronously: killed, reaped and their cgroups
 * removed by the addon (killAllSync), then recorded as exited, or removed (`remove`), by their
 * Runtime. Detached containers are not this process's: their monitor supervises them.
 */
function endAtExit(): void {
  const deadline = Date.now() + EXIT_TOTAL_MS;
  // A container frozen by a commit of this process would not die of the kill until thawed.
  thawCommitsNow();
  let ended: NativeEnded[];
  try {
    ended = native().killAllSync(EXIT_REAP_MS);
  } catch {
    return; // never an exception out of an 'exit' listener
  }
  const byPid = new Map(ended.map((e) => [e.pid, e]));
  for (const c of [...supervised]) {
    try {
      c.endAtExit(byPid.get(c.pid), deadline);
    } catch {
      // left as a dead supervisor's run: the next Runtime finishes it
    }
  }
}

/** rmdir of each directory (gone already is fine); true when none is left. */
function removeDirsNow(dirs: string[]): boolean {
  let all = true;
  for (const d of dirs) {
    try {
      rmdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') all = false;
    }
  }
  return all;
}

type OnExit = (code: number | null, signal: number | null, usage: NativeUsage | null) => void;

/**
 * The native exit callback, given at the start, before the Container that handles the exit
 * exists (an async start's result arrives later): an exit that comes first is kept for it.
 */
class ExitRelay {
  private kept: Parameters<OnExit> | undefined;
  private to: OnExit | undefined;
  readonly onExit: OnExit = (code, signal, usage) => {
    if (this.to) this.to(code, signal, usage);
    else this.kept = [code, signal, usage];
  };

  attach(to: OnExit): void {
    this.to = to;
    const kept = this.kept;
    this.kept = undefined;
    if (kept) to(...kept);
  }
}

/** A started process handed to the Container that supervises it. */
interface Started {
  r: Extract<SpawnResult, { ok: true }>;
  exit: ExitRelay;
  startedAt: number;
}

/**
 * Everything of a start before the clone: options checked, the confinement, the container's
 * cgroups found (their fds open: the caller closes them once the child has used them), the
 * plan built. Throws NsboxError, leaving nothing behind.
 */
function prepareStart(options: LaunchOptions, managed: ManagedContainer | undefined): { plan: NativePlan; cgroup: ContainerCgroup | null; time: TimeBounds } {
  const size = ttySize(options.tty);
  const { timeout, signal, stdio, tty: _tty, ...rest } = options;
  let time: TimeBounds | undefined;
  const { plan, cgroup } = planStart(rest, managed?.id ?? newId(), {
    detached: false,
    stdio: normaliseStdio(stdio),
    tty: size,
    check: (bounds) => {
      time = timeBounds(timeout, signal, bounds.cpuTimeNs);
      if (time.signal?.aborted) throw new NsboxError('ABORT_ERR', 'run: aborted before it started', { cause: time.signal.reason });
    },
  });
  return { plan, cgroup, time: time! };
}

/** How a start's plan differs between a container this process supervises and a detached one. */
export interface StartShape {
  /** Supervised by nsbox-monitor: its cgroups are made whole here (no warm set, no v2 birth fd), and a rootless one can have none. */
  detached: boolean;
  stdio: [PlanStdio, PlanStdio, PlanStdio];
  tty?: { cols: number; rows: number } | undefined;
  /** What must hold of the parsed limits, checked before anything is made. */
  check?: (bounds: CgroupLimits) => void;
}

/**
 * The plan of a start, for Container's starts and launchDetached alike: the confinement, the
 * devices, the limits, the user namespace (rootless, or root's 'auto' with the host paths its
 * child needs reserved on fds), the container's cgroups (their fds open: the caller closes them
 * once the child has used them, and releasePlanFds(plan) after the start), the plan. Throws
 * NsboxError, leaving nothing behind.
 */
export function planStart(
  options: Omit<LaunchOptions, 'timeout' | 'signal' | 'stdio' | 'tty'>,
  id: string,
  shape: StartShape,
): { plan: NativePlan; cgroup: ContainerCgroup | null; bounds: CgroupLimits } {
  const { security, confinement: built, devices: deviceSpecs, limits, ulimits, idRange, idMap, ...planned } = options;
  const confined = built ?? confinement(security);
  if (deviceSpecs !== undefined && !Array.isArray(deviceSpecs)) throw invalid('devices: must be an array');
  const devices = (deviceSpecs ?? []).map(parseDevice);
  const privileged = security?.privileged === true;
  const bounds = cgroupLimits(limits);
  const initOptions = initRlimits(limits, ulimits);
  shape.check?.(bounds);
  if (idRange && isRootless()) throw new NsboxError('UNSUPPORTED', 'userns auto: for root; rootless containers have a user namespace of their own already');
  const subid = idRange || !isRootless() || idMap === 'single' ? undefined : (idMap ?? chooseIdMap());
  const userns = idRange ? undefined : startUserNs(subid);
  if (userns) {
    checkRootlessIds(confined.security, userns);
    if (shape.detached && needsCgroup(bounds))
      throw new NsboxError('UNSUPPORTED', `limits: a detached rootless container (uid ${process.geteuid!()}) cannot have cgroup limits yet`, {
        hint: 'run it attached (without -d) in a delegated cgroup v2 subtree, run as root, or leave the limits out',
      });
  }
  // Root's userns 'auto': the host paths the child needs are opened by the parent (userns.ts).
  const ext = idRange ? externalUserNs(idRange, planned.root, planned.mounts ?? [], planned.etcFiles ?? []) : undefined;
  let cgroup: ContainerCgroup | null = null;
  try {
    // Rootless: no device cgroup and no spawner thread moved into one (see src/rootless.ts).
    if (shape.detached) cgroup = userns ? null : ContainerCgroup.withLimits(id, privileged ? 'all' : devices, bounds);
    else cgroup = userns ? rootlessCgroup(id, bounds) : ContainerCgroup.forStart(id, privileged ? 'all' : devices, bounds);
    const bornIn = userns ? cgroup?.bornIn : (cgroup?.bornIn ?? homeDevicesTasks());
    // The setup below the loop (core/spawner.h): a spawner's start whose child can write
    // itself back into this process's cpu cgroup, and has no cpu cgroup of its own to join.
    const setupCg = userns || shape.detached ? undefined : setupCpuCgroup();
    const setup = setupCg && !cgroup?.dirs.some((d) => d.startsWith(setupCg.mount + '/')) ? setupCg : undefined;
    const plan = buildPlan({
      cgroupNamespace: hasCgroupNamespaces(),
      ...planned,
      ...(ext ? { root: ext.root, mounts: ext.mounts, etcFiles: ext.etcFiles, userns: ext.userns } : {}),
      ...(FORK_STYLE && !shape.detached ? { forkStyle: true } : {}),
      ...(userns ? { userns } : {}),
      stdio: shape.stdio,
      ...(shape.tty ? { tty: shape.tty } : {}),
      confinement: confined,
      deviceNodesAllowed: privileged,
      devices,
      initOptions,
      ...(cgroup?.procsFds.length ? { cgroupProcs: cgroup.procsFds } : {}),
      ...(bornIn ? { bornIn } : {}),
      ...(setup ? { setup: { tasks: setup.tasks, leaveFd: setup.leaveFd } } : {}),
      ...(cgroup?.cgroupFd !== undefined && !shape.detached ? { cgroupFd: cgroup.cgroupFd } : {}),
    });
    if (cgroup && !shape.detached) plan.cgroupDirs = cgroup.allDirs;
    if (ext) planFds.set(plan, ext.reserved);
    return { plan, cgroup, bounds };
  } catch (e) {
    for (const fd of ext?.reserved ?? []) closeSync(fd);
    cgroup?.closeFds();
    cgroup?.remove().catch(() => {});
    throw e;
  }
}

/** fds a plan reserved (userns 'auto': the numbers its child puts host fds on), closed after the start. */
const planFds = new WeakMap<NativePlan, number[]>();
export function releasePlanFds(plan: NativePlan): void {
  const fds = planFds.get(plan);
  planFds.delete(plan);
  for (const fd of fds ?? []) closeSync(fd);
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
  // manualStart: nothing is read before someone reads (or drain() lets it flow at the exit),
  // so a short output's end cannot pass before the caller, handed the container after an
  // async start's bookkeeping, has attached its listeners.
  const socket = new Socket({ fd, readable: direction === 'read', writable: direction === 'write', manualStart: true } as Net.SocketConstructorOpts);
  // Node's now (a worker terminated before this line leaves the fd to the addon's teardown).
  native().adoptFd(fd);
  return socket;
}

/** A stream over the pty's controlling side; node:tty (which loads node:net) only when used. */
export function ptyStream(fd: number): tty.ReadStream {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const stream = new (require('node:tty') as typeof tty).ReadStream(fd);
  native().adoptFd(fd);
  return stream;
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
