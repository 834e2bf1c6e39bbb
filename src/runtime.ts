/**
 * The runtime: images, containers and their state under one root directory. Containers are
 * started from this process (no daemon, no shim) and their state is on disk, so that
 * another process (`nsbox ps`, `nsbox rm -f`) can see and end them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import {
  containerCgroupDirs,
  freezeContainer,
  pruneStaleCgroups,
  removeContainerCgroup,
  removeContainerCgroupAsync,
  removeDeadCgroups,
  thawDeadCommits,
} from './cgroup';
import { signalNumber } from './container';
import { Container, type CommitOptions, type ExitStatus, type LaunchOptions, type StreamsOf } from './container';
import { checkStdio, type Stdio, type TerminalSize } from './stdio';
import { NsboxError, fromSystemError, invalid, errnoCode } from './errors';
import { execIn, notRunning, type ExecOptions, type ExecProcess } from './exec';
import { isRootless } from './rootless';
import { allocateRange, claimsDir, holdRange, idMapText, pruneStaleRanges, releaseRange } from './userns';
import { chooseIdMap, mapTexts } from './subid';
import { ImageStore, removalsUnderWay, validateImageName, type ImageInfo, type ImportOptions } from './image/store';
import { ID_RE, Layout, defaultRoot, isNoSpace, newId, recordText, writeError, writeRecordFile, writeRecordFileAsync } from './layout';
import { batchError, firstFailure, fsBatch, isBatchError, type BatchOp } from './fsbatch';
import { removeTreeAsync } from './fsat';
import { mountsUnder, ownStartTime, ownThread, ownerAlive, processAlive, processPidNamespace, processStartTime, threadAlive } from './proc';
import { ContainerLock, pruneLockLeftovers } from './lock';
import { NAME_RE, type ContainerConfig, type ContainerInfo, type ContainerRecord, type ContainerStatus, volumeRecord } from './record';
import {
  TOMBSTONE_RE,
  containerEntries,
  layerIdentity,
  readEntry,
  removeTree,
  removeTreeOffLoop,
  tombstonePath,
  type Dangling,
  type Entry,
} from './container-dir';
import type { SecurityOptions } from './security';
import {
  arrayOf,
  boolean,
  checkObject,
  func,
  integer,
  isObject,
  object,
  oneOf,
  optional,
  pathString,
  shape,
  string,
  stringArray,
  stringRecord,
  union,
  type Check,
  type Spec,
} from './validate';
import type { DeviceSpec } from './device';
import { diskLimit, parseSize, withoutDisk, type Limits, type Ulimit } from './limits';
import { etcFileOps, writeEtcFiles, writeEtcFilesAsync } from './etc-files';
import { checkOutputOptions, collectOutput, type OutputOptions, type OutputResult } from './output';
import { parseTmpfs, type TmpfsMount } from './plan';
import { Volume } from './volume';
import { Workspace, detectDriver, validateDriver, type StorageDriver } from './workspace';
import { launchDetached, type DetachedContainer, type LogOptions } from './detach';
import { readLogs, type LogEntry, type LogsOptions } from './logs';
import type { Readable } from 'node:stream';
import type { CopyInOptions, CopyOutOptions, CopyResult, CopySource } from './copy';
import type { ContainerRoot } from './copy-root';

export type { ContainerConfig, ContainerInfo, ContainerStatus } from './record';

/** What inspect() shows: ps's fields and more. */
export interface ContainerInspect extends ContainerInfo {
  /** Killed by the kernel's OOM killer (its memory limit): `killedFor === 'oom'`. */
  oomKilled: boolean;
  /** How it was run; null for a record from before nsbox kept it. */
  config: ContainerConfig | null;
  /** Volumes and tmpfs mounts, as docker's inspect lists them. */
  mounts: MountInfo[];
  /** The image's read-only layer on the host. */
  imageLayer: string | null;
  /** The process that started it last and watches it. */
  supervisor: number | null;
  /**
   * Rootless (a state directory of a user other than root): the container's user namespace
   * maps `single`, the one uid and gid of that user as 0 (chown to other ids fails EINVAL), or
   * `subuid`, the user as 0 and its /etc/subuid range as 1.. (`userns` says which).
   * `auto` as root with `userns: 'auto'`: a range of host ids of its own (`userns` says which).
   * null as root otherwise: no user namespace of its own.
   */
  idMap: 'single' | 'subuid' | 'auto' | null;
  /** userns 'auto' or idMap 'subuid': its maps as /proc/PID/uid_map and gid_map show them (lines "inside outside count"); else null. */
  userns: { uidMap: string; gidMap: string } | null;
}

export type MountInfo =
  { type: 'bind'; source: string; target: string; readonly: boolean } | { type: 'tmpfs'; target: string; size?: number; mode?: number; noexec?: boolean };

function mountsOf(rec: ContainerRecord): MountInfo[] {
  const binds = rec.volumes.map((v): MountInfo => ({ type: 'bind', source: v.source, target: v.target, readonly: v.readonly }));
  return [...binds, ...(rec.config?.tmpfs ?? []).map((t): MountInfo => ({ type: 'tmpfs', ...t }))];
}

export interface StartOptions {
  /**
   * Its stdin, stdout and stderr as pipes on the Container returned (or its terminal, when it
   * was run with one). Default: none of them (stdin empty, output dropped).
   */
  attach?: boolean | undefined;
  /** Aborting it kills the whole container, as run()'s `signal`. */
  signal?: AbortSignal | undefined;
  /**
   * Under a monitor process of its own, as `run({ detach: true })`: this process may exit,
   * its output goes to its log (`logs()`). Not with `attach`, `signal`, nor for a container
   * run with a terminal (nothing would stay to serve them); its monitor enforces a timeout.
   */
  detach?: boolean | undefined;
}

/** containers/<id>/rename-to: a link naming the new name while a rename of <id> is under way. */
const RENAME_INTENT = 'rename-to';
export type { DetachedContainer, LogOptions } from './detach';
export type { LogEntry, LogsOptions } from './logs';

/**
 * run({ detach: true, ... }): the container is supervised by a small monitor process of its
 * own instead of this one (which may exit); its output goes to its log (`logs()`). No stdio,
 * terminal or abort signal: nothing in this process watches it. `timeout` and
 * `limits.cpuTime` are enforced by the monitor (the record's `killedFor` says which ended it).
 */
export interface DetachedRunOptions extends Omit<RunOptions, 'stdio' | 'tty' | 'signal'>, LogOptions {
  /** Under a monitor process of its own: run() resolves to a DetachedContainer. */
  detach: true;
}

export interface RuntimeOptions {
  /** State directory; default $NSBOX_ROOT, else /var/lib/nsbox as root, ~/.local/share/nsbox ($XDG_DATA_HOME/nsbox) as another user. */
  root?: string | undefined;
  /** Default: detected (overlay, else aufs, else vfs). */
  storageDriver?: StorageDriver | undefined;
}

export type VolumeSpec = string | Volume | { source: string; target: string; readonly?: boolean | undefined };

export interface RunOptions {
  /** The name of an imported image (see ImageStore.import, `nsbox import`). */
  image: string;
  /** The program and its arguments. Default: ['sh']. */
  command?: string[] | undefined;
  /** A unique name (letters, digits, '_', '.', '-') to refer to it by, besides its id. */
  name?: string | undefined;
  /**
   * Host paths (or named Volumes) bound into it: 'HOST:CONTAINER[:ro|:rw]', a Volume, or
   * `{ source, target, readonly }`. A symlink at the target, or anywhere in the host path, is refused.
   */
  volumes?: VolumeSpec[] | undefined;
  /** As an object, or as 'K=V' strings. */
  env?: Record<string, string> | string[] | undefined;
  /** Working directory inside the container. */
  cwd?: string | undefined;
  /** Default: the container's id. */
  hostname?: string | undefined;
  /** 'none' (default): a network namespace with only lo; 'host': the host's network. */
  network?: 'none' | 'host' | undefined;
  /**
   * fds 0, 1, 2 of the command: `'pipe'` (default) gives `stdin`, `stdout`, `stderr` streams;
   * `'inherit'` this process's; `'ignore'` /dev/null; per fd also an fd number or a stream
   * with one, as child_process.spawn takes them.
   */
  stdio?: Stdio | undefined;
  /** A pseudo-terminal (`true`: 80x24, or `{ cols, rows }`) as its stdio and controlling terminal: `terminal`. */
  tty?: boolean | TerminalSize | undefined;
  /** Removed as soon as it exits, like --rm; wait() resolves after the removal. */
  remove?: boolean | undefined;
  /**
   * The root filesystem read-only, like --read-only: the image layer itself is the root, with
   * no write layer (the fastest start). Mount points (volume targets) must exist in the image.
   */
  readOnly?: boolean | undefined;
  /**
   * Capabilities, user, seccomp, masked paths; docker's defaults when left out
   * (`{ privileged: true }`, `{ capAdd, capDrop }`, `{ user: '1000:1000' }`, ...).
   */
  security?: SecurityOptions | undefined;
  /**
   * Host device nodes the container may use, like `--device`: `'/dev/fuse'` or
   * `'/dev/sdb:/dev/disk'` (host path, then path in the container's /dev).
   */
  devices?: DeviceSpec[] | undefined;
  /**
   * Limits of the whole container: `memory`, `memorySwap`, `cpus`, `cpuset`, `cpuShares`,
   * `pids`, `cpuTime`; per process: `files`, `fileSize` (see Limits). A limit this host cannot
   * apply fails the run, naming the controller: never a silently unlimited container.
   */
  limits?: Limits | undefined;
  /** rlimits by name (nofile, nproc, core, ...): a number, or [soft, hard]. */
  ulimits?: Record<string, Ulimit> | undefined;
  /**
   * tmpfs mounts of the container's own, in its memory (charged to `limits.memory`):
   * `{ '/tmp': '64m' }` (target: size), or docker's `['/tmp:size=64m,mode=1777,noexec']`.
   */
  tmpfs?: Record<string, string | number> | string[] | undefined;
  /** Milliseconds: then the whole container is killed and wait() says `timedOut`. */
  timeout?: number | undefined;
  /** Aborting it kills the whole container; wait() says `aborted`. */
  signal?: AbortSignal | undefined;
  /**
   * As root: `'auto'` gives the container a user namespace of its own mapping 65536 host ids
   * of its own (`0 BASE 65536`; from /etc/subuid and /etc/subgid entries of a user `nsbox`,
   * else from host ids 2^30 and up), so that its root is nobody on the host. `'host'`
   * (default): no user namespace, root inside is the host's root (confined by capabilities,
   * seccomp and the rest). Rootless containers always have one (mapping the user's own ids).
   */
  userns?: 'auto' | 'host' | undefined;
  /**
   * Rootless: `'subuid'` maps the user as 0 and the first range of its /etc/subuid and
   * /etc/subgid entries as 1.. (through newuidmap and newgidmap), `'single'` the user's own ids
   * only. Default: the range when the user has one and the helpers are installed
   * (`NSBOX_ID_MAP=single|subuid` sets the default). Kept with the container.
   */
  idMap?: 'single' | 'subuid' | undefined;
}

const isString = (v: unknown) => typeof v === 'string';

/**
 * Every option of run(), checked at run time: a wrong type or an unknown key is refused
 * before anything is made. `security` is checked in detail by buildConfinement.
 */
