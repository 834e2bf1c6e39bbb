/**
 * exec: another process in a running container, as `docker exec` starts one. It joins all of
 * the container's namespaces at once (mount, and with it the container's root; pid, uts, ipc,
 * and network and cgroup where the container has its own), its cgroups, and gets the
 * container's confinement: bounding set, capabilities, ids, no_new_privs, the seccomp filter
 * and rlimits, read from the container's nsbox-init itself (/proc/PID/status and limits: the
 * kernel's word, which the workload cannot change), and its environment as the base of the
 * command's. nsbox-init runs it as it runs a container's command (src-cc/init/init.cc, `exec`
 * mode): the same reports, signal forwarding and usage, so an ExecProcess has the stdio,
 * wait(), kill() and resize() of a Container.
 *
 * Which process is the container's is proven before anything joins it: a pidfd is opened
 * first, then the pid's start time and pid namespace are compared with what was recorded at
 * the start (and the namespace must not be ours); from then on the pidfd names that process
 * whatever happens to the number, and the native side joins it through that pidfd.
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { homeDevicesTasks, unifiedHierarchy, v1Hierarchies } from './cgroup';
import { oomKillCount } from './cgroup-v2';
import { SIGNAL_NAMES, drain, monotonicMs, processStreams, signalNumber, ttySize, type ExitStatus } from './container';
import { checkStdio, normaliseStdio, type ProcessEvents, type ProcessStreams, type Stdio, type TerminalSize } from './stdio';
import { NsboxError, fromNative, invalid, errnoCode } from './errors';
import { processPidNamespace, processStartTime } from './proc';
import { PROC_LIMIT_NAMES, RLIMITS } from './limits';
import { native, type NativeExecPlan, type NativeProcess, type NativeSecurity } from './native';
import { DEFAULT_PATH, containerPath, execCandidates, nativeStdio, validateCommand } from './plan';
import { insideId, isRootless } from './rootless';
import { CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS, hostArch, seccompFilter } from './seccomp';
import { arrayOf, boolean, checkObject, integer, isObject, optional, string, stringArray, stringRecord, union, type Check, type Spec } from './validate';

export interface ExecOptions {
  /** The program and its arguments; the program is looked up in the PATH of the command's environment. */
  command: string[];
  /** Added to (and over) the container's environment: an object, or 'K=V' strings. */
  env?: Record<string, string> | string[] | undefined;
  /** Working directory inside the container; default: the container's. */
  cwd?: string | undefined;
  /**
   * 'UID[:GID]', numeric; default: the container's user. root gets the container's bounding
   * set; another uid gets no capabilities (but the container's own ambient ones when it runs
   * as that kind of user too), as with `docker exec -u`.
   */
  user?: string | undefined;
  /** A new pseudo-terminal of the container's own devpts as the command's stdio and controlling tty. */
  tty?: boolean | TerminalSize | undefined;
  /**
   * fds 0, 1, 2 of the command: `'pipe'` (default) gives `stdin`, `stdout`, `stderr` streams;
   * `'inherit'` this process's; `'ignore'` /dev/null; per fd also an fd number or a stream
   * with one, as child_process.spawn takes them. Not with `tty`.
   */
  stdio?: Stdio | undefined;
  /** Milliseconds: then the exec's process tree is killed and wait() says `timedOut`. */
  timeout?: number | undefined;
  /** Aborting it kills the exec's process tree; wait() says `aborted`. */
  signal?: AbortSignal | undefined;
}

const EXEC_OPTIONS: Spec<ExecOptions> = {
  command: arrayOf(string, { min: 1 }),
  env: optional(
    union<Record<string, string> | string[]>('K=V strings or an object of strings', [
      [Array.isArray, stringArray],
      [isObject, stringRecord],
    ]),
  ),
  cwd: optional(string),
  user: optional(string),
  tty: optional(
    union<boolean | TerminalSize>('a boolean or { cols, rows }', [
      [(v) => typeof v === 'boolean', boolean],
      [isObject, (v, name) => checkObject({ cols: optional(integer(1, 0xffff)), rows: optional(integer(1, 0xffff)) }, v, name)],
    ]),
  ),
  stdio: optional(checkStdio),
  timeout: optional(integer(1, 2 ** 31 - 1)),
  signal: optional(((v: unknown, name: string) => {
    if (v instanceof AbortSignal) return v;
    throw invalid(`${name}: expected an AbortSignal`);
  }) as Check<AbortSignal>),
};

