/** The native addon's interface (src-cc/binding/binding.cc), declared, not guessed. */
import * as fs from 'node:fs';
import * as path from 'node:path';

export type StepOp =
  | 'makeRootPrivate'
  | 'mountRootFs'
  | 'bindRoot'
  | 'mountFs'
  | 'bindInRoot'
  | 'mkdirInRoot'
  | 'symlinkInRoot'
  | 'maskInRoot'
  | 'readonlyInRoot'
  | 'pivotRoot'
  | 'loopbackUp'
  | 'sethostname'
  | 'chdir'
  | 'openPty'
  | 'joinCgroup'
  | 'unshareCgroupNs'
  | 'mountWriteLayer';

export interface NativeStep {
  op: StepOp;
  /** Names the step in error messages: "mount /proc", "volume /data". */
  name: string;
  source?: string;
  /** Relative to the container root for *InRoot steps; a host path otherwise. */
  target?: string;
  fstype?: string;
  /** key, value, key, value ... (an empty value sets a flag option) */
  options?: string[];
  attrs?: number;
  mode?: number;
  major?: number;
  minor?: number;
  flags?: number;
  /** joinCgroup: an open cgroup.procs file; mountWriteLayer: a detached mount. */
  fd?: number;
}

export interface NativeSecurity {
  /** Capability bit masks as [low 32 bits, high 32 bits]. */
  bounding: [number, number];
  effective: [number, number];
  /** Raised into the ambient (and inheritable) set, so that a non-root command keeps them. */
  ambient?: [number, number];
  noNewPrivs: boolean;
  uid?: number;
  gid?: number;
  /** A classic BPF program, 8 bytes an instruction. */
  seccomp?: Uint8Array;
}

/** 'fd': the child gets the fd at the same index of `stdioFds` (a duplicate the binding makes and closes). */
export type NativeStdio = 'inherit' | 'pipe' | 'ignore' | 'fd';

export interface NativePlan {
  newNet: boolean;
  newCgroup: boolean;
  /** CLONE_VM | CLONE_VFORK (default) instead of a fork-style copy of the page tables. */
  shareVm?: boolean;
  steps: NativeStep[];
  argv: string[];
  env: string[];
  /** Full paths execve tries in turn (the command looked up in the container's PATH). */
  candidates: string[];
  stdio: [NativeStdio, NativeStdio, NativeStdio];
  /** For each 'fd' entry of `stdio`, this process's fd the child gets (-1 for the others). */
  stdioFds?: [number, number, number];
  tty?: { cols: number; rows: number };
  security?: NativeSecurity;
  /** More of nsbox-init's options (rlimit=...), passed as they are. */
  initOptions?: string[];
  /** The `tasks` file of a v1 cgroup the cloning thread is in (core/spawner.h). */
  bornIn?: string;
  /** The `tasks` file of the v1 cpu cgroup the cloning thread sets up in (core/spawner.h). */
  setupIn?: string;
  /** An open cgroup v2 directory the container is born in (clone3 + CLONE_INTO_CGROUP). */
  cgroupFd?: number;
  /** The container's cgroup directories: removed by the addon if this environment ends first. */
  cgroupDirs?: string[];
  /** A user namespace of its own (CLONE_NEWUSER), with the maps its first process writes. */
  userns?: NativeUserNs;
}

/**
 * A container's user namespace: the text of /proc/PID/uid_map and gid_map ("inside outside
 * count" lines), written by the child itself right after clone (core/child.cc), with
 * setgroups denied first when `setgroupsDeny` (which an unprivileged gid map requires).
 */
export interface NativeUserNs {
  uidMap: string;
  gidMap: string;
  setgroupsDeny: boolean;
  /**
   * Root's `userns: 'auto'`: the maps (a range of host ids) are written by the parent after
   * clone, which then hands the child `hostFds` (core/plan.h, UserNs).
   */
  external?: boolean;
  hostFds?: NativeHostFd[];
  /**
   * Rootless with a subordinate range (src/subid.ts): with `external`, the maps are written by
   * running these setuid helpers (absolute paths) with the PID and the args (core/subid.h).
   */
  mapHelper?: { newuidmap: string; newgidmap: string; uidArgs: string[]; gidArgs: string[] };
}