const RUN_OPTIONS: Spec<RunOptions & { detach?: boolean } & LogOptions> = {
  image: string,
  command: optional(arrayOf(string, { min: 1 })),
  name: optional(string),
  volumes: optional(arrayOf<VolumeSpec>((v, name) => Volume.from(v as VolumeSpec, name))),
  env: optional(
    union<Record<string, string> | string[]>('K=V strings or an object of strings', [
      [Array.isArray, stringArray],
      [isObject, stringRecord],
    ]),
  ),
  cwd: optional(string),
  hostname: optional(string),
  network: optional(oneOf(['none', 'host'] as const)),
  stdio: optional(checkStdio),
  tty: optional(
    union<boolean | TerminalSize>('a boolean or { cols, rows }', [
      [(v) => typeof v === 'boolean', boolean],
      [isObject, shape({ cols: optional(integer(1, 0xffff)), rows: optional(integer(1, 0xffff)) })],
    ]),
  ),
  remove: optional(boolean),
  readOnly: optional(boolean),
  security: optional(object as Check<SecurityOptions>),
  devices: optional(
    arrayOf<DeviceSpec>((v, name) => {
      if (typeof v === 'string' || (isObject(v) && typeof (v as { source?: unknown }).source === 'string')) return v as DeviceSpec;
      throw invalid(`${name}: expected HOST[:CONTAINER] or { source, target }`);
    }),
  ),
  limits: optional(object as Check<Limits>),
  ulimits: optional(object as Check<Record<string, Ulimit>>),
  tmpfs: optional(
    union<Record<string, string | number> | string[]>('tmpfs specs or an object of target: size', [
      [Array.isArray, stringArray],
      [isObject, object as Check<Record<string, string | number>>],
    ]),
  ),
  timeout: optional(integer(1, 2 ** 31 - 1)),
  signal: optional(((v: unknown, name: string) => {
    if (v instanceof AbortSignal) return v;
    throw invalid(`${name}: expected an AbortSignal`);
  }) as Check<AbortSignal>),
  detach: optional(boolean),
  userns: optional(oneOf(['auto', 'host'] as const)),
  idMap: optional(oneOf(['single', 'subuid'] as const)),
  logMaxSize: optional(
    union<number | string>('bytes, or a size like 10m', [
      [(v) => typeof v === 'number', integer(1024, Number.MAX_SAFE_INTEGER)],
      [isString, string],
    ]),
  ),
  logMaxFiles: optional(integer(1, 100)),
};

const RUNTIME_OPTIONS: Spec<RuntimeOptions> = {
  root: optional(pathString),
  storageDriver: optional(oneOf<StorageDriver>(['overlay', 'aufs', 'vfs'])),
};

/** Options of the other methods, as small as they are. */
const FORCE: Spec<{ force?: boolean | undefined }> = { force: optional(boolean) };
const STOP: Spec<StopOptions> = { timeout: optional(integer(0, 2 ** 31 - 1)) };
const LIST: Spec<ListOptions> = { all: optional(boolean), onError: optional(func as Check<ListOptions['onError']>) };
const PRUNE: Spec<PruneOptions> = { onError: optional(func as Check<PruneOptions['onError']>) };
const COMMIT: Spec<CommitOptions> = { output: optional(pathString) };
const START: Spec<StartOptions> = {
  attach: optional(boolean),
  detach: optional(boolean),
  signal: optional(((v: unknown, name: string) => {
    if (v instanceof AbortSignal) return v;
    throw invalid(`${name}: expected an AbortSignal`);
  }) as Check<AbortSignal>),
};
const COPY_IN: Spec<CopyInOptions> = {
  owner: optional(shape({ uid: integer(0, 2 ** 32 - 2), gid: integer(0, 2 ** 32 - 2) })),
  follow: optional(boolean),
};
const COPY_OUT: Spec<CopyOutOptions> = { follow: optional(boolean) };

/** Options checked as a whole, each named `<method> option <key>` in messages. */
function checkOptions<T>(method: string, spec: Spec<T>, value: unknown): T {
  return checkObject(spec, value, `${method} options`, (k) => `${method} option ${k}`);
}

export interface StopOptions {
  /** Milliseconds from SIGTERM to SIGKILL of the whole container; default 10 000. */
  timeout?: number | undefined;
}

export interface ListOptions {
  /** Stopped containers too, not only running ones. */
  all?: boolean | undefined;
  /**
   * Called for each container whose record cannot be trusted (skipped in the list). Default:
   * a process warning.
   */
  onError?: ((error: NsboxError, id: string) => void) | undefined;
}

export interface PruneOptions {
  /**
   * Called for each container that could not be removed, once the others are. Without it,
   * prune rejects once it has removed all it could.
   */
  onError?: ((error: NsboxError, id: string) => void) | undefined;
}