/** The container's nsbox-init, as the caller knows it. */
export interface ExecTarget {
  /** Its pid in this process's pid namespace. */
  pid: number;
  /** How messages name the container. */
  label: string;
  /**
   * What proves the pid is still it, as recorded at the start (a Runtime's record). Left out
   * only for a process this one started and has not reaped (its pid cannot be reused).
   */
  proof?: { start: string; pidNamespace: string };
}

/** The error for a container that is not (or no longer) running. */
export function notRunning(label: string, why = 'is not running'): NsboxError {
  return new NsboxError('NOT_RUNNING', `exec: container ${label} ${why}`, { hint: `nsbox ps -a shows how it ended; nsbox start ${label} runs it again` });
}

/** Where the native side failed (src-cc/core/exec.h, ExecStep). */
const STEPS: Record<number, string> = {
  0: 'exec: prepare',
  1: 'exec: join cgroups',
  2: 'exec: join namespaces',
  3: 'exec: open terminal',
  4: 'exec: enter pid namespace',
};

const NAMESPACES: ReadonlyArray<[string, number]> = [
  // A rootless container's own user namespace comes first: the others belong to it.
  ['user', CLONE_NEWUSER],
  ['mnt', CLONE_NEWNS],
  ['pid', CLONE_NEWPID],
  ['uts', CLONE_NEWUTS],
  ['ipc', CLONE_NEWIPC],
  ['net', CLONE_NEWNET],
  ['cgroup', CLONE_NEWCGROUP],
];

/** What is read of the container's init, once it is proven to be it. */
interface ContainerState {
  status: string;
  limits: string;
  environ: string;
  cgroup: string;
  cwd: string;
  namespaces: number;
}

function readState(pid: number, label: string): ContainerState {
  const read = (file: string) => fs.readFileSync(`/proc/${pid}/${file}`, 'utf8');
  try {
    let namespaces = 0;
    for (const [name, flag] of NAMESPACES) {
      if (fs.readlinkSync(`/proc/${pid}/ns/${name}`) !== fs.readlinkSync(`/proc/self/ns/${name}`)) namespaces |= flag;
    }
    let cwd = '/';
    try {
      cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      // its root
    }
    return { status: read('status'), limits: read('limits'), environ: read('environ'), cgroup: read('cgroup'), cwd, namespaces };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ESRCH') throw notRunning(label, 'has exited');
    throw e;
  }
}

function statusField(status: string, name: string): string {
  const v = new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1];
  if (v === undefined) throw new NsboxError('EIO', `exec: /proc status has no ${name}`);
  return v.trim();
}

const toPair = (mask: bigint): [number, number] => [Number(mask & 0xffffffffn), Number((mask >> 32n) & 0xffffffffn)];

/**
 * The container's confinement, as its init holds it, for a command run as `user` (default:
 * the container's own user).
 */
export function securityOf(status: string, user: string | undefined): NativeSecurity {
  const bounding = BigInt(`0x${statusField(status, 'CapBnd')}`);
  const permitted = BigInt(`0x${statusField(status, 'CapPrm')}`);
  const ambient = BigInt(`0x${statusField(status, 'CapAmb')}`);
  const [uid, gid] = [statusField(status, 'Uid'), statusField(status, 'Gid')].map((l) => Number(l.split(/\s+/)[0])) as [number, number];
  const out: NativeSecurity = { bounding: toPair(bounding), effective: toPair(permitted), noNewPrivs: statusField(status, 'NoNewPrivs') === '1', uid, gid };
  if (ambient) out.ambient = toPair(ambient);
  if (user !== undefined) {
    const m = /^(\d+)(?::(\d+))?$/.exec(user);
    if (!m) throw invalid(`exec: user: ${user}: expected UID or UID:GID, numeric`);
    out.uid = Number(m[1]);
    out.gid = m[2] === undefined ? out.uid : Number(m[2]);
    if (out.uid > 0xfffffffe || out.gid > 0xfffffffe) throw invalid(`exec: user: ${user}: ids go up to ${0xfffffffe}`);
    // root: execve gives it the bounding set anyway. Any other uid: only the ambient caps a
    // non-root container has (none when the container runs as root), as docker exec -u does.
    const keep = out.uid === 0 ? bounding : uid === 0 ? 0n : ambient;
    out.effective = toPair(keep);
    if (out.uid === 0 || !keep) delete out.ambient;
    else out.ambient = toPair(keep);
  }
  const mode = statusField(status, 'Seccomp');
  if (mode === '2') {
    // nsbox's filter is made from the bounding set alone (security.ts): the same program.
    const arch = hostArch();
    if (!arch) throw new NsboxError('UNSUPPORTED', `exec: no seccomp filter for ${process.arch}`);
    out.seccomp = seccompFilter(arch, bounding);
  } else if (mode !== '0') {
    throw new NsboxError('UNSUPPORTED', `exec: the container's seccomp mode ${mode} is not one nsbox sets`);
  }
  return out;
}