/** A host path the parent opens in the child's mount namespace, put on fd `fd` in the child. */
export interface NativeHostFd {
  path: string;
  fd: number;
  /** HOSTFD_IDMAP, HOSTFD_NO_LINKS */
  flags: number;
}
/** An idmapped clone of the path (to the container's user namespace), mounted over it. */
export const HOSTFD_IDMAP = 1;
/** Resolved without following any symlink (a volume's host path). */
export const HOSTFD_NO_LINKS = 2;

/** What nsbox-init reported of its children's resource use (getrusage). */
export interface NativeUsage {
  userUs: number;
  systemUs: number;
  maxRssKiB: number;
}

/** A failed system call, as every native function reports one (src/errors.ts fromNative). */
export type { NativeErrno } from './errors';
import type { NativeErrno } from './errors';
import type { BatchOp, BatchResult } from './fsbatch';

/** What killAllSync did to one process. */
export interface NativeEnded {
  pid: number;
  /** Reaped within the budget (else it is dying still, and init reaps it once this process is gone). */
  reaped: boolean;
  /** Reaped, and its cgroup directories removed. */
  clean: boolean;
  /** How it ended, as an exit callback says (the command's own status when it ended first). */
  code: number | null;
  signal: number | null;
  usage: NativeUsage | null;
}

export interface NativeProcess {
  readonly pid: number;
  /** null, or the failure (ESRCH once reaped). */
  kill(signal: number): NativeErrno | null;
  ref(): void;
  unref(): void;
}

export type SpawnResult =
  | { ok: true; pid: number; process: NativeProcess; stdin: number; stdout: number; stderr: number; pty: number }
  | ({ ok: false; step: number; detail?: number; /** wait status of a setup process that died unreported */ vanished?: number } & NativeErrno);

/** exec's plan: no steps (the container's world exists), a target to join instead. */
export interface NativeExecPlan {
  /** A pidfd of the container's nsbox-init, proven to be it (start time, pid namespace). */
  target: number;
  /** CLONE_NEW* flags of the namespaces to join (at least mount and pid). */
  namespaces: number;
  /** Open cgroup.procs files of the container's cgroups (close-on-exec), joined first. */
  cgroupProcs?: number[];
  bornIn?: string;
  argv: string[];
  env: string[];
  candidates: string[];
  stdio: [NativeStdio, NativeStdio, NativeStdio];
  stdioFds?: [number, number, number];
  tty?: { cols: number; rows: number };
  security?: NativeSecurity;
  initOptions?: string[];
}

/** spawn()'s third argument: the container under nsbox-monitor (src-cc/init/monitor.cc). */
export interface NativeDetach {
  /** The container's directory: container.log and exit.json go there. */
  dir: string;
  logMaxSize: number;
  logMaxFiles: number;
  /** The memory cgroup's memory.oom_control, read at the end. */
  oom?: string;
  /** The container's cgroup directories, removed by the monitor at the end. */
  cgroups: string[];
  /** Kill the container this many ms after its start (`timedOut` in exit.json). */
  timeoutMs?: number;
  /** Kill it once its cgroup has used this much CPU (`cpuTimeExceeded`), read from cpuFile. */
  cpuTimeNs?: number;
  /** v1 cpuacct.usage, or (cpuFileV2) v2 cpu.stat. */
  cpuFile?: string;
  cpuFileV2?: boolean;
}

export type DetachedSpawnResult =
  /** `ack`: write one byte once the record names the monitor, then close (see spawn_detached). */
  { ok: true; pid: number; monitorPid: number; ack: number } | ({ ok: false; step: number; detail?: number; vanished?: number } & NativeErrno);