function envObject(env: RunOptions['env']): Record<string, string> | undefined {
  if (!Array.isArray(env)) return env;
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const kv of env) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw invalid(`env: ${JSON.stringify(kv)}: expected K=V`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

/** What start() needs of run()'s options to run the container again as it was. */
function recordConfig(o: RunOptions, env: Record<string, string> | undefined): ContainerConfig {
  const unlimited = (v: number) => (v === Infinity ? -1 : v);
  return {
    env: { ...env },
    cwd: o.cwd ?? null,
    hostname: o.hostname ?? null,
    network: o.network ?? 'none',
    tty: !!o.tty,
    ...(o.security !== undefined ? { security: o.security } : {}),
    ...(o.devices !== undefined ? { devices: o.devices } : {}),
    ...(o.limits !== undefined ? { limits: o.limits } : {}),
    ...(o.ulimits !== undefined
      ? {
          ulimits: Object.fromEntries(
            Object.entries(o.ulimits).map(([k, v]) => [k, Array.isArray(v) ? [unlimited(v[0]), unlimited(v[1])] : unlimited(v)]),
          ) as Record<string, Ulimit>,
        }
      : {}),
    ...(o.tmpfs !== undefined ? { tmpfs: tmpfsMounts(o.tmpfs) } : {}),
    ...(o.timeout !== undefined ? { timeout: o.timeout } : {}),
  };
}

function tmpfsMounts(spec: Record<string, string | number> | string[]): TmpfsMount[] {
  if (Array.isArray(spec)) return spec.map((s) => parseTmpfs(s, parseSize));
  return Object.entries(spec).map(([target, size]) => ({ target, ...(size === '' ? {} : { size: parseSize(size, `tmpfs ${target}`) }) }));
}

/**
 * How long rm waits for a commit of the container (and commit for an rm) before IN_USE:
 * $NSBOX_LOCK_WAIT_MS, default 10 s.
 */
const LOCK_WAIT_MS = lockWaitMs(process.env.NSBOX_LOCK_WAIT_MS);

/** Where the record says its container's cgroups are (no field: none of its own). */
function setCgroups(rec: ContainerRecord, dirs: string[]): void {
  if (dirs.length) rec.cgroups = [...dirs];
  else delete rec.cgroups;
}

function lockWaitMs(v: string | undefined): number {
  const n = v === undefined ? NaN : Number(v);
  return Number.isInteger(n) && n >= 0 && n <= 3_600_000 ? n : 10_000;
}

export class Runtime {
  readonly root: string;
  readonly images: ImageStore;
  readonly layout: Layout;
  private driverChoice: StorageDriver | undefined;
  /** Containers this process started and still watches, by id. */
  private readonly live = new Map<string, Container>();
  /** Containers this process is removing: their afterExit leaves the removal to remove(). */
  private readonly removing = new Set<string>();
  /** Records whose last state could not be written (a full disk): kept, shown, written again. */
  private readonly unsaved = new Map<string, ContainerRecord>();
  /** Whether the work of dead processes was finished once (at the first use, not in the constructor). */
  private recovered = false;
  /** Names this Runtime freed because their container was gone: rm of one of them succeeds. */
  private readonly freedNames = new Set<string>();

  /** Throws UNSAFE_PATH when the state directory exists and others could write it. */
  constructor(options: RuntimeOptions = {}) {
    const o = checkOptions('Runtime', RUNTIME_OPTIONS, options);
    this.layout = new Layout(o.root ?? defaultRoot());
    this.root = this.layout.root;
    this.images = new ImageStore(this.layout);
    if (o.storageDriver !== undefined) this.driverChoice = validateDriver(o.storageDriver);
    // Here, and again (at no cost once it passed) before each use: `rt.images` reads the
    // state directory without going through a method of Runtime.
    this.layout.verify();
  }

  get storageDriver(): StorageDriver {
    this.driverChoice ??= detectDriver(fs.existsSync(this.root) ? this.root : path.dirname(this.root));
    return this.driverChoice;
  }

  import(tarball: string, name: string, options?: ImportOptions): Promise<ImageInfo> {
    this.layout.verify();
    return this.images.import(tarball, name, options);
  }

  /**
   * Runs a container to its end and collects its output: `{ stdout, stderr, exitCode, signal,
   * oomKilled, timedOut, aborted, cpuTimeExceeded, truncated, usage }`. `input` goes to its
   * stdin; past `maxOutput` bytes on a stream (default 16 MiB) the container is killed and
   * `truncated` is set. Removed at the end unless `remove: false`.
   */
  async output(options: RunOptions & OutputOptions): Promise<OutputResult> {
    if (!isObject(options)) throw invalid('output: options object required');
    const { input, maxOutput, ...run } = options;
    const o = checkOutputOptions({ ...(input !== undefined ? { input } : {}), ...(maxOutput !== undefined ? { maxOutput } : {}) });
    const c = await this.run({ remove: true, ...run, stdio: ['pipe', 'pipe', 'pipe'], tty: false });
    return collectOutput(c, o);
  }

  /**
   * Creates a container from an image and starts it. Throws NsboxError; leaves nothing on
   * failure. Crash-consistent: the record (status 'creating', naming this process) exists
   * before anything else of the container, so that whatever a kill leaves is listed and
   * removable.
   */
  async run(options: DetachedRunOptions): Promise<DetachedContainer>;
  async run<O extends RunOptions>(options: O): Promise<Container<StreamsOf<O>>>;
  async run(given: RunOptions | DetachedRunOptions): Promise<Container | DetachedContainer> {
    if (!isObject(given)) throw invalid('run: options object required');
    // The checked copy from here on: what was checked is what is used.
    const { detach, logMaxSize, logMaxFiles, ...checked } = checkOptions('run', RUN_OPTIONS, given);
    const options: RunOptions = checked;
    if (!detach && (logMaxSize !== undefined || logMaxFiles !== undefined))
      throw invalid('run: logMaxSize and logMaxFiles are for detached containers (detach: true)');
    this.layout.verify();
    const image = this.images.get(validateImageName(options.image));
    const command = options.command ?? ['sh'];
    const volumes = (options.volumes ?? []).map((v) => Volume.from(v));
    const env = envObject(options.env);
    if (options.name !== undefined && !NAME_RE.test(options.name)) {
      throw invalid(`name ${JSON.stringify(options.name)}: letters, digits, '_', '.', '-'`);
    }
    const driver = this.storageDriver;
    const disk = diskLimit(options.limits);
    if (disk !== undefined) Workspace.checkDisk(driver, !!options.readOnly);
    if (disk !== undefined && !options.remove && isRootless()) {
      // A kept container's write layer is an ext4 image on a loop device: root's to attach.
      throw new NsboxError(
        'UNSUPPORTED',
        `limits.disk: rootless (uid ${process.geteuid!()}), only a --rm container's write layer can be bounded (a tmpfs); a kept one needs a loop device, which is root's`,
        { hint: 'add --rm, run as root, or leave the disk limit out' },
      );
    }
    const autoUserns = options.userns === 'auto';
    if (autoUserns) checkAutoUserns({ disk: disk !== undefined, driver, readOnly: !!options.readOnly });
    if (options.idMap !== undefined && !isRootless()) {
      throw new NsboxError('UNSUPPORTED', `idMap: for rootless containers (root's containers have none, or a range of their own with userns 'auto')`, {
        hint: "leave idMap out, or use userns: 'auto'",
      });
    }
    const subid = isRootless() ? chooseIdMap(options.idMap) : undefined;
    this.layout.ensure();
    this.recoverOnce();

    const name = options.name ?? null;
    const record: ContainerRecord = {
      id: '',
      name,
      image: image.name,
      command,
      driver,
      volumes: volumes.map(volumeRecord),
      status: 'creating',
      pid: null,
      pidStart: null,
      pidNamespace: null,
      exitCode: null,
      signal: null,
      created: new Date().toISOString(),
      startedAt: null,
      finishedAt: null,
      remove: !!options.remove,
      readOnly: !!options.readOnly,
      supervisor: process.pid,
      supervisorStart: ownStartTime(),
      ...(ownThread() ? { supervisorThread: ownThread()! } : {}),
      imageLayer: image.rootfs,
      config: recordConfig(options, env),
      ...(subid ? { subid } : {}),
    };
    // limits.disk: a --rm container's write layer is a tmpfs of that size, a kept one's an ext4 image.
    const workspaceIn = (at: string): Workspace =>
      new Workspace(at, image.rootfs, driver, !!options.readOnly, disk === undefined ? undefined : { kind: options.remove ? 'tmpfs' : 'image', bytes: disk });
    const etcInput = (at: string, ofId: string) => ({
      dir: at,
      hostname: options.hostname ?? ofId,
      network: options.network ?? 'none',
      imageLayer: image.rootfs,
      readOnly: !!options.readOnly,
    });
    // Without a name to claim in between, the layer's directories and the /etc files go in the
    // record's own batch: the whole file system part of a start is one job of the pool.
    let etcBinds: Array<{ source: string; target: string }> | undefined;
    const { id, failed } = await this.createRecordAsync(
      record,
      name === null && !autoUserns
        ? (at, ofId) => {
            const layerOps = workspaceIn(at).createOps();
            if (!layerOps) return [];
            const etc = etcFileOps(etcInput(at, ofId));
            etcBinds = etc.binds;
            return [...layerOps, ...etc.ops];
          }
        : undefined,
    );
    const dir = this.layout.containerDir(id);
    const workspace = workspaceIn(dir);
    try {
      if (name !== null) await this.claimNameAsync(name, id);
    } catch (e) {
      await fs.promises.rm(dir, { recursive: true, force: true });
      throw e;
    }
    let container: Container | undefined;
    /** A detached container's pid, once it started. */
    let detached: number | undefined;
    /** Host directories the volumes' prepare() made: taken back if the run fails. */
    const madeDirs: string[] = [];
    let diskMount: number | undefined;
    try {
      if (failed) throw failed.op.op === 'mkdir' ? fromSystemError(`workspace ${dir}`, failed.error) : fromSystemError(`write ${failed.op.path}`, failed.error);
      if (autoUserns) {
        // The range is claimed under the id: the layer's directories are made after it, owned by its base.
        record.userns = await allocateRange(this.layout, id);
        workspace.idRange = record.userns;
      }
      // Made in the record's batch, or now: the layer's directories and the /etc files at once.
      const etcFiles = etcBinds ?? writeEtcFilesAsync(etcInput(dir, id));
      if (!etcBinds) await Promise.all([workspace.createAsync(), etcFiles]);
      if (workspace.disk) await workspace.createDisk();
      diskMount = workspace.mountDisk();
      const processOptions: LaunchOptions = {
        root: workspace.rootSource(!!options.remove, diskMount),
        command,
        hostname: options.hostname ?? id,
        mounts: volumes.map((v) => v.prepare(madeDirs)),
        stdio: options.stdio ?? 'pipe',
        ...(env ? { env } : {}),
        ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
        ...(options.network !== undefined ? { network: options.network } : {}),
        ...(options.tty !== undefined ? { tty: options.tty } : {}),
        ...(options.security !== undefined ? { security: options.security } : {}),
        ...(options.devices !== undefined ? { devices: options.devices } : {}),
        ...(options.limits !== undefined ? { limits: withoutDisk(options.limits) } : {}),
        ...(options.ulimits !== undefined ? { ulimits: options.ulimits } : {}),
        ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
        ...(options.tmpfs !== undefined ? { tmpfs: tmpfsMounts(options.tmpfs) } : {}),
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
        ...(record.userns ? { idRange: record.userns } : {}),
        ...(isRootless() ? { idMap: record.subid ?? 'single' } : {}),
        etcFiles: await etcFiles,
      };
      if (detach) {
        const log: LogOptions = { ...(logMaxSize !== undefined ? { logMaxSize } : {}), ...(logMaxFiles !== undefined ? { logMaxFiles } : {}) };
        const started = launchDetached({ ...processOptions, stdio: 'ignore' }, id, dir, log);
        detached = started.pid;
        try {
          return this.recordDetached(record, started);
        } finally {
          fs.closeSync(started.ack);
        }
      }
      container = await Container.launchAsync(processOptions, {
        id,
        name,
        afterExit: (status) => this.afterExit(record, status),
        endedAtExit: (status, clean, deadline) => this.endedAtExit(record, status, clean, deadline),
        commit: (img, o) => this.commit(id, img, o),
        remove: (o) => this.remove(id, o),
        copyIn: (src, dest, o) => this.copyIn(id, src, dest, o),
        copyOut: (p, o) => this.copyOut(id, p, o),
      });
      record.status = 'running';
      record.pid = container.pid;
      record.pidStart = processStartTime(container.pid) ?? null;
      // What proves later, to another process, that this pid is still this container.
      record.pidNamespace = processPidNamespace(container.pid) ?? null;
      record.startedAt = new Date().toISOString();
      // Where its cgroups are: a killed supervisor's are found from any process (the next
      // Runtime's recovery, prune, start), whatever cgroup that one runs in.
      setCgroups(record, container.cgroupDirs);
      // On a full disk this writes over the record in place, into the room it was made with.
      // Its exit may come meanwhile: afterExit writes after this (the same record object).
      this.live.set(id, container);
      // Its exit is handled after this (container.handOver), so that write comes first.
      await writeRecordFileAsync(path.join(dir, 'container.json'), record);
      container.handOver();
      return container;
    } catch (e) {
      if (container) {
        // Started, but its state could not be written: it must not outlive this failure.
        record.remove = true;
        this.live.delete(id);
        container.kill('SIGKILL');
        container.handOver();
        // Gone (and removed) by the time run() rejects.
        await container.wait().catch(() => {});
      } else if (detached !== undefined) {
        // The same for a detached one: its ack was closed unwritten, so its monitor kills it
        // (and removes its cgroups).
        try {
          this.destroyEntry({ kind: 'live', id, dir, rec: record });
        } catch {
          // left for prune
        }
      } else {
        try {
          await this.destroyEntryAsync({ kind: 'live', id, dir, rec: record });
        } catch {
          // left as a 'creating' record of this process: listed, and removed by prune or rm -f
        }
      }
      Volume.removeCreated(madeDirs);
      throw e;
    } finally {
      // The container's namespace holds its write layer's mount now (or, failed, nothing does,
      // and the mount and its loop device go with this fd).
      if (diskMount !== undefined) fs.closeSync(diskMount);
    }
  }

  /**
   * The record of a detached container that started: its supervisor is its monitor from now
   * on (pid and start time, so that recovery tells a live monitor from a dead one). The
   * monitor may have ended already (a short command): then its start time is unknown, and
   * '0' matches no process.
   */
  private recordDetached(record: ContainerRecord, started: { pid: number; monitorPid: number; ack: number; cgroups: string[] }): DetachedContainer {
    const dir = this.layout.containerDir(record.id);
    record.status = 'running';
    record.pid = started.pid;
    record.pidStart = processStartTime(started.pid) ?? null;
    record.pidNamespace = processPidNamespace(started.pid) ?? null;
    record.startedAt = new Date().toISOString();
    record.supervisor = started.monitorPid;
    record.supervisorStart = processStartTime(started.monitorPid) ?? '0';
    delete record.supervisorThread; // the monitor is a process of its own
    // The monitor removes them at its end; a killed monitor leaves them to the next Runtime.
    setCgroups(record, started.cgroups);
    writeRecordFile(path.join(dir, 'container.json'), record);
    try {
      fs.writeSync(started.ack, 'k');
    } catch {
      // EPIPE: the monitor is gone, and its container with it; the record shows it exited
    }
    return { id: record.id, name: record.name, pid: started.pid, monitorPid: started.monitorPid };
  }

  /**
   * A detached container's output, one entry a line (`{ stream, time, line }`), oldest
   * first: `tail` keeps the last N, `since` drops older ones, `follow` goes on until the
   * container has ended and its monitor has written the last of it.
   */
  logs(ref: string, options: LogsOptions = {}): AsyncIterable<LogEntry> {
    this.layout.verify();
    const rec = this.trustedRecord(ref);
    const dir = this.layout.containerDir(rec.id);
    const ended = (): boolean => {
      let now: ContainerRecord;
      try {
        now = this.trustedRecord(rec.id);
      } catch {
        return true; // removed
      }
      return now.status !== 'running' || !this.supervisorAlive(now);
    };
    return readLogs(dir, options, ended);
  }

  private workspaceOf(rec: ContainerRecord, dir = this.layout.containerDir(rec.id)): Workspace {
    const w = new Workspace(dir, rec.imageLayer, rec.driver, !!rec.readOnly, Workspace.diskOf(dir));
    w.idRange = rec.userns;
    w.subid = rec.subid;
    return w;
  }

  /**
   * Makes containers/<id> with its record in it, in one step: the directory is made and
   * written in tmp/, then renamed into place (the id is ours once the rename succeeded: an
   * existing container's directory is never empty). Sets and returns `record.id`.
   */
  private async createRecordAsync(
    record: ContainerRecord,
    more?: (dir: string, id: string) => BatchOp[],
  ): Promise<{ id: string; failed?: { op: BatchOp; error: NodeJS.ErrnoException } | undefined }> {
    this.layout.ensure();
    for (;;) {
      record.id = newId();
      const tmp = path.join(this.layout.tmp, `create-${process.pid}-${newId()}`);
      const file = path.join(tmp, 'container.json');
      const dir = this.layout.containerDir(record.id);
      // One job of the pool (src/fsbatch.ts): the directory made and written in tmp/, renamed
      // into place, then `more` (what goes into the container's directory), stopping at the
      // first failure. A failure of `more` is the caller's: the record is in place by then.
      const ops: BatchOp[] = [
        { op: 'mkdir', path: tmp, mode: 0o700 },
        { op: 'write', path: file, data: recordText(record), flags: fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode: 0o600 },
        { op: 'rename', path: tmp, to: dir },
        ...(more ? more(dir, record.id) : []),
      ];
      const f = firstFailure(ops, await fsBatch(ops));
      if (!f || f.index > 2) return { id: record.id, failed: f };
      if (f.index === 0) throw fromSystemError('create container', f.error);
      await removeTreeAsync(tmp, { force: true }).catch(() => {});
      if (f.index === 1) throw writeError(file, f.error);
      const code = f.error.code;
      if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw fromSystemError('create container', f.error);
    }
  }

  private async afterExit(record: ContainerRecord, status: ExitStatus): Promise<void> {
    this.live.delete(record.id);
    if (record.remove) {
      if (this.removing.has(record.id)) return; // remove() of this process does it
      try {
        // This process's own record of it: no need to read it back (gone: removed meanwhile).
        const e: Entry = { kind: 'live', id: record.id, dir: this.layout.containerDir(record.id), rec: record };
        // The lock taken and released in the removal's own batches; the usual way when it is busy.
        if ((await this.destroyBatched(e, true)) === 'busy') await this.removeLocked(record.id, () => e);
      } catch (e) {
        // Not a failure of the run: what is left is an exited container, which prune removes.
        process.emitWarning(`container ${record.id} exited, but was not removed: ${(e as Error).message}`, { code: 'NSBOX_STATE' });
      }
      return;
    }
    this.recordExit(record, status);
  }

  private recordExit(record: ContainerRecord, status: ExitStatus): void {
    record.status = 'exited';
    record.exitCode = status.exitCode;
    record.signal = status.signal;
    const killedFor = status.oomKilled ? 'oom' : status.timedOut ? 'timeout' : status.aborted ? 'abort' : status.cpuTimeExceeded ? 'cpuTime' : undefined;
    if (killedFor) record.killedFor = killedFor;
    record.finishedAt = new Date().toISOString();
    this.saveRecord(record);
  }

  /**
   * afterExit at the 'exit' event (process.exit()): the container was killed with this
   * process, or had exited before its end was handled (Container.endAtExit). Synchronous: its
   * end is recorded, or a `remove` container removed (tombstone first, as every removal), now.
   * What cannot be done now stays a dead supervisor's run, which the next Runtime finishes:
   * a container not reaped or whose cgroups are still busy (`clean` false: its record keeps
   * saying 'running', so recovery removes its cgroups), a removal past the deadline, one that
   * a removal or commit of this process is in the middle of (the lock is held).
   */
  private endedAtExit(record: ContainerRecord, status: ExitStatus, clean: boolean, deadline: number): void {
    this.live.delete(record.id);
    if (!clean || record.status !== 'running') return;
    if (!record.remove) {
      this.recordExit(record, status);
      return;
    }
    if (this.removing.has(record.id) || Date.now() >= deadline) return;
    const e: Entry = { kind: 'live', id: record.id, dir: this.layout.containerDir(record.id), rec: record };
    this.destroyIfFree(
      e,
      (x) =>
        x.kind === 'live' && !x.bad && x.rec?.supervisor === process.pid && x.rec.supervisorStart === ownStartTime() && x.rec.supervisorThread === ownThread(),
    );
  }

  /**
   * Writes a record; when that fails (a full disk), the record is kept in memory (shown by
   * this Runtime, written again at its next use) and a warning says so: the exit status of a
   * finished container is never turned into an error.
   */
  private saveRecord(record: ContainerRecord): void {
    try {
      writeRecordFile(path.join(this.layout.containerDir(record.id), 'container.json'), record);
      this.unsaved.delete(record.id);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && !fs.existsSync(this.layout.containerDir(record.id))) {
        this.unsaved.delete(record.id);
        return; // removed meanwhile (rm -f from another process): nothing left to record
      }
      if (!this.unsaved.has(record.id)) {
        process.emitWarning(
          `container ${record.id}: its state (${record.status}${record.exitCode !== null ? `, exit code ${record.exitCode}` : ''}) could not be saved: ${(e as Error).message}`,
          { code: 'NSBOX_STATE' },
        );
      }
      this.unsaved.set(record.id, record);
    }
  }

  /** Tries again to write the records a full disk kept in memory. */
  private flushUnsaved(): void {
    for (const rec of [...this.unsaved.values()]) this.saveRecord(rec);
  }

  /** claimName with the usual case (a free name) off the event loop. */
  private async claimNameAsync(name: string, id: string): Promise<void> {
    try {
      await fs.promises.symlink(id, path.join(this.layout.names, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(`name ${name}`, e);
      this.claimName(name, id);
    }
  }

  private claimName(name: string, id: string): void {
    try {
      fs.symlinkSync(id, path.join(this.layout.names, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(`name ${name}`, e);
      const holder = this.readName(name);
      throw new NsboxError('CONFLICT', `name ${name}: already in use by container ${holder ?? '?'}`, { hint: `nsbox rm -f ${name} frees it` });
    }
  }

  /** The id names/<name> points to; undefined when none, or when the link holds no id. */
  private readName(name: string): string | undefined {
    let target: string;
    try {
      target = fs.readlinkSync(path.join(this.layout.names, name));
    } catch {
      return undefined;
    }
    return ID_RE.test(target) ? target : undefined;
  }

  /**
   * Frees names/<name> if it still points to `id`. Taken away by rename first, so that a
   * claim another process made meanwhile (after someone else freed it) is never deleted: a
   * link found to point elsewhere is put back.
   */
  private releaseName(name: string | null, id: string): void {
    if (name === null || this.readName(name) !== id) return;
    const link = path.join(this.layout.names, name);
    const away = path.join(this.layout.tmp, `name-${process.pid}-${newId()}`);
    try {
      fs.renameSync(link, away);
    } catch {
      return; // freed meanwhile
    }
    try {
      const target = fs.readlinkSync(away);
      if (target !== id) fs.symlinkSync(target, link);
    } catch {
      // claimed again already: that claim stands
    } finally {
      fs.rmSync(away, { force: true });
    }
  }

  /** Every name link, by the id it points to. */
  private namesById(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    let names: string[] = [];
    try {
      names = fs.readdirSync(this.layout.names);
    } catch {
      return out; // none made yet
    }
    for (const n of names) {
      const id = this.readName(n);
      if (id) out.set(id, [...(out.get(id) ?? []), n]);
    }
    return out;
  }

  /** Frees every name whose container no longer exists (its removal was cut short). */
  private freeDanglingNames(): void {
    for (const [id, names] of this.namesById()) {
      if (this.findEntry(id)) continue;
      for (const n of names) this.releaseName(n, id);
    }
  }

  /** The container `id` (its directory, or its tombstone), or undefined. */
  private findEntry(id: string): Entry | undefined {
    const e = readEntry(this.layout, this.unsaved, id);
    if (e) return e;
    const tomb = containerEntries(this.layout).find((x) => x.startsWith(`${id}.removing-`) && TOMBSTONE_RE.test(x));
    return tomb ? readEntry(this.layout, this.unsaved, tomb) : undefined;
  }

  /**
   * Finds a container by id, unique id prefix, or name. A name whose container is gone is
   * `dangling`: rm frees it.
   */
  private resolve(ref: string): Entry | Dangling {
    if (typeof ref !== 'string' || ref === '' || ref.includes('/') || ref.includes('\0')) {
      throw invalid(`container ${JSON.stringify(ref)}: expected an id or a name`);
    }
    this.recoverOnce();
    const named = NAME_RE.test(ref) ? this.readName(ref) : undefined;
    if (named) return this.findEntry(named) ?? { kind: 'dangling', id: named, name: ref };
    const ids = new Set<string>();
    for (const x of containerEntries(this.layout)) {
      const id = TOMBSTONE_RE.exec(x)?.[1] ?? (ID_RE.test(x) ? x : undefined);
      if (id?.startsWith(ref)) ids.add(id);
    }
    if (ids.size > 1) throw invalid(`container ${ref}: ambiguous, matches ${[...ids].join(', ')}`);
    const [id] = ids;
    const e = id === undefined ? undefined : this.findEntry(id);
    if (!e) throw new NsboxError('NOT_FOUND', `container ${ref}: no such container`);
    return e;
  }

  /** resolve(), for what needs a container's record it can trust. */
  private trustedRecord(ref: string): ContainerRecord {
    const e = this.resolve(ref);
    if (e.kind === 'dangling') throw new NsboxError('NOT_FOUND', `container ${ref}: no such container (its name was left behind; nsbox rm ${ref} frees it)`);
    if (e.bad) throw e.bad;
    if (e.kind === 'tomb') throw new NsboxError('NOT_FOUND', `container ${ref}: being removed`);
    if (!e.rec) throw this.recordless(e);
    return e.rec;
  }

  private recordless(e: Entry): NsboxError {
    return new NsboxError('BAD_STATE', `container ${e.id}: its directory ${e.dir} holds no record (left half made or half removed)`, {
      path: e.dir,
      hint: `nsbox rm -f ${e.id} removes it`,
    });
  }

  /** Whether the process that made this record still runs (this one included). */
  private supervisorAlive(rec: ContainerRecord): boolean {
    // A worker's: its thread must still run too (terminated, it left its runs to recovery).
    if (rec.supervisorThread !== undefined && !threadAlive(rec.supervisor, rec.supervisorThread)) return false;
    if (rec.supervisor === process.pid) return rec.supervisorStart == null || rec.supervisorStart === ownStartTime();
    if (rec.supervisorStart == null) return fs.existsSync(`/proc/${rec.supervisor}`);
    return processAlive(rec.supervisor, rec.supervisorStart);
  }

  private statusOf(rec: ContainerRecord): ContainerStatus {
    if (rec.status === 'creating') return this.supervisorAlive(rec) ? 'creating' : 'dead';
    if (rec.status !== 'running') return rec.status;
    // Running per the record: believe it only while that very process is alive.
    return processAlive(rec.pid ?? undefined, rec.pidStart ?? undefined) ? 'running' : 'exited';
  }

  private entryStatus(e: Entry): ContainerStatus {
    if (e.kind === 'tomb') return ownerAlive(e.remover!.pid, e.remover!.start, e.remover!.thread) ? 'removing' : 'dead';
    return e.rec ? this.statusOf(e.rec) : 'dead';
  }

  /**
   * Whether a process that died left this container half made or half removed (or, for a
   * `remove` container, exited and never removed): work anyone may finish.
   */
  private abandoned(e: Entry): boolean {
    if (e.bad) return false; // removed on request only (rm -f), never on a guess
    const status = this.entryStatus(e);
    if (status === 'dead') return true;
    return !!e.rec?.remove && status !== 'running' && status !== 'removing' && !this.supervisorAlive(e.rec);
  }

  private info(rec: ContainerRecord): ContainerInfo {
    const { pidStart: _a, pidNamespace: _b, supervisor: _c, imageLayer: _d, supervisorStart: _e, config: _f, ...info } = rec;
    void _a;
    void _b;
    void _c;
    void _d;
    void _e;
    void _f;
    return { ...info, status: this.statusOf(rec) };
  }

  /** What ps shows of an entry: its record's, or what is known of one without a record. */
  private entryInfo(e: Entry, names: Map<string, string[]>): ContainerInfo {
    const status = this.entryStatus(e);
    // Its name is the link in names/ (a rename changes only that), never a stale record's.
    if (e.rec) return { ...this.info(e.rec), status, name: this.currentName(e.id, names) ?? (status === 'creating' ? e.rec.name : null) };
    let created: string;
    try {
      created = fs.lstatSync(e.dir).mtime.toISOString();
    } catch {
      created = new Date(0).toISOString();
    }
    return {
      id: e.id,
      name: names.get(e.id)?.[0] ?? null,
      image: '',
      command: [],
      driver: this.storageDriver,
      volumes: [],
      status,
      pid: null,
      exitCode: null,
      signal: null,
      created,
      startedAt: null,
      finishedAt: null,
      remove: false,
    };
  }

  /**
   * What nsbox knows of a container: what ps shows, plus how it was run (`config`: null for a
   * record from before nsbox kept it), its mounts, the OOM verdict and its image layer.
   */
  inspect(ref: string): ContainerInspect {
    this.layout.verify();
    this.flushUnsaved();
    const e = this.resolve(ref);
    if (e.kind === 'dangling' || e.bad) this.trustedRecord(ref); // throws why
    const entry = e as Entry;
    const info = this.entryInfo(entry, this.namesById());
    const rec = entry.rec;
    return {
      ...info,
      oomKilled: info.killedFor === 'oom',
      config: rec?.config ?? null,
      mounts: rec ? mountsOf(rec) : [],
      imageLayer: rec?.imageLayer ?? null,
      supervisor: rec?.supervisor ?? null,
      // A state directory is only ever its owner's (Layout.verify): a user's containers are rootless.
      idMap: isRootless() ? (rec?.subid ? 'subuid' : 'single') : rec?.userns ? 'auto' : null,
      userns: rec?.userns
        ? { uidMap: idMapText(rec.userns.uidBase, rec.userns.size).trim(), gidMap: idMapText(rec.userns.gidBase, rec.userns.size).trim() }
        : rec?.subid
          ? { uidMap: mapTexts(rec.subid).uidMap.trim(), gidMap: mapTexts(rec.subid).gidMap.trim() }
          : null,
    };
  }

  /**
   * Containers on disk; only running ones unless `all`. Every directory under containers/ is
   * listed: one half made or half removed as 'creating', 'removing' or 'dead'. A container
   * whose record cannot be trusted is left out and reported to `onError` (default: a process
   * warning).
   */
  list(options: ListOptions = {}): ContainerInfo[] {
    const o = checkOptions('list', LIST, options);
    this.layout.verify();
    this.recoverOnce();
    this.flushUnsaved();
    const report = o.onError ?? ((e: NsboxError) => process.emitWarning(e.message, { code: 'NSBOX_BAD_STATE' }));
    const names = this.namesById();
    const out: ContainerInfo[] = [];
    for (const x of containerEntries(this.layout)) {
      let e: Entry | undefined;
      try {
        e = readEntry(this.layout, this.unsaved, x);
      } catch (err) {
        if (!(err instanceof NsboxError) || err.code !== 'BAD_STATE') throw err;
        report(err, x);
        continue;
      }
      if (!e) continue;
      if (e.bad) {
        report(e.bad, e.id);
        continue;
      }
      const info = this.entryInfo(e, names);
      if (o.all || info.status === 'running') out.push(info);
    }
    return out.sort((a, b) => b.created.localeCompare(a.created));
  }

  /**
   * Finishes, once per Runtime, what processes that died left half done: containers half made
   * or half removed, `remove` containers never removed, names of containers that are gone.
   * Never fails the call that triggered it: what it cannot finish is listed, and prune or
   * rm -f reports why.
   */
  private recoverOnce(): void {
    if (this.recovered) return;
    this.recovered = true;
    try {
      // A container a killed committer left frozen cannot die (nor be reaped, nor its cgroups
      // go) until thawed: first.
      thawDeadCommits();
    } catch {
      // prune says why
    }
    try {
      const namesBefore = this.namesById();
      const unrecorded: string[] = [];
      for (const x of containerEntries(this.layout)) {
        try {
          const e = readEntry(this.layout, this.unsaved, x);
          if (e && this.abandoned(e)) this.destroyIfFree(e);
          else if (e && this.endUnrecorded(e)) unrecorded.push(e.id);
        } catch {
          // listed as it is; prune and rm -f say why it cannot be removed
        }
      }
      // After the call that got here (a start's hot path, often): a lock, a few rmdirs and a
      // record for each, only when a supervisor was killed.
      if (unrecorded.length) setImmediate(() => this.finishUnrecorded(unrecorded)).unref();
      this.recoverRenames();
      this.freeDanglingNames();
      for (const names of namesBefore.values()) for (const n of names) if (this.readName(n) === undefined) this.freedNames.add(n);
    } catch {
      // the same
    }
  }

  /**
   * A kept container whose run ended with nobody to record it: its supervisor was killed
   * (SIGKILL, or a process.exit() that could not reap it in time), or its monitor was. It died
   * with it, but its record still says 'running' and its empty cgroups stay on the host.
   */
  private endUnrecorded(e: Entry): boolean {
    const rec = e.rec;
    if (e.kind !== 'live' || !rec || e.bad || rec.status !== 'running') return false;
    return !this.supervisorAlive(rec) && !processAlive(rec.pid ?? undefined, rec.pidStart ?? undefined);
  }

  /**
   * What endUnrecorded found, finished under each container's lock (a start of it by another
   * process holds it while it makes the new run's cgroups): its cgroups removed, wherever its
   * supervisor made them (only empty ones can be), then its record says 'exited' (the status
   * it was shown with already; its exit status is unknown), so that no later Runtime looks at
   * it again. Never fails: what is left, prune removes.
   */
  private finishUnrecorded(ids: string[]): void {
    for (const id of ids) {
      try {
        const lock = ContainerLock.tryAcquire(this.layout, id, 'recover');
        if (!lock) continue;
        try {
          const e = this.findEntry(id);
          if (!e || !this.endUnrecorded(e)) continue;
          if (!removeDeadCgroups(id, e.rec!.cgroups)) continue; // a process on its way out: next time
          const rec: ContainerRecord = { ...e.rec!, status: 'exited' };
          writeRecordFile(path.join(e.dir, 'container.json'), rec);
        } finally {
          lock.release();
        }
      } catch {
        // the same
      }
    }
  }

  /**
   * Removes an entry unless another process holds its lock (a commit, a remove); checked
   * again under the lock. True when removed.
   */
  private destroyIfFree(e: Entry, wanted: (e: Entry) => boolean = (x) => this.abandoned(x)): boolean {
    const lock = ContainerLock.tryAcquire(this.layout, e.id, 'remove');
    if (!lock) return false;
    try {
      const now = this.findEntry(e.id);
      if (!now || !wanted(now)) return false;
      return this.destroyEntry(now);
    } finally {
      lock.release();
    }
  }

  /** destroyIfFree with the removal's file system work off the event loop (prune). */
  private async destroyIfFreeAsync(e: Entry, wanted: (e: Entry) => boolean): Promise<boolean> {
    const lock = ContainerLock.tryAcquire(this.layout, e.id, 'remove');
    if (!lock) return false;
    try {
      const now = this.findEntry(e.id);
      if (!now || !wanted(now)) return false;
      return await this.destroyEntryAsync(now);
    } finally {
      await lock.releaseAsync();
    }
  }

  /**
   * Removes a container, the caller holding its lock: renamed to a tombstone first (so that
   * nothing takes a half-deleted directory for a container, and a kill leaves something
   * prune recognises), then its cgroup, then its layers and directory, then its names.
   * False when it was gone already.
   */
  private destroyEntry(e: Entry): boolean {
    let dir = e.dir;
    if (e.kind === 'live') {
      // A mount on the host below it would move with the rename, out of the path the person
      // who must unmount it knows: refused before anything changes.
      const mounted = mountsUnder(e.dir);
      if (mounted.length) {
        throw new NsboxError('EBUSY', `remove container ${e.id}: ${mounted[0]} is a mount point on the host`, {
          path: mounted[0]!,
          hint: `umount ${mounted[0]}`,
        });
      }
      dir = tombstonePath(this.layout, e.id);
      try {
        fs.renameSync(e.dir, dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw fromSystemError(`remove container ${e.id}`, err);
      }
    }
    // Its cgroup while the tombstone says what is left to do: a remover killed while waiting
    // for the container's last processes to leave it leaves the tombstone for the next one.
    removeContainerCgroup(e.id, 3000, e.rec?.cgroups);
    // The record is trusted only as the live container's (a tombstone's may be half deleted).
    if (e.kind === 'live' && e.rec && !e.bad) this.workspaceOf(e.rec, dir).destroy();
    else removeTree(e.id, dir);
    // Every name linked to it: the one it was run with, or what a rename made of it.
    for (const n of this.namesById().get(e.id) ?? []) this.releaseName(n, e.id);
    if (e.kind === 'live' && e.rec && !e.bad && e.rec.userns) releaseRange(this.layout, e.id, e.rec.userns);
    this.unsaved.delete(e.id);
    return true;
  }

  /**
   * destroyEntry with its file system work off the event loop (issue 14: a removal racing many
   * starts must not stall them): the rename, the cgroups' rmdirs and the names on the pool,
   * the write layer removed by removeTreeAsync.
   */
  private async destroyEntryAsync(e: Entry, batched = true): Promise<boolean> {
    let dir = e.dir;
    const trusted = e.kind === 'live' && e.rec && !e.bad;
    if (batched && trusted && e.kind === 'live') {
      const done = await this.destroyBatched(e, false);
      if (done !== undefined) return done;
    }
    // What the steps below need, read at once (each is a turn of the pool): the host's mounts,
    // the write layer's kind (the same after the rename), the names linked to it.
    const [mountinfo, disk, names] = await Promise.all([
      e.kind === 'live' ? fs.promises.readFile('/proc/self/mountinfo', 'utf8') : undefined,
      trusted ? Workspace.diskOfAsync(e.dir) : undefined,
      this.namesOf(e.id),
    ]);
    if (e.kind === 'live') {
      const mounted = mountsUnder(e.dir, mountinfo);
      if (mounted.length) {
        throw new NsboxError('EBUSY', `remove container ${e.id}: ${mounted[0]} is a mount point on the host`, {
          path: mounted[0]!,
          hint: `umount ${mounted[0]}`,
        });
      }
      dir = tombstonePath(this.layout, e.id);
      try {
        await fs.promises.rename(e.dir, dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw fromSystemError(`remove container ${e.id}`, err);
      }
    }
    // Its cgroups and its layers at once: neither waits for the other.
    await Promise.all([
      removeContainerCgroupAsync(e.id, 3000, e.rec?.cgroups),
      trusted ? new Workspace(dir, e.rec!.imageLayer, e.rec!.driver, !!e.rec!.readOnly, disk).destroyAsync() : removeTreeOffLoop(e.id, dir),
    ]);
    for (const n of names) this.releaseName(n, e.id);
    if (trusted && e.rec!.userns) releaseRange(this.layout, e.id, e.rec!.userns);
    this.unsaved.delete(e.id);
    return true;
  }

  /**
   * destroyEntryAsync of a live container with a trusted record, in two jobs of the pool
   * (src/fsbatch.ts) where it took about a dozen: what the checks need (the host's mounts,
   * the write layer's kind, the names) in one; the tombstone rename, the cgroups' rmdirs and
   * the tree's removal in the other, in the same order as destroyEntryAsync. Undefined when
   * the rest is not for this path (a disk layer to unmount, a cgroup still busy, a tree another
   * process still writes into): destroyEntryAsync goes on from where it stands, the tombstone
   * being a live entry's directory as far as its own steps go.
   */
  private async destroyBatched(e: Entry, takeLock: false): Promise<boolean | undefined>;
  private async destroyBatched(e: Entry, takeLock: true): Promise<boolean | 'busy'>;
  private async destroyBatched(e: Entry, takeLock: boolean): Promise<boolean | undefined | 'busy'> {
    if (!takeLock) return this.destroyBatchedLocked(e, undefined);
    // With `takeLock` (a --rm container of this process, just exited): the lock is the first
    // step of the first batch (nothing after it runs when it is held elsewhere: 'busy') and
    // released by the last, or here, whatever happens in between.
    this.layout.ensure();
    const lock = ContainerLock.taken(path.join(this.layout.locks, e.id));
    try {
      const done = await this.destroyBatchedLocked(e, lock);
      if (done === 'busy') lock.markReleased();
      return done ?? (await this.destroyEntryAsync(e, false));
    } finally {
      await lock.releaseAsync();
    }
  }

  private async destroyBatchedLocked(e: Entry, lock: ContainerLock | undefined): Promise<boolean | undefined | 'busy'> {
    const names = this.layout.names;
    const first = await fsBatch([
      ...(lock ? [{ op: 'symlink', path: lock.file, to: ContainerLock.target('remove') } as BatchOp] : []),
      { op: 'read', path: '/proc/self/mountinfo', goOn: true },
      { op: 'exists', path: path.join(e.dir, 'disk.img'), goOn: true },
      { op: 'exists', path: path.join(e.dir, 'layer'), goOn: true },
      { op: 'readLinks', path: names, goOn: true },
    ]);
    if (lock && first.shift() !== null) return 'busy';
    const [mountinfo, image, layer, links] = first;
    if (typeof mountinfo !== 'string' || image !== false || layer !== false) return undefined;
    const mounted = mountsUnder(e.dir, mountinfo);
    if (mounted.length) {
      throw new NsboxError('EBUSY', `remove container ${e.id}: ${mounted[0]} is a mount point on the host`, {
        path: mounted[0]!,
        hint: `umount ${mounted[0]}`,
      });
    }
    const linked = isBatchError(links) || typeof links !== 'object' || links === null ? {} : (links as Record<string, string>);
    const tomb = tombstonePath(this.layout, e.id);
    const cgroups = containerCgroupDirs(e.id);
    const named = Object.values(linked).includes(e.id);
    // The lock's release goes last in the batch when nothing is left to do under it (no name
    // to release): a cgroup still busy, or a tree that could not be removed, stops the batch
    // before it, and the steps below finish under the lock.
    const ops: BatchOp[] = [
      { op: 'rename', path: e.dir, to: tomb },
      ...cgroups.map((c): BatchOp => ({ op: 'rmdir', path: c, tolerate: ['ENOENT'] })),
      { op: 'removeTree', path: tomb },
      ...(lock && !named ? [{ op: 'unlink', path: lock.file } as BatchOp] : []),
    ];
    const results = await fsBatch(ops);
    const renamed = results[0];
    if (isBatchError(renamed)) {
      if (renamed.code === 'ENOENT') return false;
      throw fromSystemError(`remove container ${e.id}`, batchError(renamed, e.dir));
    }
    if (lock && !named && results[ops.length - 1] === null) lock.markReleased();
    const cgroupLeft = results.slice(1, 1 + cgroups.length).some((r) => r !== null);
    const tree = results[1 + cgroups.length];
    if (cgroupLeft) await removeContainerCgroupAsync(e.id);
    if (tree !== null) {
      // What destroyAsync does from here (its retries, its errors).
      await new Workspace(tomb, e.rec!.imageLayer, e.rec!.driver, !!e.rec!.readOnly, undefined).destroyAsync();
    }
    for (const [n, target] of Object.entries(linked)) if (target === e.id) this.releaseName(n, e.id);
    if (e.rec!.userns) releaseRange(this.layout, e.id, e.rec!.userns);
    this.unsaved.delete(e.id);
    return true;
  }

  /** The names linked to `id`, read off the event loop. */
  private async namesOf(id: string): Promise<string[]> {
    let names: string[];
    try {
      names = await fs.promises.readdir(this.layout.names);
    } catch {
      return []; // none made yet
    }
    const targets = await Promise.all(names.map((n) => fs.promises.readlink(path.join(this.layout.names, n)).catch(() => undefined)));
    return names.filter((_, i) => targets[i] === id);
  }

  /** Takes the container's lock (waiting for a commit), finds it again, removes it. */
  private async removeLocked(id: string, find: () => Entry | undefined, before?: (e: Entry) => Promise<Entry | undefined>): Promise<void> {
    const lock = await ContainerLock.acquire(this.layout, id, 'remove', LOCK_WAIT_MS);
    try {
      let e = find();
      if (e && before) e = await before(e);
      if (e) await this.destroyEntryAsync(e);
    } finally {
      await lock.releaseAsync();
    }
  }

  /**
   * Removes a container. A running one is refused unless `force`: then it is killed first
   * (through its pidfd when this process started it, else by pid once its record proves the
   * pid is still the container's) and removed once it is gone. A container whose record
   * cannot be trusted is removed with `force` only, by its directory, killing nothing. One
   * left half made or half removed by a process that died is removed; a name left pointing
   * to no container is freed. Waits (a bounded time, then IN_USE) while a commit of it runs.
   */
  /**
   * Sends a signal to a running container (default SIGKILL, as `docker kill`): through the
   * pidfd when this process started it, else to its proven nsbox-init, which passes every
   * signal but SIGKILL and SIGSTOP on to the command. False when it was not running.
   */
  kill(ref: string, signal: NodeJS.Signals | number = 'SIGKILL'): boolean {
    const rec = this.trustedRecord(ref);
    if (this.statusOf(rec) !== 'running') return false;
    const mine = this.live.get(rec.id);
    if (mine) return mine.kill(signal);
    return signalProven(rec, signalNumber(signal));
  }

  /**
   * Runs another command in a running container, started by this process or another (`nsbox
   * run -d`), as `docker exec` does: see Container.exec. A container started elsewhere is
   * entered only once its record proves its pid (start time and pid namespace, checked after
   * a pidfd of it is open). Throws NOT_RUNNING for a container that is not running.
   */
  exec<O extends ExecOptions>(ref: string, options: O): ExecProcess<StreamsOf<O>>;
  exec(ref: string, options: ExecOptions): ExecProcess {
    this.layout.verify();
    const rec = this.trustedRecord(ref);
    const label = rec.name ?? rec.id;
    const mine = this.live.get(rec.id);
    if (mine) return mine.exec(options);
    if (this.statusOf(rec) !== 'running' || rec.pid === null || rec.pidStart === null) throw notRunning(label);
    if (rec.pidNamespace === null) {
      throw new NsboxError('EPERM', `exec: container ${label}: no pid namespace on record to prove its pid ${rec.pid} is the container's`);
    }
    return execIn({ pid: rec.pid, label, proof: { start: rec.pidStart, pidNamespace: rec.pidNamespace } }, options);
  }

  /**
   * Stops a running container as `docker stop` does: SIGTERM, then SIGKILL of the whole
   * container after `timeout` ms (default 10 s). Resolves once it has exited.
   */
  async stop(ref: string, options: StopOptions = {}): Promise<void> {
    const timeout = checkOptions('stop', STOP, options).timeout ?? 10_000;
    if (typeof timeout !== 'number' || !(timeout >= 0)) throw invalid('stop: timeout: expected milliseconds');
    const rec = this.trustedRecord(ref);
    if (this.statusOf(rec) !== 'running') return;
    const mine = this.live.get(rec.id);
    if (mine) {
      await mine.stop({ timeout });
      return;
    }
    if (!signalProven(rec, 'SIGTERM') || (await waitGone(rec, timeout))) return;
    await killAndWait(rec);
  }

  /**
   * Waits until a container has exited (started by this process or another) and resolves to
   * its exit code and signal as its supervisor recorded them.
   */
  async wait(ref: string): Promise<{ exitCode: number | null; signal: string | null }> {
    const rec = this.trustedRecord(ref);
    const mine = this.live.get(rec.id);
    if (mine) {
      const s = await mine.wait().catch(() => mine.exitStatus!);
      return { exitCode: s.exitCode, signal: s.signal };
    }
    let goneAt: number | undefined;
    for (;;) {
      const now = this.trustedRecord(rec.id);
      if (now.status === 'exited') return { exitCode: now.exitCode, signal: now.signal };
      if (this.statusOf(now) !== 'running') {
        // Its supervisor writes the status once it has reaped the container: give it a moment,
        // unless it is dead too (then nobody will, and the status is not known).
        goneAt ??= Date.now();
        if (!this.supervisorAlive(now) || Date.now() - goneAt > 5000) {
          // It may have written the status between our read and its exit: read once more.
          const last = this.trustedRecord(rec.id);
          return last.status === 'exited' ? { exitCode: last.exitCode, signal: last.signal } : { exitCode: null, signal: null };
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async remove(ref: string, options: { force?: boolean | undefined } = {}): Promise<void> {
    const { force = false } = checkOptions('remove', FORCE, options);
    this.layout.verify();
    let r: Entry | Dangling;
    try {
      r = this.resolve(ref);
    } catch (e) {
      // A name left behind, freed by this Runtime's recovery on the way here: what rm asked for.
      if (e instanceof NsboxError && e.code === 'NOT_FOUND' && this.freedNames.has(ref)) return;
      throw e;
    }
    if (r.kind === 'dangling') {
      this.releaseName(r.name, r.id);
      return;
    }
    const id = r.id;
    if (r.kind === 'tomb') {
      if (this.entryStatus(r) === 'removing') {
        // Another process is removing it: done once its tombstone is gone.
        const deadline = Date.now() + LOCK_WAIT_MS;
        while (this.findEntry(id) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
        if (this.findEntry(id)) throw new NsboxError('IN_USE', `container ${ref}: process ${r.remover!.pid} is removing it, still after ${LOCK_WAIT_MS} ms`);
        return;
      }
      return this.removeLocked(id, () => this.findEntry(id));
    }
    if (r.bad) {
      if (!force) throw r.bad;
      return this.removeUntrusted(id);
    }
    if (r.rec) {
      const status = this.statusOf(r.rec);
      if (status === 'running' && !force) {
        throw new NsboxError('IN_USE', `container ${r.rec.name ?? id} is running`, { hint: 'use force (-f) to kill and remove it' });
      }
      if (status === 'creating') {
        throw new NsboxError('IN_USE', `container ${r.rec.name ?? id} is being created by process ${r.rec.supervisor}`, { hint: 'try again once it runs' });
      }
    }
    this.removing.add(id);
    try {
      await this.removeLocked(
        id,
        () => this.findEntry(id),
        async (e) => {
          if (e.kind !== 'live' || !e.rec || e.bad) return e;
          if (this.statusOf(e.rec) !== 'running') return e;
          if (!force) throw new NsboxError('IN_USE', `container ${e.rec.name ?? id} is running`, { hint: 'use force (-f) to kill and remove it' });
          const mine = this.live.get(id);
          if (mine) {
            mine.kill('SIGKILL');
            await mine.wait().catch(() => undefined); // its bookkeeping is replaced by the removal
          } else {
            await killAndWait(e.rec);
          }
          return this.findEntry(id);
        },
      );
    } finally {
      this.removing.delete(id);
    }
  }

  /**
   * Removes containers/<id> (an id: checked) and the names pointing to it. Nothing in its
   * record is used: not its pid (no process is killed but one this process started, through
   * its pidfd), nor its name, nor its paths.
   */
  private async removeUntrusted(id: string): Promise<void> {
    const mine = this.live.get(id);
    this.removing.add(id);
    try {
      if (mine) {
        mine.kill('SIGKILL');
        await mine.wait().catch(() => undefined); // its bookkeeping may fail on the bad record: removed below
      }
      await this.removeLocked(id, () => {
        const e = this.findEntry(id);
        // Whatever its record says now, it is not used.
        return e && { kind: e.kind, id, dir: e.dir, ...(e.remover ? { remover: e.remover } : {}) };
      });
    } finally {
      this.removing.delete(id);
    }
  }

  /**
   * A new image from a container's root: the merged view (image plus writes, deletions
   * honoured, no whiteouts), without the contents of volumes. Running or stopped. Holds the
   * container's lock for the whole walk and publish (a remove waits), and publishes nothing
   * when the layers it walked changed identity meanwhile. With `output`, the tarball is
   * written under a temp name beside it and renamed into place when complete.
   */
  async commit(ref: string, image: string, options: CommitOptions = {}): Promise<ImageInfo> {
    const o = checkOptions('commit', COMMIT, options);
    image = validateImageName(image);
    this.layout.verify();
    const id = this.trustedRecord(ref).id;
    if (this.images.find(image)) throw new NsboxError('CONFLICT', `image ${image}: already exists (remove it first with rmi)`);
    const lock = await ContainerLock.acquire(this.layout, id, 'commit', LOCK_WAIT_MS);
    let tmp: string | undefined;
    let thaw: (() => void) | null = null;
    const output = o.output === undefined ? undefined : path.resolve(o.output);
    const tmpOutput = output && path.join(path.dirname(output), `.${path.basename(output)}.nsbox-tmp-${process.pid}`);
    try {
      const rec = this.committable(id, ref);
      // A running container is held still while its layers are read: the walk then sees one
      // moment of its root, and a container swapping files for links cannot race it.
      if (
        this.statusOf(rec) === 'running' &&
        rec.pid &&
        rec.pidNamespace &&
        processAlive(rec.pid, rec.pidStart ?? undefined) &&
        processPidNamespace(rec.pid) === rec.pidNamespace &&
        rec.pidNamespace !== processPidNamespace('self')
      ) {
        thaw = await freezeContainer(rec.pid, rec.pidNamespace);
      }
      const before = layerIdentity(rec, this.layout);
      const workspace = this.workspaceOf(rec);
      const exclude = rec.volumes.map((v) => v.target);
      tmp = this.layout.makeTemp('commit');
      // The image is made straight from the layers (unchanged files hard-linked from the
      // image layer), never from the tarball; with -o, both come from one walk.
      const rootfs = path.join(tmp, 'rootfs');
      fs.mkdirSync(rootfs, { mode: 0o755 });
      let r: { entries: number; bytes: number };
      try {
        r = tmpOutput ? await workspace.exportTarAndTree(tmpOutput, rootfs, exclude) : await workspace.exportTree(rootfs, exclude);
      } catch (e) {
        throw commitError(e, image, output, tmp);
      }
      // A layer that vanished or was replaced during the walk (a remover that ignored the
      // lock, an rmi -f) showed what lies under it: such a walk is not the container's root.
      const after = this.findEntry(id);
      if (after?.kind !== 'live' || !after.rec || layerIdentity(after.rec, this.layout) !== before) {
        throw new NsboxError('EBUSY', `commit ${ref}: its layers were removed or replaced during the commit: no image made`);
      }
      const info = this.images.publish(tmp, image, { size: r.bytes, digest: '', source: 'commit' });
      if (tmpOutput) {
        try {
          fs.renameSync(tmpOutput, output!);
        } catch (e) {
          throw fromSystemError(`commit ${image}: rename ${tmpOutput} to ${output!}`, e);
        }
      }
      return info;
    } finally {
      thaw?.();
      lock.release();
      if (tmpOutput) fs.rmSync(tmpOutput, { force: true });
      // The addon's walk (a committed tree can be deeper than fs.rmSync's recursion), on the
      // thread pool: a failed commit of a big tree leaves a big tree to remove.
      if (tmp) await removeTreeAsync(tmp, { force: true });
    }
  }

  /**
   * Copies into a container, running or stopped (also one another process supervises), like
   * `docker cp`: a tar stream (Readable, async iterable or Buffer) is extracted into `dest`, a
   * directory; a host path lands in `dest` with docker cp's rules. Paths resolve inside the
   * container's root, never following a link out of it (see DESIGN "cp"). Owners as in the tar
   * unless `owner`. Holds the container's lock (commit and rm wait).
   */
  async copyIn(ref: string, source: CopySource, dest: string, options: CopyInOptions = {}): Promise<CopyResult> {
    options = checkOptions('copyIn', COPY_IN, options);
    const label = `cp to ${ref}:${dest}`;
    const { copyInto } = await import('./copy');
    const { root, release } = await this.copyRoot(ref, label);
    try {
      return await copyInto(root, source, dest, options, label);
    } catch (e) {
      throw this.subidCopyError(e, ref);
    } finally {
      await release();
    }
  }

  /**
   * A copy refused by a file the container gave to another id of its subordinate range (a
   * directory of mode 0700 of uid 1000 inside): cp runs as the user, which such files are not.
   */
  private subidCopyError(e: unknown, ref: string): unknown {
    if (!(e instanceof NsboxError) || e.code !== 'EACCES' || e.hint !== undefined) return e;
    let subid = false;
    try {
      subid = this.trustedRecord(ref).subid !== undefined;
    } catch {
      return e;
    }
    if (!subid) return e;
    return new NsboxError(e.code, e.message, {
      ...(e.path !== undefined ? { path: e.path } : {}),
      cause: e,
      hint: `the path is reached through files of another id of the container's subordinate range, which cp (run as you) cannot open; copy through the container instead (nsbox exec ${ref} tar ...), or give it to root inside first`,
    });
  }

  /**
   * A tar stream of a path in a container, running or stopped: entries named after its last
   * component, links as links. Resolves once the path is found; the container's lock is held
   * until the stream ends or is destroyed, so read it to the end or destroy it.
   */
  async copyOut(ref: string, path_: string, options: CopyOutOptions = {}): Promise<Readable> {
    options = checkOptions('copyOut', COPY_OUT, options);
    const label = `cp from ${ref}:${path_}`;
    const { copyOutOf, toReadable } = await import('./copy');
    const { root, release } = await this.copyRoot(ref, label);
    let out: ReturnType<typeof copyOutOf>;
    try {
      out = copyOutOf(root, path_, options, label);
    } catch (e) {
      await release();
      throw this.subidCopyError(e, ref);
    }
    let done: Promise<void> | undefined;
    const finish = (): Promise<void> => {
      done ??= (async () => {
        out.close();
        await release();
      })();
      return done;
    };
    const stream = toReadable(
      (async function* released() {
        try {
          yield* out.chunks;
        } finally {
          await finish();
        }
      })(),
    );
    // Destroyed before it was read, the generator never ran: its finally would not either.
    // (Nobody is left to hear a failure to close then.)
    stream.once('close', () => void finish().catch(() => {}));
    return stream;
  }

  /** The container's root for a copy, under its lock: its mounted root while it runs, else its layers. */
  private async copyRoot(ref: string, label: string): Promise<{ root: ContainerRoot; release: () => Promise<void> }> {
    this.layout.verify();
    const id = this.trustedRecord(ref).id;
    const { openRunningRoot, openStoppedRoot } = await import('./copy-root');
    const lock = await ContainerLock.acquire(this.layout, id, 'copy', LOCK_WAIT_MS);
    try {
      const e = this.findEntry(id);
      if (!e || e.kind === 'tomb') throw new NsboxError('NOT_FOUND', `${label}: no such container (removed)`);
      if (e.bad) throw e.bad;
      if (!e.rec) throw this.recordless(e);
      const rec = e.rec;
      const status = this.statusOf(rec);
      if (status === 'creating' || status === 'dead')
        throw new NsboxError('BAD_STATE', `${label}: the container is ${status === 'dead' ? 'left half made by a process that died' : 'being created'}`);
      if (rec.userns && status !== 'running') {
        // Its write layer is owned by its host id range and carries user.overlay.* metadata:
        // only its own mount (in its user namespace, the image idmapped) shows it as it is.
        throw new NsboxError(
          'UNSUPPORTED',
          `${label}: the container has a user namespace of its own (userns auto) and is not running: copies go through its running root only`,
          {
            hint: `nsbox start ${rec.name ?? rec.id}, then copy`,
          },
        );
      }
      const root =
        status === 'running'
          ? openRunningRoot(rec, label)
          : openStoppedRoot(
              rec,
              this.workspaceOf(rec),
              rec.volumes.map((v) => v.target),
              label,
            );
      if (rec.userns) root.idRange = rec.userns;
      return {
        root,
        // The root closed (a stopped one's mount gone) before the lock is let go: a start
        // must never mount the same write layer while this mount of it lives.
        release: async () => {
          try {
            await root.closeAsync();
          } finally {
            await lock.releaseAsync();
          }
        },
      };
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  /** The record of a container that can be committed, read under its lock. */
  private committable(id: string, ref: string): ContainerRecord {
    const e = this.findEntry(id);
    if (!e || e.kind === 'tomb') throw new NsboxError('NOT_FOUND', `container ${ref}: no such container (removed)`);
    if (e.bad) throw e.bad;
    if (!e.rec) throw this.recordless(e);
    const status = this.statusOf(e.rec);
    if (status === 'creating' || status === 'dead') {
      throw new NsboxError(
        'BAD_STATE',
        `container ${ref}: ${status === 'dead' ? 'left half made by a process that died' : 'being created'}: nothing to commit`,
      );
    }
    if (!fs.existsSync(e.rec.imageLayer)) {
      throw new NsboxError('NOT_FOUND', `container ${ref}: its image ${e.rec.image} was removed (rmi -f): its root cannot be committed`, {
        hint: `nsbox rm ${e.rec.name ?? id} removes the container`,
      });
    }
    return e.rec;
  }

  /**
   * Removes an image; refused while a running container uses it, even with `force`; refused
   * while a stopped one does unless `force`. A container whose record cannot be read may be
   * using it: it counts as a stopped user. A refusal throws at once; once this returns the
   * image is gone from the store, and the promise settles when its files are deleted (on
   * libuv's thread pool: the event loop is free meanwhile).
   */
  removeImage(name: string, options: { force?: boolean | undefined } = {}): Promise<void> {
    const { force = false } = checkOptions('removeImage', FORCE, options);
    name = validateImageName(name);
    const stopped: string[] = [];
    const running: string[] = [];
    for (const c of this.list({ all: true, onError: (_e, id) => stopped.push(`${id} (unreadable record)`) })) {
      if (c.image !== name) continue;
      if (c.status === 'running' || c.status === 'creating') running.push(c.name ?? c.id);
      else if (c.status !== 'removing') stopped.push(c.name ?? c.id);
    }
    return this.images.remove(name, { running, stopped }, force);
  }

  /**
   * The name ps shows for `id`: the one link in names/ that points to it, or, while a rename
   * is under way (two links), the new one once it is claimed.
   */
  private currentName(id: string, names: Map<string, string[]>): string | null {
    const mine = names.get(id);
    if (!mine?.length) return null;
    if (mine.length === 1) return mine[0]!;
    let next: string | undefined;
    try {
      next = fs.readlinkSync(path.join(this.layout.containerDir(id), RENAME_INTENT));
    } catch {
      // no rename under way: the links were made some other way; show one of them
    }
    return next !== undefined && mine.includes(next) ? next : [...mine].sort()[0]!;
  }

  /**
   * Renames a container. Crash-consistent: a name is claimed by making its link (atomic: never
   * two containers with one name), and the old name is let go only once the new one is held
   * (never none). The rename is noted first in the container's directory (`rename-to`), under
   * the container's lock: whoever finds it after a kill (the next Runtime, prune, the next
   * rename) finishes it: the new name kept if it was claimed, the old one otherwise.
   */
  async rename(ref: string, newName: string): Promise<void> {
    if (typeof newName !== 'string' || !NAME_RE.test(newName)) {
      throw invalid(`rename: name ${JSON.stringify(newName)}: letters, digits, '_', '.', '-'`);
    }
    this.layout.verify();
    const id = this.trustedRecord(ref).id;
    const lock = await ContainerLock.acquire(this.layout, id, 'rename', LOCK_WAIT_MS);
    try {
      const e = this.findEntry(id);
      if (!e || e.kind === 'tomb') throw new NsboxError('NOT_FOUND', `container ${ref}: no such container (removed)`);
      if (e.bad) throw e.bad;
      if (!e.rec) throw this.recordless(e);
      const status = this.statusOf(e.rec);
      if (status === 'creating' || status === 'dead') {
        throw new NsboxError('BAD_STATE', `container ${ref}: ${status === 'dead' ? 'left half made by a process that died' : 'being created'}: not renamed`);
      }
      this.finishRename(id); // one a killed process left: the lock is ours, so it is not under way
      const old = this.namesById().get(id) ?? [];
      if (old.includes(newName)) throw invalid(`rename: container ${ref} is already named ${newName}`);
      const intent = path.join(e.dir, RENAME_INTENT);
      try {
        fs.symlinkSync(newName, intent);
      } catch (err) {
        throw fromSystemError(`rename ${ref}`, err);
      }
      try {
        this.claimName(newName, id);
      } catch (err) {
        fs.rmSync(intent, { force: true });
        throw err;
      }
      for (const n of old) this.releaseName(n, id);
      fs.rmSync(intent, { force: true });
    } finally {
      lock.release();
    }
  }

  /**
   * Finishes the rename a killed process left noted in the directory of `id` (the caller holds
   * its lock): when the new name was claimed, the others are let go; the note goes either way.
   */
  private finishRename(id: string): void {
    const intent = path.join(this.layout.containerDir(id), RENAME_INTENT);
    let next: string;
    try {
      next = fs.readlinkSync(intent);
    } catch {
      return;
    }
    if (NAME_RE.test(next) && this.readName(next) === id) {
      for (const n of this.namesById().get(id) ?? []) if (n !== next) this.releaseName(n, id);
    }
    fs.rmSync(intent, { force: true });
  }

  /** Renames that dead processes left half done, each finished under its container's lock. */
  private recoverRenames(): void {
    for (const x of containerEntries(this.layout)) {
      if (!ID_RE.test(x)) continue;
      try {
        fs.lstatSync(path.join(this.layout.containerDir(x), RENAME_INTENT));
      } catch {
        continue;
      }
      const lock = ContainerLock.tryAcquire(this.layout, x, 'rename');
      if (!lock) continue; // under way, or another lock holder: left for later
      try {
        this.finishRename(x);
      } finally {
        lock.release();
      }
    }
  }

  /**
   * Runs an exited container again, on its own write layer (what it wrote is still there) and
   * with the configuration it was run with: command, environment, working directory, hostname,
   * volumes, network, security, devices, limits, tmpfs, terminal. This process becomes its
   * supervisor. Refused for a running container (IN_USE), one run with `remove`, and one whose
   * record is from before nsbox kept the configuration (BAD_STATE).
   */
  start(ref: string, options: StartOptions & { detach: true }): Promise<DetachedContainer>;
  start(ref: string, options?: StartOptions & { detach?: false }): Promise<Container>;
  async start(ref: string, options: StartOptions = {}): Promise<Container | DetachedContainer> {
    const o = checkOptions('start', START, options);
    if (o.detach && (o.attach || o.signal)) throw invalid('start: detach excludes attach and signal (nothing in this process stays to serve them)');
    this.layout.verify();
    const id = this.trustedRecord(ref).id;
    // Two starts of one container, or a start during its commit or removal, wait for each other.
    const lock = await ContainerLock.acquire(this.layout, id, 'start', LOCK_WAIT_MS);
    const madeDirs: string[] = [];
    let diskMount: number | undefined;
    try {
      const rec = await this.startable(id, ref);
      // Its range must still be its own (claimed again, or refused when another holds it now).
      if (rec.userns) await holdRange(this.layout, id, rec.userns);
      const cfg = rec.config!;
      const dir = this.layout.containerDir(id);
      const hostname = cfg.hostname ?? id;
      const record: ContainerRecord = {
        ...rec,
        status: 'running',
        pid: null,
        pidStart: null,
        pidNamespace: null,
        exitCode: null,
        signal: null,
        startedAt: null,
        finishedAt: null,
        supervisor: process.pid,
        supervisorStart: ownStartTime(),
        ...(ownThread() ? { supervisorThread: ownThread()! } : {}),
      };
      delete record.killedFor;
      if (!ownThread()) delete record.supervisorThread; // a worker's last run
      const workspace = this.workspaceOf(rec);
      // A cgroup its last run left (its supervisor was killed): in the way of the new one.
      removeContainerCgroup(id, 500, rec.cgroups);
      // A detached run's exit status is its last run's, not this one's.
      fs.rmSync(path.join(dir, 'exit.json'), { force: true });
      diskMount = workspace.mountDisk();
      const processOptions: LaunchOptions = {
        root: workspace.rootSource(false, diskMount),
        command: rec.command,
        hostname,
        mounts: rec.volumes.map((v) => Volume.from(v).prepare(madeDirs)),
        stdio: o.attach ? 'pipe' : 'ignore',
        env: cfg.env,
        network: cfg.network,
        ...(cfg.cwd !== null ? { cwd: cfg.cwd } : {}),
        ...(cfg.tty ? { tty: true } : {}),
        ...(cfg.security !== undefined ? { security: cfg.security } : {}),
        ...(cfg.devices !== undefined ? { devices: cfg.devices } : {}),
        ...(cfg.limits !== undefined ? { limits: withoutDisk(cfg.limits) } : {}),
        ...(cfg.ulimits !== undefined ? { ulimits: cfg.ulimits } : {}),
        ...(cfg.timeout !== undefined ? { timeout: cfg.timeout } : {}),
        ...(cfg.tmpfs !== undefined ? { tmpfs: cfg.tmpfs } : {}),
        ...(o.signal !== undefined ? { signal: o.signal } : {}),
        ...(rec.userns ? { idRange: rec.userns } : {}),
        ...(isRootless() ? { idMap: rec.subid ?? 'single' } : {}),
        etcFiles: writeEtcFiles({ dir, hostname, network: cfg.network, imageLayer: rec.imageLayer, readOnly: !!rec.readOnly }),
      };
      if (o.detach) {
        const started = launchDetached({ ...processOptions, stdio: 'ignore' }, id, dir, {});
        try {
          return this.recordDetached(record, started);
        } finally {
          fs.closeSync(started.ack);
        }
      }
      const container = await Container.launchAsync(processOptions, {
        id,
        name: this.currentName(id, this.namesById()),
        afterExit: (status) => this.afterExit(record, status),
        endedAtExit: (status, clean, deadline) => this.endedAtExit(record, status, clean, deadline),
        commit: (img, co) => this.commit(id, img, co),
        remove: (ro) => this.remove(id, ro),
      });
      // Unattached, a terminal nobody reads would fill up and stall the container.
      if (!o.attach) container.terminal?.resume();
      try {
        record.pid = container.pid;
        record.pidStart = processStartTime(container.pid) ?? null;
        record.pidNamespace = processPidNamespace(container.pid) ?? null;
        record.startedAt = new Date().toISOString();
        setCgroups(record, container.cgroupDirs);
        writeRecordFile(path.join(dir, 'container.json'), record);
      } catch (e) {
        // Its state could not be written: it must not run unseen. Its exit is recorded as usual.
        container.kill('SIGKILL');
        container.handOver();
        throw e;
      }
      this.live.set(id, container);
      container.handOver();
      return container;
    } catch (e) {
      Volume.removeCreated(madeDirs);
      throw e;
    } finally {
      // The container's mount namespace holds its write layer now (or, failed, nothing does).
      if (diskMount !== undefined) fs.closeSync(diskMount);
      lock.release();
    }
  }

  /**
   * The record of a container that may be started, read under its lock. One that exited while
   * its supervisor lives is waited for until that supervisor has recorded the exit (else its
   * late write would overwrite the new start's record).
   */
  private async startable(id: string, ref: string): Promise<ContainerRecord> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const e = this.findEntry(id);
      if (!e || e.kind === 'tomb') throw new NsboxError('NOT_FOUND', `container ${ref}: no such container (removed)`);
      if (e.bad) throw e.bad;
      if (!e.rec) throw this.recordless(e);
      const rec = e.rec;
      const status = this.statusOf(rec);
      if (status === 'running') {
        throw new NsboxError('IN_USE', `container ${ref} is running: not started again`, { hint: `nsbox restart ${ref} stops it, then starts it` });
      }
      if (status !== 'exited' && status !== 'created') {
        throw new NsboxError(
          'BAD_STATE',
          `container ${ref}: ${status === 'dead' ? 'left half made by a process that died' : `being ${status === 'creating' ? 'created' : 'removed'}`}: not started`,
        );
      }
      if (rec.remove) {
        throw new NsboxError('BAD_STATE', `container ${ref} was run with remove (--rm): it is removed once it exits, never started again`, {
          hint: `nsbox rm ${ref}`,
        });
      }
      if (!rec.config) {
        throw new NsboxError('BAD_STATE', `container ${ref}: its record is from an nsbox that did not keep how it was run: it cannot be started again`, {
          hint: `nsbox commit ${ref} IMAGE, then nsbox run IMAGE, keeps what it wrote`,
        });
      }
      if (!fs.existsSync(rec.imageLayer)) {
        throw new NsboxError('NOT_FOUND', `container ${ref}: its image ${rec.image} was removed (rmi -f): it cannot be started again`, {
          hint: `nsbox rm ${ref}`,
        });
      }
      // Exited, but its supervisor has yet to write so (it runs afterExit): give it a moment.
      if (rec.status === 'running' && this.supervisorAlive(rec)) {
        if (Date.now() > deadline) {
          throw new NsboxError('IN_USE', `container ${ref}: it exited, but its supervisor (process ${rec.supervisor}) has not recorded it yet`, {
            hint: 'try again in a moment',
          });
        }
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      return rec;
    }
  }

  /** stop() then start(): `timeout` as stop's, `attach` as start's. */
  restart(ref: string, options: { timeout?: number | undefined } & StartOptions & { detach: true }): Promise<DetachedContainer>;
  restart(ref: string, options?: { timeout?: number | undefined } & StartOptions & { detach?: false }): Promise<Container>;
  async restart(ref: string, options: { timeout?: number | undefined } & StartOptions = {}): Promise<Container | DetachedContainer> {
    if (!isObject(options)) throw invalid('restart: options object expected');
    const { timeout, ...start } = options as { timeout?: number | undefined } & StartOptions;
    await this.stop(ref, timeout !== undefined ? { timeout } : {});
    return start.detach ? this.start(ref, { ...start, detach: true }) : this.start(ref, { ...start, detach: false });
  }

  /**
   * Removes every container that is not running (nor being created or removed by a live
   * process), what processes that died left half done (containers half made or half removed,
   * names of containers gone, temp files, cgroups), and leftovers of interrupted work. What
   * could not be removed (a container whose record cannot be trusted included) goes to
   * `onError`; without it, prune rejects once it has removed all it could. The trees it
   * deletes (containers' layers, leftovers of interrupted work) are deleted on libuv's thread
   * pool, one after another: the event loop keeps turning meanwhile.
   */
  async prune(options: PruneOptions = {}): Promise<string[]> {
    const o = checkOptions('prune', PRUNE, options);
    this.layout.verify();
    this.recovered = true; // done here, in full
    this.flushUnsaved();
    const removed: string[] = [];
    const failures: NsboxError[] = [];
    const fail = (e: unknown, what: string): void => {
      const err = fromSystemError(`prune ${what}`, e);
      if (o.onError) o.onError(err, what);
      else failures.push(err);
    };
    const prunable = (e: Entry): boolean => !e.bad && !['running', 'creating', 'removing'].includes(this.entryStatus(e));
    for (const x of containerEntries(this.layout)) {
      let e: Entry | undefined;
      try {
        e = readEntry(this.layout, this.unsaved, x);
        if (!e) continue;
        if (e.bad) {
          fail(e.bad, e.id);
          continue;
        }
        // A commit of it holds its lock: not removed now (in use), not a failure either.
        if (prunable(e) && (await this.destroyIfFreeAsync(e, prunable))) removed.push(e.id);
      } catch (err) {
        fail(err, e?.id ?? x);
      }
    }
    try {
      this.recoverRenames();
      this.freeDanglingNames();
    } catch (e) {
      fail(e, this.layout.names);
    }
    // cgroups of containers whose supervisor was killed.
    try {
      pruneStaleCgroups();
    } catch (e) {
      fail(e, 'cgroups');
    }
    // Host id ranges (userns 'auto') of containers that are gone.
    try {
      pruneStaleRanges(this.layout);
    } catch (e) {
      fail(e, claimsDir());
    }
    try {
      pruneLockLeftovers(this.layout);
    } catch (e) {
      fail(e, this.layout.locks);
    }
    // tmp/<what>-<pid>-<rand>: a dead pid's work will never be finished; nor will this
    // process's image removal that failed (rmi- not under way: its promise was rejected).
    let temps: string[] = [];
    try {
      temps = fs.readdirSync(this.layout.tmp);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') fail(e, this.layout.tmp); // ENOENT: none made yet
    }
    for (const t of temps) {
      const pid = Number(t.split('-')[1]);
      const failedRmi = pid === process.pid && t.startsWith('rmi-') && !removalsUnderWay.has(path.join(this.layout.tmp, t));
      if (!pid || (!failedRmi && (pid === process.pid || fs.existsSync(`/proc/${pid}`)))) continue;
      try {
        await removeTreeAsync(path.join(this.layout.tmp, t), { force: true });
      } catch (e) {
        fail(e, path.join(this.layout.tmp, t));
      }
    }
    if (failures.length) {
      const first = failures[0]!;
      throw new NsboxError(first.code, `prune: removed ${removed.length}, failed ${failures.length}: ${failures.map((f) => f.message).join('; ')}`, {
        cause: new AggregateError(failures),
        ...(first.hint !== undefined ? { hint: first.hint } : {}),
      });
    }
    return removed;
  }
}

/**
 * A failed commit walk, said plainly when the disk filled up: which of the two writes it was
 * (the tarball, or the image under the state directory) is told by the file systems.
 */
function commitError(e: unknown, image: string, output: string | undefined, tmp: string): unknown {
  if (!isNoSpace(e) && !(e instanceof NsboxError && isNoSpace({ code: e.code }))) return e;
  const code = (e as { code: string }).code;
  const full = (p: string) => {
    try {
      const st = fs.statfsSync(p);
      return st.bavail * st.bsize < 64 * 1024;
    } catch {
      return false;
    }
  };
  const where = output !== undefined && full(path.dirname(output)) ? `the tarball ${output}` : `the image under ${path.dirname(path.dirname(tmp))}`;
  return new NsboxError(errnoCode(code), `commit ${image}: writing ${where}: ${code} (no space left on device)`, {
    path: output !== undefined && where.startsWith('the tarball') ? output : tmp,
    cause: e,
    hint: 'free some space there',
  });
}

/**
 * SIGKILL a container's process this process did not start, only once it is proven to be
 * the container's: the pid, start time and pid namespace recorded at its start all match,
 * and that namespace is not ours (a container's first process always has its own). A pid and
 * start time alone could be copied from any process of the host. Then waits until it is gone.
 */
async function killAndWait(rec: ContainerRecord): Promise<void> {
  if (!signalProven(rec, 'SIGKILL')) return;
  if (!(await waitGone(rec, 5000))) throw new NsboxError('EBUSY', `container process ${rec.pid} did not exit after SIGKILL`);
}

/**
 * Sends `signal` to a container's nsbox-init started by another process, once the record
 * proves that pid is the container's (pid namespace, not the host's, and start time).
 * False when it is gone already.
 */
function signalProven(rec: ContainerRecord, signal: NodeJS.Signals | number): boolean {
  const pid = rec.pid ?? undefined;
  const start = rec.pidStart ?? undefined;
  // Namespace first, then start time: if the pid was reused in between, the start time
  // differs and the container's process is gone.
  const ns = pid === undefined ? undefined : processPidNamespace(pid);
  if (!processAlive(pid, start)) return false;
  const refuse = (why: string) =>
    new NsboxError('EPERM', `container ${rec.id}: not ${signal === 'SIGKILL' || signal === 9 ? 'killing' : 'signalling'} pid ${pid}: ${why}`, {
      hint: "its record does not prove that pid is the container's: if it is, kill it yourself, then remove the container",
    });
  if (rec.pidNamespace === null) throw refuse("no pid namespace on record to prove the process is the container's");
  if (ns !== rec.pidNamespace) throw refuse(`its pid namespace is ${ns ?? 'unknown'}, not the container's ${rec.pidNamespace}`);
  if (ns === processPidNamespace('self')) throw refuse(`it is in the host's own pid namespace ${ns}, where no container's first process is`);
  try {
    process.kill(pid!, signal);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw fromSystemError(`kill ${pid}`, e);
  }
  return true;
}

/** Whether the container's process is gone within `ms`. */
async function waitGone(rec: ContainerRecord, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (processAlive(rec.pid ?? undefined, rec.pidStart ?? undefined)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

/**
 * What `userns: 'auto'` is not built for yet, refused before anything is made: limits.disk
 * (the write layer's filesystem is made in the container), aufs and vfs (no idmapped layers),
 * and rootless (a user namespace of its own already, with the user's one id).
 */
function checkAutoUserns(o: { disk: boolean; driver: StorageDriver; readOnly: boolean }): void {
  const refuse = (why: string, hint: string) => new NsboxError('UNSUPPORTED', `userns auto: ${why}`, { hint });
  if (isRootless())
    throw refuse(`rootless (uid ${process.geteuid!()}) containers have a user namespace of their own already, mapping your uid as 0`, 'leave --userns out');
  if (o.disk) throw refuse('not with limits.disk yet', 'leave the disk limit out');
  if (o.driver !== 'overlay' && !o.readOnly)
    throw refuse(`needs the overlay storage driver (this state directory uses ${o.driver})`, 'use overlay, or --read-only');
}