/** rlimit=RESOURCE:SOFT:HARD for every limit the container's init has (/proc/PID/limits). */
export function rlimitsOf(limits: string): string[] {
  const out: string[] = [];
  const text = (v: string) => (v === 'unlimited' ? 'inf' : /^\d+$/.test(v) ? v : undefined);
  for (const line of limits.split('\n').slice(1)) {
    const name = Object.keys(PROC_LIMIT_NAMES).find((n) => line.startsWith(n));
    if (!name) continue;
    const [soft, hard] = line.slice(name.length).trim().split(/\s+/).map(text);
    const resource = RLIMITS[PROC_LIMIT_NAMES[name]!];
    if (soft !== undefined && hard !== undefined && resource !== undefined) out.push(`rlimit=${resource}:${soft}:${hard}`);
  }
  return out;
}

/** The command's environment: the container's, then the caller's over it. */
function execEnv(environ: string, extra: ExecOptions['env'], terminal: boolean): Record<string, string> {
  const env: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const kv of environ.split('\0')) {
    const eq = kv.indexOf('=');
    if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  if (terminal && env.TERM === undefined) env.TERM = 'xterm';
  const pairs = Array.isArray(extra)
    ? extra.map((kv): [string, string] => {
        const eq = kv.indexOf('=');
        if (eq <= 0) throw invalid(`exec: env: ${JSON.stringify(kv)}: expected K=V`);
        return [kv.slice(0, eq), kv.slice(eq + 1)];
      })
    : Object.entries(extra ?? {});
  for (const [k, v] of pairs) {
    if (k === '' || k.includes('=') || k.includes('\0') || v.includes('\0'))
      throw invalid(`exec: env: ${JSON.stringify(k)}: a name without '=' and no NUL bytes`);
    env[k] = v;
  }
  return env;
}

/**
 * The container's cgroups this process is not in, to join (their cgroup.procs), and the
 * cgroup the cloning thread should sit in (a shared device cgroup, as at a start: joining
 * costs a move, being born there costs nothing).
 */
export function cgroupJoins(theirs: string, ours: string, mountinfo: string, home = homeDevicesTasks()): { procs: string[]; bornIn?: string } {
  const t = v1Hierarchies(mountinfo, theirs);
  const o = v1Hierarchies(mountinfo, ours);
  const procs = new Set<string>();
  let bornIn: string | undefined;
  for (const [controller, h] of t) {
    const dir = path.join(h.mount, h.path);
    if (controller === 'devices') {
      // The usual container is in the shared nsbox/std: the spawner thread already is.
      if (path.basename(h.path) === 'std' && path.basename(path.dirname(h.path)) === 'nsbox') {
        bornIn = path.join(dir, 'tasks');
        continue;
      }
      bornIn = home;
    }
    // Anywhere else the cloning thread is where this process is: joined where that differs.
    if (h.path !== o.get(controller)?.path) procs.add(path.join(dir, 'cgroup.procs'));
  }
  const t2 = unifiedHierarchy(mountinfo, theirs);
  const o2 = unifiedHierarchy(mountinfo, ours);
  if (t2 && t2.path !== o2?.path) procs.add(path.join(t2.mount, t2.path, 'cgroup.procs'));
  return { procs: [...procs], ...(bornIn ? { bornIn } : {}) };
}

/**
 * The file that counts the OOM kills in the container's memory cgroup (v1's
 * memory.oom_control, else v2's memory.events), or undefined where it has none.
 */