export interface NativeBinding {
  spawn(plan: NativePlan, onExit: (code: number | null, signal: number | null, usage: NativeUsage | null) => void): SpawnResult;
  spawn(plan: NativePlan, onExit: () => void, detach: NativeDetach): DetachedSpawnResult;
  /**
   * The same start on a spawner thread, the JS thread free meanwhile (core/spawner.h):
   * onStarted gets what spawn() returns. Returns a failure object when the stdio fds cannot be
   * made, else undefined. The fds the plan names must stay open until onStarted.
   */
  spawnAsync(
    plan: NativePlan,
    onExit: (code: number | null, signal: number | null, usage: NativeUsage | null) => void,
    onStarted: (r: SpawnResult) => void,
  ): SpawnResult | undefined;
  resizePty(fd: number, cols: number, rows: number): NativeErrno | null;
  /**
   * Runs `file argv env` in a user namespace of its own whose maps newuidmap/newgidmap write
   * (core/subid.h), `out` as its stdout and stderr, and waits: its wait status, a map helper's
   * exit status, or an errno. With `done`, on libuv's pool.
   */
  runInUserns(
    spec: { file: string; argv: string[]; env: string[]; out: number; newuidmap: string; newgidmap: string; uidArgs: string[]; gidArgs: string[] },
    done?: (r: unknown) => void,
  ): unknown;
  /** A process in a running container (src-cc/core/exec.cc); `step` as ExecStep says. */
  exec(plan: NativeExecPlan, onExit: (code: number | null, signal: number | null, usage: NativeUsage | null) => void): SpawnResult;
  /** A close-on-exec pidfd of `pid`: close it with closeFd (the addon closes it if JS is stopped first). */
  pidfdOpen(pid: number): number | NativeErrno;
  closeFd(fd: number): void;
  /** JS has a stream over a stdio end a start returned: the environment's teardown leaves it to Node. */
  adoptFd(fd: number): void;
  /** Whether a pidfd's process still runs (has not exited, reaped or not); waits up to waitMs for its exit. */
  pidfdAlive(fd: number, waitMs?: number): boolean;
  /** flock(fd, LOCK_EX | LOCK_NB): true when taken, false while another open file holds it. */
  tryLockFd(fd: number): boolean | NativeErrno;
  /**
   * For the 'exit' event only (src-cc/binding/exit.cc): SIGKILLs every process this
   * environment watches, reaps it and removes its cgroup directories, within budgetMs; ends
   * starts in flight. No exit callback runs afterwards.
   */
  killAllSync(budgetMs: number): NativeEnded[];
  /**
   * `path` (a cgroup's `tasks`) open for writing, close-on-exec, owned by this environment
   * (src-cc/binding/teardown.h): never closed by JS; closed when the environment ends, after
   * every start that may have handed it to a child.
   */
  openLeaveFd(path: string): number | NativeErrno;
  /**
   * Done on the host if this environment ends before keepAfterTeardown(token) (a terminated
   * worker runs no JS): 'thaw' a commit's freezer cgroup and remove it, 'rmdir' an empty
   * directory.
   */
  undoAtTeardown(kind: 'thaw' | 'rmdir', path: string): number;
  keepAfterTeardown(token: number): void;
  /** `lowerdir` escaped by plan.ts overlayLowerdir (the one place that escapes it). */
  mountOverlay(o: { lowerdir: string; upper?: string; work?: string; target: string; readonly?: boolean }): NativeErrno | null;
  unmount(target: string): NativeErrno | null;
  /** A free loop device with `file` behind it, detached by the kernel after its last user (limits.disk). */
  attachLoop(file: string, readonly: boolean): { fd: number; device: string } | NativeErrno;
  /** A mount of `source` in no namespace, as an fd: gone when the fd is closed. */
  mountDetached(fstype: string, source: string, readonly: boolean, attrs: number): number | NativeErrno;
  getXattr(path: string, name: string): Buffer | NativeErrno | null;
  /** Loads a BPF_PROG_TYPE_CGROUP_DEVICE program and attaches it to a cgroup v2 directory. */
  attachDeviceProgram(cgroupDir: string, insns: Uint8Array): NativeErrno | null;
  // Directory-fd calls (src-cc/core/fsat.h), wrapped in src/fsat.ts. Names are one component.
  openDir(path: string): number | NativeErrno;
  openDirAt(dirfd: number, name: Buffer): number | NativeErrno;
  openParentDir(dirfd: number): number | NativeErrno;
  openFileAt(dirfd: number, name: Buffer): number | NativeErrno;
  createFileAt(dirfd: number, name: Buffer): number | NativeErrno;
  listDir(dirfd: number): { names: Buffer[]; stats: Float64Array } | NativeErrno;
  /** listDir on the pool: the names as one Buffer and where each ends. dirfd must stay open until `done`. */
  listDirAsync(dirfd: number, done: (r: { names: Buffer; ends: Uint32Array; stats: Float64Array } | NativeErrno) => void): void;
  statFd(fd: number): Float64Array | NativeErrno;
  readLinkAt(dirfd: number, name: Buffer): Buffer | NativeErrno;
  getXattrFd(fd: number, name: string): Buffer | NativeErrno | null;
  /** user.* and security.capability of an open file (what an image keeps). */
  listXattrsFd(fd: number): Array<[string, Buffer]> | NativeErrno;
  setXattrFd(fd: number, name: string, value: Buffer): NativeErrno | null;
  setTimesFd(fd: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): NativeErrno | null;
  mkdirAt(dirfd: number, name: Buffer, mode: number): NativeErrno | null;
  /** The ids this thread creates files as (setfsuid/setfsgid), its capabilities kept. */
  setFsIds(uid: number, gid: number): NativeErrno | null;
  linkAt(fromDirfd: number, fromName: Buffer, toDirfd: number, toName: Buffer): NativeErrno | null;
  symlinkAt(target: Buffer, dirfd: number, name: Buffer): NativeErrno | null;
  setAttrsFd(fd: number, uid: number, gid: number, mode: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): NativeErrno | null;
  setLinkAttrsAt(
    dirfd: number,
    name: Buffer,
    uid: number,
    gid: number,
    mode: number,
    atimeSec: number,
    atimeNsec: number,
    mtimeSec: number,
    mtimeNsec: number,
  ): NativeErrno | null;
  copyData(fromFd: number, toFd: number, limit: number): number | NativeErrno;
  removeTree(path: string | Buffer): (NativeErrno & { path: Buffer }) | null;
  /** open, write whole, (fchmod,) close on libuv's thread pool: no fd of it ever reaches JS. */
  writeFileAsync(path: string, data: string | Buffer, flags: number, mode: number, setMode: boolean, done: (r: NativeErrno | null) => void): void;
  /** Small file system calls in order, in one job of libuv's pool (src/fsbatch.ts). */
  fsBatchAsync(ops: readonly BatchOp[], done: (results: BatchResult[]) => void): void;
  /** The same batch on the calling thread (a one-shot process: src/fsbatch.ts). */
  fsBatchSync(ops: readonly BatchOp[]): BatchResult[];
  /** removeTree on libuv's thread pool. */
  removeTreeAsync(path: string | Buffer, done: (r: (NativeErrno & { path: Buffer }) | null) => void): void;
  // For cp (src/copy.ts): a container's root and what lies beneath it.
  /** openat2(rootFd, path, flags | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS). */
  openInRoot(rootFd: number, path: Buffer, flags: number): number | NativeErrno;
  statAt(dirfd: number, name: Buffer): Float64Array | NativeErrno;
  unlinkAt(dirfd: number, name: Buffer, dir: boolean): NativeErrno | null;
  /** An overlay mounted nowhere: the fd of its root (nosuid, nodev, noexec); gone with the last fd. */
  mountOverlayFd(lowerdir: string, upper: string, work: string): number | NativeErrno;
  /** Runs encoded extraction steps under a root dir fd (src-cc/core/extract.h): how tests attack the writer with no policy in front of it. */
  ExtractWriter: new (rootFd: number) => NativeExtractWriter;
  /**
   * A whole image import on the thread pool: read, SHA-256 (a thread of its own), gunzip, tar
   * parsing, policy and writing under rootFd (src-cc/core/tar_import.h). The job takes both fds:
   * it closes them once run, or when collected unrun (the caller must not close them).
   */
  ImportJob: new (tarFd: number, rootFd: number, options: NativeImportOptions) => NativeImportJob;
  /** The tar parser (src-cc/core/tar.h), pushed chunk by chunk: cp's TarReader (src/image/tar.ts). */
  TarParser: new (label: string) => NativeTarParser;
  /** A tar header's numeric field (octal or base-256); NaN when malformed. */
  tarParseNumber(buffer: Buffer, start: number, length: number): number;
}

export interface NativeImportOptions {
  /** For messages: the tarball's path, `label` starting archive errors, `what` entry errors. */
  tarball: string;
  label: string;
  what: string;
  umask: number;
  alwaysChown: boolean;
}

/** A refusal with its NsboxError code and complete message (the archive or an entry). */
export interface NativeRefusal {
  kind: 'refused';
  code: string;
  message: string;
  path?: string;
}

/** A failed system call of an import: reading the tarball, or writing `entry` (`failure`: core/extract.h's ExtractFailure). */
export interface NativeImportFailure extends NativeErrno {
  kind: 'write' | 'read';
  failure: number;
  at: Buffer;
  entry: string;
}

export interface NativeImportResult {
  entries: number;
  bytes: number;
  skipped: number;
  skippedXattrs: number;
  ownersSquashed: number;
  /** Lowercase hex SHA-256 of the tarball's bytes as read. */
  digest: string;
}

export interface NativeImportJob {
  /** Once; the callback gets a failure, or null and the result. */
  run(callback: (error: NativeRefusal | NativeImportFailure | null, result?: NativeImportResult) => void): void;
  /** Bytes of the tarball read so far. */
  position(): number;
}

/** Entries as TarReader's TarEntry; data as [start, end) of the chunk written; null an entry's end. */
export type NativeTarEvent = Record<string, unknown> | [number, number] | null;