export function oomCounterFile(theirs: string, mountinfo: string, v2Parent = process.env.NSBOX_CGROUP_V2_PARENT): string | undefined {
  // Only a cgroup of the container's own (`nsbox/<id>`, or under the given v2 parent) counts:
  // a container without a memory limit shares its supervisor's, whose kills are not its own.
  const own = (p: string, parent?: string) => path.basename(path.dirname(p)) === 'nsbox' || (parent !== undefined && path.dirname(p) === parent);
  const memory = v1Hierarchies(mountinfo, theirs).get('memory');
  if (memory) return own(memory.path) ? path.join(memory.mount, memory.path, 'memory.oom_control') : undefined;
  const unified = unifiedHierarchy(mountinfo, theirs);
  if (!unified) return undefined;
  const dir = path.join(unified.mount, unified.path);
  return own(dir, v2Parent) ? path.join(dir, 'memory.events') : undefined;
}

/** A reader of that count, undefined once the file cannot be read (no memory controller, gone). */
function oomCounter(file: string | undefined): () => number | undefined {
  return () => {
    if (file === undefined) return undefined;
    try {
      return oomKillCount(fs.readFileSync(file, 'utf8'));
    } catch {
      return undefined;
    }
  };
}

/**
 * Starts `options.command` in the container whose nsbox-init is `target`. Throws NsboxError
 * (NOT_RUNNING for a container that has exited; EPERM when its pid is not proven to be the
 * container's); leaves nothing behind on failure.
 */
export function execIn(target: ExecTarget, options: ExecOptions): ExecProcess {
  if (!isObject(options)) throw invalid('exec: options object required');
  const o = checkObject(EXEC_OPTIONS, options, 'exec options', (k) => `exec option ${k}`);
  const command = validateCommand(o.command);
  const cwd = o.cwd === undefined ? undefined : containerPath(o.cwd, 'exec: cwd');
  const size = ttySize(o.tty);
  const stdio = normaliseStdio(o.stdio);
  if (o.signal?.aborted) throw new NsboxError('ABORT_ERR', 'exec: aborted before it started', { cause: o.signal.reason });
  const { pid, label } = target;
  const opened = native().pidfdOpen(pid);
  if (typeof opened !== 'number') {
    if (opened.code === 'ESRCH') throw notRunning(label, 'has exited');
    throw fromNative(`exec: pidfd_open ${pid}`, opened);
  }
  const pidfd = opened;
  const cgroupFds: number[] = [];
  try {
    if (target.proof) {
      // After the pidfd is open: if the pid still has the recorded start time and namespace
      // now, the pidfd is that process (a reused pid would have another start time).
      const ns = processPidNamespace(pid);
      const start = processStartTime(pid);
      if (start !== target.proof.start) throw notRunning(label, `has exited (pid ${pid} is another process now)`);
      const refuse = (why: string) =>
        new NsboxError('EPERM', `exec: container ${label}: not entering pid ${pid}: ${why}`, {
          hint: "its record does not prove that pid is the container's",
        });
      if (ns !== target.proof.pidNamespace) throw refuse(`its pid namespace is ${ns ?? 'unknown'}, not the container's ${target.proof.pidNamespace}`);
      if (ns === processPidNamespace('self')) throw refuse(`it is in the host's own pid namespace ${ns}`);
    }
    const state = readState(pid, label);
    // Read while it was alive: these were its files, not a successor's.
    if (!native().pidfdAlive(pidfd)) throw notRunning(label, 'has exited');
    if (!(state.namespaces & CLONE_NEWNS) || !(state.namespaces & CLONE_NEWPID)) {
      throw new NsboxError('EPERM', `exec: container ${label}: pid ${pid} shares this process's mount or pid namespace: not a container's init`);
    }
    const security = securityOf(state.status, o.user);
    // In the container's own user namespace (rootless) its ids are those of that namespace:
    // /proc/PID/status shows them as the host sees them.
    const ownUserns = (state.namespaces & CLONE_NEWUSER) !== 0;
    if (ownUserns && o.user === undefined) {
      const uidMap = fs.readFileSync(`/proc/${pid}/uid_map`, 'utf8');
      const gidMap = fs.readFileSync(`/proc/${pid}/gid_map`, 'utf8');
      security.uid = insideId(uidMap, security.uid!);
      security.gid = insideId(gidMap, security.gid!);
    }
    const groupsDenied = ownUserns && fs.readFileSync(`/proc/${pid}/setgroups`, 'utf8').trim() === 'deny';
    const env = execEnv(state.environ, o.env, size !== undefined);
    const mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    const joins = cgroupJoins(state.cgroup, fs.readFileSync('/proc/self/cgroup', 'utf8'), mountinfo);
    // Rootless there is no device cgroup to be born in (src/rootless.ts).
    if (isRootless()) delete joins.bornIn;
    const oomKills = oomCounter(oomCounterFile(state.cgroup, mountinfo));
    for (const p of joins.procs) {
      try {
        cgroupFds.push(fs.openSync(p, fs.constants.O_WRONLY));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw notRunning(label, 'has exited (its cgroup is gone)');
        throw new NsboxError(errnoCode((e as NodeJS.ErrnoException).code), `exec: container ${label}: open ${p}: ${(e as Error).message}`, { path: p });
      }
    }
    const workdir = cwd ?? (state.cwd.startsWith('/') && !state.cwd.includes('\0') ? state.cwd : '/');
    const plan: NativeExecPlan = {
      target: pidfd,
      namespaces: state.namespaces,
      cgroupProcs: cgroupFds,
      ...(joins.bornIn ? { bornIn: joins.bornIn } : {}),
      argv: command,
      env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      candidates: execCandidates(command[0]!, env.PATH ?? DEFAULT_PATH),
      ...nativeStdio(stdio),
      ...(size ? { tty: size } : {}),
      security,
      initOptions: [...rlimitsOf(state.limits), `cwd=${workdir}`, ...(groupsDenied ? ['nosetgroups'] : [])],
    };
    try {
      return new ExecProcess(plan, label, o.timeout, o.signal, oomKills);
    } catch (e) {
      // A container that ended meanwhile is the reason: its pid namespace going down kills an
      // exec half set up (ECHILD), or refuses it (ESRCH, ENOMEM). Its init shows as exited
      // only once the namespace's last process is reaped, just after: given a moment for that.
      const dying = e instanceof NsboxError && ['ECHILD', 'ESRCH', 'ENOMEM'].includes(e.code);
      if (!native().pidfdAlive(pidfd, dying ? 250 : 0)) throw notRunning(label, 'has exited');
      throw e;
    }
  } finally {
    native().closeFd(pidfd);
    for (const fd of cgroupFds) fs.closeSync(fd);
  }
}