export interface NativeTarParser {
  write(chunk: Buffer): { events: NativeTarEvent[]; error: NativeRefusal | null };
  end(): NativeRefusal | null;
  finished(): boolean;
  /** Bytes consumed, and the last entry's name. */
  position(): [number, string];
}

/** A failed extraction step: `op` its index in the batch, `kind` why (core/extract.h), `at` a path prefix or attribute name. */
export interface NativeExtractError extends NativeErrno {
  op: number;
  kind: number;
  at: Buffer;
}

export interface NativeExtractWriter {
  /** On the thread pool; one batch at a time. The buffers must not change until the callback. */
  run(ops: Buffer, opsLength: number, chunks: Buffer[], callback: (error: NativeExtractError | null) => void): void;
  /** Closes its fds (not the root fd). */
  close(): void;
}

let binding: NativeBinding | undefined;

/**
 * Loaded on first use, so that plan building and the CLI's help never pay for it. The two
 * places node-gyp-build would pick in the usual cases are tried by their known paths (its
 * search of build/ and prebuilds/ costs every CLI start ~2.5 ms): a local build/Release, or,
 * in an installed package without any build/, the package's own prebuild. Anything else (a
 * Debug build, $NSBOX_PREBUILD, $PREBUILDS_ONLY, other tags) goes through node-gyp-build.
 */
export function native(): NativeBinding {
  if (binding) return binding;
  const root = path.join(__dirname, '..');
  if (!process.env.NSBOX_PREBUILD && !process.env.PREBUILDS_ONLY) {
    binding = requireIfPresent(path.join(root, 'build', 'Release', 'nsbox.node'));
    if (!binding && !fs.existsSync(path.join(root, 'build'))) binding = requireIfPresent(prebuildPath(root));
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  binding ??= require('node-gyp-build')(root) as NativeBinding;
  return binding;
}

/** Where `prebuildify --napi --tag-libc` (package.json) puts this platform's build. */
function prebuildPath(root: string): string {
  // The C library told apart as node-gyp-build does: $LIBC, else musl on Alpine only.
  const libc = process.env.LIBC || (fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc');
  return path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, `nsbox.${libc}.node`);
}

function requireIfPresent(file: string): NativeBinding | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(file) as NativeBinding;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw e;
    return undefined;
  }
}

// MOUNT_ATTR_* from <linux/mount.h>
export const MOUNT_ATTR_RDONLY = 0x1;
export const MOUNT_ATTR_NOSUID = 0x2;
export const MOUNT_ATTR_NODEV = 0x4;
export const MOUNT_ATTR_NOEXEC = 0x8;

// Step flags, as in src-cc/core/plan.h
export const STEP_NO_FOLLOW_FINAL = 1 << 0;
export const STEP_TARGET_IS_FILE = 1 << 1;
export const STEP_EXPECT_DEVICE = 1 << 2;
export const STEP_SOURCE_NO_LINKS = 1 << 3;

// File types, for STEP_EXPECT_DEVICE's `mode`.
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