function describeExecFailure(
  plan: NativeExecPlan,
  label: string,
  r: { step: number; detail?: number; code: string; syscall: string; errno: number; vanished?: number },
): NsboxError {
  const details = { errno: r.errno, syscall: r.syscall } as const;
  if (r.vanished !== undefined) {
    return new NsboxError('ECHILD', `exec: the setup process ended before it reported (wait status ${r.vanished})`, details);
  }
  // The container ended meanwhile: its init is gone (setns), or its pid namespace is dying.
  if ((r.step === 2 && r.code === 'ESRCH') || (r.step === 4 && r.code === 'ENOMEM')) return notRunning(label, 'has exited');
  if (r.step >= 0) {
    return new NsboxError(errnoCode(r.code), `${STEPS[r.step] ?? 'exec'}: ${r.syscall}: ${r.code}`, { ...details, step: STEPS[r.step] ?? 'exec' });
  }
  if (r.step === -1) return new NsboxError(errnoCode(r.code), `exec: ${r.syscall}: ${r.code}`, details);
  const program = plan.argv[0]!;
  if (r.syscall === 'chdir') {
    const cwd = plan.initOptions?.find((x) => x.startsWith('cwd='))?.slice(4) ?? '/';
    return new NsboxError(errnoCode(r.code), `exec: working directory ${cwd}: ${r.code}`, { ...details, step: 'exec', path: cwd });
  }
  if (r.syscall !== 'execve') return new NsboxError(errnoCode(r.code), `exec ${program}: ${r.syscall}: ${r.code}`, { ...details, step: 'exec', path: program });
  const file = r.detail !== undefined && r.detail >= 0 ? plan.candidates[r.detail]! : program;
  const why =
    r.code === 'ENOENT'
      ? program.includes('/')
        ? 'no such file'
        : 'not found in PATH'
      : r.code === 'EACCES'
        ? 'permission denied (a directory, or not executable)'
        : r.code;
  return new NsboxError(errnoCode(r.code), `exec ${file}: ${why} (${r.code})`, { ...details, step: 'exec', path: file });
}

/**
 * A process started in a running container: its stdio as streams, its exit as a promise,
 * signals through its pidfd (to its nsbox-init, which passes them on; SIGKILL ends the
 * command with it). It ends with the container.
 */
export class ExecProcess<S extends ProcessStreams = ProcessStreams> extends EventEmitter<ProcessEvents> {
  /** Its nsbox-init's pid, in this process's pid namespace. */
  readonly pid: number;
  /** Its stdin, when piped: write to it, end() it for EOF. */
  readonly stdin: S['stdin'];
  /** Its stdout, when piped. */
  readonly stdout: S['stdout'];
  /** Its stderr, when piped. */
  readonly stderr: S['stderr'];
  /** The pty master, with `tty`: read the terminal's output, write its input. */
  readonly terminal: S['terminal'];

  private readonly proc: NativeProcess;
  private readonly ptyFd: number;
  private status: ExitStatus | null = null;
  private readonly exited: Promise<ExitStatus>;
  private readonly closed: Promise<ExitStatus>;

  /** @internal execIn() makes them. */
  constructor(plan: NativeExecPlan, label: string, timeout?: number, signal?: AbortSignal, oomKills: () => number | undefined = () => undefined) {
    super();
    // The kernel names no victim to us: an exec killed by SIGKILL while its container's
    // memory cgroup counted a new OOM kill was (as far as can be told) that kill.
    const oomKillsBefore = oomKills();
    let resolveExit!: (s: ExitStatus) => void;
    this.exited = new Promise((resolve) => (resolveExit = resolve));
    const started = monotonicMs();
    const ended = { timedOut: false, aborted: false };
    const timers: NodeJS.Timeout[] = [];
    const onAbort = () => end('aborted');
    const r = native().exec(plan, (code, sig, usage) => {
      const killed = sig === 9 && !ended.timedOut && !ended.aborted;
      const oomKillsAfter = killed && oomKillsBefore !== undefined ? oomKills() : undefined;
      this.status = {
        exitCode: code,
        signal: sig === null ? null : (SIGNAL_NAMES.get(sig) ?? (`SIG${sig}` as NodeJS.Signals)),
        oomKilled: oomKillsAfter !== undefined && oomKillsAfter > oomKillsBefore!,
        cpuTimeExceeded: false,
        ...ended,
        usage: {
          wallMs: monotonicMs() - started,
          cpuUserMs: (usage?.userUs ?? 0) / 1000,
          cpuSystemMs: (usage?.systemUs ?? 0) / 1000,
          maxRssBytes: (usage?.maxRssKiB ?? 0) * 1024,
          memoryPeakBytes: null,
        },
      };
      for (const t of timers) clearTimeout(t);
      signal?.removeEventListener('abort', onAbort);
      resolveExit(this.status);
    });
    if (!r.ok) throw describeExecFailure(plan, label, r);
    const end = (why: keyof typeof ended) => {
      if (this.status) return;
      ended[why] = true;
      this.proc.kill(9);
    };
    if (timeout !== undefined) timers.push(setTimeout(() => end('timedOut'), timeout));
    signal?.addEventListener('abort', onAbort, { once: true });
    for (const t of timers) t.unref();
    this.pid = r.pid;
    this.proc = r.process;
    this.ptyFd = r.pty;
    ({ stdin: this.stdin, stdout: this.stdout, stderr: this.stderr, terminal: this.terminal } = processStreams(r, (e) => this.emit('error', e)) as S);
    this.closed = this.exited.then(async (status) => {
      this.stdin?.destroy();
      this.emit('exit', status.exitCode, status.signal);
      await Promise.all([this.stdout, this.stderr, this.terminal].map(drain));
      this.emit('close', status.exitCode, status.signal);
      return status;
    });
  }

  /** The exit status, once the command has exited and its output streams have ended. */
  wait(): Promise<ExitStatus> {
    return this.closed;
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

  /** Sets the terminal size of a `tty` exec; does nothing once its terminal has closed. */
  resize(cols: number, rows: number): void {
    if (this.ptyFd < 0) throw invalid('resize: this exec has no terminal');
    const size = ttySize({ cols, rows })!;
    if (this.terminal!.destroyed) return;
    const err = native().resizePty(this.ptyFd, size.cols, size.rows);
    if (err) throw fromNative('resize terminal', err);
  }

  /** Lets Node exit while it runs (it still dies with this process). */
  unref(): this {
    this.proc.unref();
    return this;
  }

  ref(): this {
    this.proc.ref();
    return this;
  }
}
