/**
 * The runtime: images, containers and their state under one root directory. Containers are
 * started from this process (no daemon, no shim) and their state is on disk, so that
 * another process (`nsbox ps`, `nsbox rm -f`) can see and end them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { pruneStaleCgroups } from './cgroup';
import { Container, type CommitOptions, type ExitStatus, type ProcessOptions, type Stdio } from './container';
import { NsboxError, fromSystemError, invalid } from './errors';
import { ImageStore, validateImageName, type ImageInfo, type ImportOptions } from './image/store';
import { DEFAULT_ROOT, ID_RE, Layout, mountsUnder, newId, processAlive, processPidNamespace, processStartTime, writeJsonAtomic } from './layout';
import { NAME_RE, readRecord, type ContainerInfo, type ContainerRecord, type ContainerStatus } from './record';
import type { SecurityOptions } from './security';
import {
  arrayOf, boolean, checkObject, func, integer, isObject, object, oneOf, optional, pathString, shape, string, stringArray, stringRecord, union,
  type Check, type Spec,
} from './validate';
import type { DeviceSpec } from './device';
import { parseSize, type Limits, type Ulimit } from './limits';
import { checkOutputOptions, collectOutput, type OutputOptions, type OutputResult } from './output';
import { parseTmpfs, type TmpfsMount } from './plan';
import { Volume } from './volume';
import { Workspace, detectDriver, validateDriver, type StorageDriver } from './workspace';

export type { ContainerInfo, ContainerStatus } from './record';

export interface RuntimeOptions {
  /** State directory; default $NSBOX_ROOT or /var/lib/nsbox. */
  root?: string;
  /** Default: detected (overlay, else aufs, else vfs). */
  storageDriver?: StorageDriver;
}

export type VolumeSpec = string | Volume | { source: string; target: string; readonly?: boolean };

export interface RunOptions {
  image: string;
  /** Default: ['sh']. */
  command?: string[];
  name?: string;
  volumes?: VolumeSpec[];
  /** As an object, or as 'K=V' strings. */
  env?: Record<string, string> | string[];
  /** Working directory inside the container. */
  cwd?: string;
  /** Default: the container's id. */
  hostname?: string;
  /** 'none' (default): a network namespace with only lo; 'host': the host's network. */
  network?: 'none' | 'host';
  /** Default 'pipe'. */
  stdio?: Stdio;
  tty?: boolean | { cols?: number; rows?: number };
  /** Removed as soon as it exits, like --rm; wait() resolves after the removal. */
  remove?: boolean;
  /**
   * The root filesystem read-only, like --read-only: the image layer itself is the root, with
   * no write layer (the fastest start). Mount points (volume targets) must exist in the image.
   */
  readOnly?: boolean;
  /**
   * Capabilities, user, seccomp, masked paths; docker's defaults when left out
   * (`{ privileged: true }`, `{ capAdd, capDrop }`, `{ user: '1000:1000' }`, ...).
   */
  security?: SecurityOptions;
  /**
   * Host device nodes the container may use, like `--device`: `'/dev/fuse'` or
   * `'/dev/sdb:/dev/disk'` (host path, then path in the container's /dev).
   */
  devices?: DeviceSpec[];
  /**
   * Limits of the whole container: `memory`, `memorySwap`, `cpus`, `cpuset`, `cpuShares`,
   * `pids`, `cpuTime`; per process: `files`, `fileSize` (see Limits). A limit this host cannot
   * apply fails the run, naming the controller: never a silently unlimited container.
   */
  limits?: Limits;
  /** rlimits by name (nofile, nproc, core, ...): a number, or [soft, hard]. */
  ulimits?: Record<string, Ulimit>;
  /**
   * tmpfs mounts of the container's own, in its memory (charged to `limits.memory`):
   * `{ '/tmp': '64m' }` (target: size), or docker's `['/tmp:size=64m,mode=1777,noexec']`.
   */
  tmpfs?: Record<string, string | number> | string[];
  /** Milliseconds: then the whole container is killed and wait() says `timedOut`. */
  timeout?: number;
  /** Aborting it kills the whole container; wait() says `aborted`. */
  signal?: AbortSignal;
  /** Fork-style clone instead of CLONE_VM|CLONE_VFORK (benchmarks). */
  forkStyle?: boolean;
}

const isString = (v: unknown) => typeof v === 'string';
const STDIO_MODE = oneOf(['pipe', 'inherit', 'ignore'] as const);

/**
 * Every option of run(), checked at run time: a wrong type or an unknown key is refused
 * before anything is made. `security` is checked in detail by buildConfinement.
 */
const RUN_OPTIONS: Spec<RunOptions> = {
  image: string,
  command: optional(arrayOf(string, { min: 1 })),
  name: optional(string),
  volumes: optional(arrayOf<VolumeSpec>((v, name) => Volume.from(v as VolumeSpec, name))),
  env: optional(union<Record<string, string> | string[]>('K=V strings or an object of strings', [
    [Array.isArray, stringArray],
    [isObject, stringRecord],
  ])),
  cwd: optional(string),
  hostname: optional(string),
  network: optional(oneOf(['none', 'host'] as const)),
  stdio: optional(union<Stdio>("'pipe', 'inherit', 'ignore' or an array of three of them", [
    [isString, STDIO_MODE],
    [Array.isArray, arrayOf(STDIO_MODE, { min: 3, max: 3 }) as Check<Stdio>],
  ])),
  tty: optional(union<boolean | { cols?: number; rows?: number }>('a boolean or { cols, rows }', [
    [(v) => typeof v === 'boolean', boolean],
    [isObject, shape({ cols: optional(integer(1, 0xffff)), rows: optional(integer(1, 0xffff)) })],
  ])),
  remove: optional(boolean),
  readOnly: optional(boolean),
  security: optional(object as Check<SecurityOptions>),
  devices: optional(arrayOf<DeviceSpec>((v, name) => {
    if (typeof v === 'string' || (isObject(v) && typeof (v as { source?: unknown }).source === 'string')) return v as DeviceSpec;
    throw invalid(`${name}: expected HOST[:CONTAINER] or { source, target }`);
  })),
  limits: optional(object as Check<Limits>),
  ulimits: optional(object as Check<Record<string, Ulimit>>),
  tmpfs: optional(union<Record<string, string | number> | string[]>('tmpfs specs or an object of target: size', [
    [Array.isArray, stringArray],
    [isObject, object as Check<Record<string, string | number>>],
  ])),
  timeout: optional(integer(1, 2 ** 31 - 1)),
  signal: optional(((v: unknown, name: string) => {
    if (v instanceof AbortSignal) return v;
    throw invalid(`${name}: expected an AbortSignal`);
  }) as Check<AbortSignal>),
  forkStyle: optional(boolean),
};

const RUNTIME_OPTIONS: Spec<RuntimeOptions> = {
  root: optional(pathString),
  storageDriver: optional(oneOf<StorageDriver>(['overlay', 'aufs', 'vfs'])),
};

/** Options of the other methods, as small as they are. */
const FORCE: Spec<{ force?: boolean }> = { force: optional(boolean) };
const LIST: Spec<ListOptions> = { all: optional(boolean), onError: optional(func as Check<ListOptions['onError']>) };
const PRUNE: Spec<PruneOptions> = { onError: optional(func as Check<PruneOptions['onError']>) };
const COMMIT: Spec<CommitOptions> = { output: optional(pathString) };

/** Options checked as a whole, each named `<method> option <key>` in messages. */
function checkOptions<T>(method: string, spec: Spec<T>, value: unknown): T {
  return checkObject(spec, value, `${method} options`, (k) => `${method} option ${k}`);
}

export interface ListOptions {
  /** Stopped containers too, not only running ones. */
  all?: boolean;
  /**
   * Called for each container whose record cannot be trusted (skipped in the list). Default:
   * a process warning.
   */
  onError?: (error: NsboxError, id: string) => void;
}

export interface PruneOptions {
  /**
   * Called for each container that could not be removed, once the others are. Without it,
   * prune throws after removing all it could.
   */
  onError?: (error: NsboxError, id: string) => void;
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

function tmpfsMounts(spec: Record<string, string | number> | string[]): TmpfsMount[] {
  if (Array.isArray(spec)) return spec.map((s) => parseTmpfs(s, parseSize));
  return Object.entries(spec).map(([target, size]) => ({ target, ...(size === '' ? {} : { size: parseSize(size, `tmpfs ${target}`) }) }));
}

export class Runtime {
  readonly root: string;
  readonly images: ImageStore;
  readonly layout: Layout;
  private driverChoice: StorageDriver | undefined;
  /** Containers this process started and still watches, by id. */
  private readonly live = new Map<string, Container>();

  /** Throws UNSAFE_PATH when the state directory exists and others could write it. */
  constructor(options: RuntimeOptions = {}) {
    const o = checkOptions('Runtime', RUNTIME_OPTIONS, options);
    this.layout = new Layout(o.root ?? process.env.NSBOX_ROOT ?? DEFAULT_ROOT);
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

  /** Creates a container from an image and starts it. Throws NsboxError; leaves nothing on failure. */
  async run(options: RunOptions): Promise<Container> {
    if (!isObject(options)) throw invalid('run: options object required');
    // The checked copy from here on: what was checked is what is used.
    options = checkOptions('run', RUN_OPTIONS, options);
    this.layout.verify();
    const image = this.images.get(validateImageName(options.image));
    const command = options.command ?? ['sh'];
    const volumes = (options.volumes ?? []).map((v) => Volume.from(v));
    const env = envObject(options.env);
    if (options.name !== undefined && !NAME_RE.test(options.name)) {
      throw invalid(`name ${JSON.stringify(options.name)}: letters, digits, '_', '.', '-'`);
    }
    const driver = this.storageDriver;
    this.layout.ensure();

    const id = this.makeContainerDir();
    const dir = this.layout.containerDir(id);
    const name = options.name ?? null;
    const workspace = new Workspace(dir, image.rootfs, driver, !!options.readOnly);
    try {
      if (name !== null) this.claimName(name, id);
    } catch (e) {
      fs.rmdirSync(dir);
      throw e;
    }
    let container: Container | undefined;
    let record: ContainerRecord | undefined;
    /** Host directories the volumes' prepare() made: taken back if the run fails. */
    const madeDirs: string[] = [];
    try {
      workspace.create();
      record = {
        id, name, image: image.name, command, driver, volumes: volumes.map(String), status: 'created',
        pid: null, pidStart: null, pidNamespace: null, exitCode: null, signal: null, created: new Date().toISOString(),
        startedAt: null, finishedAt: null, remove: !!options.remove, readOnly: !!options.readOnly, supervisor: process.pid, imageLayer: image.rootfs,
      };
      const processOptions: ProcessOptions = {
        root: workspace.rootSource(!!options.remove),
        command,
        hostname: options.hostname ?? id,
        mounts: volumes.map((v) => v.prepare(madeDirs)),
        stdio: options.stdio ?? 'pipe',
        ...(env ? { env } : {}),
        ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
        ...(options.network !== undefined ? { network: options.network } : {}),
        ...(options.tty !== undefined ? { tty: options.tty } : {}),
        ...(options.security !== undefined ? { security: options.security } : {}),
        ...(options.forkStyle ? { forkStyle: true } : {}),
        ...(options.devices !== undefined ? { devices: options.devices } : {}),
        ...(options.limits !== undefined ? { limits: options.limits } : {}),
        ...(options.ulimits !== undefined ? { ulimits: options.ulimits } : {}),
        ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
        ...(options.tmpfs !== undefined ? { tmpfs: tmpfsMounts(options.tmpfs) } : {}),
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
      };
      container = Container.launch(processOptions, {
        id,
        name,
        afterExit: (status) => this.afterExit(record!, status),
        commit: (img, o) => this.commit(id, img, o),
        remove: (o) => this.remove(id, o),
      });
      record.status = 'running';
      record.pid = container.pid;
      record.pidStart = processStartTime(container.pid) ?? null;
      // What proves later, to another process, that this pid is still this container.
      record.pidNamespace = processPidNamespace(container.pid) ?? null;
      record.startedAt = new Date().toISOString();
      writeJsonAtomic(path.join(dir, 'container.json'), record);
      this.live.set(id, container);
      return container;
    } catch (e) {
      if (container && record) {
        // Started, but its state could not be written: it must not outlive this failure.
        record.remove = true;
        container.kill('SIGKILL');
      } else {
        this.discard(id, name, workspace);
      }
      Volume.removeCreated(madeDirs);
      throw e;
    }
  }

  private workspaceOf(rec: ContainerRecord): Workspace {
    return new Workspace(this.layout.containerDir(rec.id), rec.imageLayer, rec.driver, !!rec.readOnly);
  }

  /** A new containers/<id> directory: the id is ours once mkdir succeeded. */
  private makeContainerDir(): string {
    for (;;) {
      const id = newId();
      try {
        fs.mkdirSync(this.layout.containerDir(id), { mode: 0o700 });
        return id;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError('create container', e);
      }
    }
  }

  private afterExit(record: ContainerRecord, status: ExitStatus): void {
    this.live.delete(record.id);
    if (record.remove) {
      this.discard(record.id, record.name, this.workspaceOf(record));
      return;
    }
    record.status = 'exited';
    record.exitCode = status.exitCode;
    record.signal = status.signal;
    record.finishedAt = new Date().toISOString();
    try {
      writeJsonAtomic(path.join(this.layout.containerDir(record.id), 'container.json'), record);
    } catch {
      // removed meanwhile (rm -f from another process): nothing left to record
    }
  }

  private claimName(name: string, id: string): void {
    try {
      fs.symlinkSync(id, path.join(this.layout.names, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(`name ${name}`, e);
      const holder = this.readName(name);
      throw new NsboxError('CONFLICT', `name ${name}: already in use by container ${holder ?? '?'}`, { hint: `nsbox rm ${name} frees it` });
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

  private releaseName(name: string | null, id: string): void {
    if (name === null) return;
    const link = path.join(this.layout.names, name);
    if (this.readName(name) === id) fs.rmSync(link, { force: true });
  }

  /** Removes a container's workspace, state and name. */
  private discard(id: string, name: string | null, workspace: Workspace): void {
    workspace.destroy();
    this.releaseName(name, id);
  }

  /** Entries of containers/: ids, unless someone else put something there. */
  private containerEntries(): string[] {
    try {
      return fs.readdirSync(this.layout.containers);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []; // none made yet
      throw fromSystemError('list containers', e);
    }
  }

  /**
   * Finds a container by id, unique id prefix, or name: its id (the name of its directory),
   * and its record or, when the record cannot be trusted, why.
   */
  private resolve(ref: string): { id: string; rec: ContainerRecord; bad?: undefined } | { id: string; rec?: undefined; bad: NsboxError } {
    if (typeof ref !== 'string' || ref === '' || ref.includes('/') || ref.includes('\0')) {
      throw invalid(`container ${JSON.stringify(ref)}: expected an id or a name`);
    }
    let id = NAME_RE.test(ref) ? this.readName(ref) : undefined;
    if (!id) {
      const matches = this.containerEntries().filter((x) => ID_RE.test(x) && x.startsWith(ref));
      if (matches.length > 1) throw invalid(`container ${ref}: ambiguous, matches ${matches.join(', ')}`);
      id = matches[0];
    }
    if (id) {
      try {
        const rec = readRecord(this.layout, id);
        if (rec) return { id, rec };
      } catch (e) {
        if (e instanceof NsboxError && e.code === 'BAD_STATE') return { id, bad: e };
        throw e;
      }
    }
    throw new NsboxError('NOT_FOUND', `container ${ref}: no such container`);
  }

  /** resolve(), for what needs a record it can trust. */
  private trustedRecord(ref: string): ContainerRecord {
    const r = this.resolve(ref);
    if (r.bad) throw r.bad;
    return r.rec;
  }

  private statusOf(rec: ContainerRecord): ContainerStatus {
    if (rec.status !== 'running') return rec.status;
    // Running per the record: believe it only while that very process is alive.
    return processAlive(rec.pid ?? undefined, rec.pidStart ?? undefined) ? 'running' : 'exited';
  }

  private info(rec: ContainerRecord): ContainerInfo {
    const { pidStart: _a, pidNamespace: _b, supervisor: _c, imageLayer: _d, ...info } = rec;
    void _a; void _b; void _c; void _d;
    return { ...info, status: this.statusOf(rec) };
  }

  inspect(ref: string): ContainerInfo {
    this.layout.verify();
    return this.info(this.trustedRecord(ref));
  }

  /**
   * Containers on disk; only running ones unless `all`. A container whose record cannot be
   * trusted is left out and reported to `onError` (default: a process warning).
   */
  list(options: ListOptions = {}): ContainerInfo[] {
    const o = checkOptions('list', LIST, options);
    this.layout.verify();
    const report = o.onError ?? ((e: NsboxError) => process.emitWarning(e.message, { code: 'NSBOX_BAD_STATE' }));
    const out: ContainerInfo[] = [];
    for (const id of this.containerEntries()) {
      let rec: ContainerRecord | undefined;
      try {
        rec = readRecord(this.layout, id);
      } catch (e) {
        if (!(e instanceof NsboxError) || e.code !== 'BAD_STATE') throw e;
        report(e, id);
        continue;
      }
      if (!rec) continue;
      const info = this.info(rec);
      if (o.all || info.status === 'running') out.push(info);
    }
    return out.sort((a, b) => b.created.localeCompare(a.created));
  }

  /**
   * Removes a container. A running one is refused unless `force`: then it is killed first
   * (through its pidfd when this process started it, else by pid once its record proves the
   * pid is still the container's) and removed once it is gone. A container whose record
   * cannot be trusted is removed with `force` only, by its directory, killing nothing.
   */
  async remove(ref: string, options: { force?: boolean } = {}): Promise<void> {
    const { force = false } = checkOptions('remove', FORCE, options);
    this.layout.verify();
    const r = this.resolve(ref);
    if (r.bad) {
      if (!force) throw r.bad;
      return this.removeUntrusted(r.id);
    }
    const rec = r.rec;
    if (this.statusOf(rec) === 'running') {
      if (!force) {
        throw new NsboxError('IN_USE', `container ${rec.name ?? rec.id} is running`, { hint: 'use force (-f) to kill and remove it' });
      }
      const mine = this.live.get(rec.id);
      if (mine) {
        mine.kill('SIGKILL');
        await mine.wait();
        if (rec.remove) return; // afterExit removed it
      } else {
        await killAndWait(rec);
      }
    }
    this.discard(rec.id, rec.name, this.workspaceOf(rec));
  }

  /**
   * Removes containers/<id> (an id: checked) and the names pointing to it. Nothing in its
   * record is used: not its pid (no process is killed but one this process started, through
   * its pidfd), nor its name, nor its paths.
   */
  private async removeUntrusted(id: string): Promise<void> {
    const mine = this.live.get(id);
    if (mine) {
      mine.kill('SIGKILL');
      await mine.wait().catch(() => undefined); // its bookkeeping may fail on the bad record: removed below
    }
    const dir = this.layout.containerDir(id);
    // A recursive delete would walk into anything mounted below: refuse instead.
    const mounted = mountsUnder(dir);
    if (mounted.length) {
      throw new NsboxError('EBUSY', `remove container ${id}: ${mounted[0]} is a mount point on the host`, { path: mounted[0]!, hint: `umount ${mounted[0]}` });
    }
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
      for (const n of fs.readdirSync(this.layout.names)) {
        if (this.readName(n) === id) fs.rmSync(path.join(this.layout.names, n), { force: true });
      }
    } catch (e) {
      throw fromSystemError(`remove container ${id}`, e);
    }
  }

  /**
   * A new image from a container's root: the merged view (image plus writes, deletions
   * honoured, no whiteouts), without the contents of volumes. Running or stopped.
   */
  async commit(ref: string, image: string, options: CommitOptions = {}): Promise<ImageInfo> {
    const o = checkOptions('commit', COMMIT, options);
    validateImageName(image);
    this.layout.verify();
    const rec = this.trustedRecord(ref);
    if (this.images.find(image)) throw new NsboxError('CONFLICT', `image ${image}: already exists (remove it first with rmi)`);
    const workspace = this.workspaceOf(rec);
    const exclude = rec.volumes.map((v) => Volume.parse(v).target);
    const tmp = this.layout.makeTemp('commit');
    try {
      // The image is made straight from the layers (unchanged files hard-linked from the
      // image layer), never from the tarball; with -o, both come from one walk.
      const rootfs = path.join(tmp, 'rootfs');
      fs.mkdirSync(rootfs, { mode: 0o755 });
      const r = o.output
        ? await workspace.exportTarAndTree(path.resolve(o.output), rootfs, exclude)
        : await workspace.exportTree(rootfs, exclude);
      return this.images.publish(tmp, image, { size: r.bytes, digest: '', source: 'commit' });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }

  /**
   * Removes an image; refused while a container uses it unless `force`. A container whose
   * record cannot be read may be using it: it counts as a user.
   */
  removeImage(name: string, options: { force?: boolean } = {}): void {
    const { force = false } = checkOptions('removeImage', FORCE, options);
    const unreadable: string[] = [];
    const usedBy = this.list({ all: true, onError: (_e, id) => unreadable.push(`${id} (unreadable record)`) })
      .filter((c) => c.image === name)
      .map((c) => c.name ?? c.id);
    this.images.remove(name, [...usedBy, ...unreadable], force);
  }

  /**
   * Removes every container that is not running, and leftovers of interrupted work. What
   * could not be removed (a container whose record cannot be trusted included) goes to
   * `onError`; without it, prune throws once it has removed all it could.
   */
  prune(options: PruneOptions = {}): string[] {
    const o = checkOptions('prune', PRUNE, options);
    this.layout.verify();
    const removed: string[] = [];
    const failures: NsboxError[] = [];
    const fail = (e: unknown, what: string): void => {
      const err = fromSystemError(`prune ${what}`, e);
      if (o.onError) o.onError(err, what);
      else failures.push(err);
    };
    for (const c of this.list({ all: true, onError: fail })) {
      if (c.status === 'running') continue;
      try {
        const rec = readRecord(this.layout, c.id);
        if (!rec || this.statusOf(rec) === 'running') continue; // removed or started meanwhile
        this.discard(rec.id, rec.name, this.workspaceOf(rec));
        removed.push(c.id);
      } catch (e) {
        fail(e, c.id);
      }
    }
    // cgroups of containers whose supervisor was killed.
    try {
      pruneStaleCgroups();
    } catch (e) {
      fail(e, 'cgroups');
    }
    // tmp/<what>-<pid>-<rand>: a dead pid's work will never be finished.
    let temps: string[] = [];
    try {
      temps = fs.readdirSync(this.layout.tmp);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') fail(e, this.layout.tmp); // ENOENT: none made yet
    }
    for (const t of temps) {
      const pid = Number(t.split('-')[1]);
      if (!pid || pid === process.pid || fs.existsSync(`/proc/${pid}`)) continue;
      try {
        fs.rmSync(path.join(this.layout.tmp, t), { recursive: true, force: true });
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
 * SIGKILL a container's process this process did not start, only once it is proven to be
 * the container's: the pid, start time and pid namespace recorded at its start all match,
 * and that namespace is not ours (a container's first process always has its own). A pid and
 * start time alone could be copied from any process of the host. Then waits until it is gone.
 */
async function killAndWait(rec: ContainerRecord): Promise<void> {
  const pid = rec.pid ?? undefined;
  const start = rec.pidStart ?? undefined;
  // Namespace first, then start time: if the pid was reused in between, the start time
  // differs and the container's process is gone.
  const ns = pid === undefined ? undefined : processPidNamespace(pid);
  if (!processAlive(pid, start)) return;
  const refuse = (why: string) =>
    new NsboxError('EPERM', `container ${rec.id}: not killing pid ${pid}: ${why}`, {
      hint: 'its record does not prove that pid is the container\'s: if it is, kill it yourself, then remove the container',
    });
  if (rec.pidNamespace === null) throw refuse('no pid namespace on record to prove the process is the container\'s');
  if (ns !== rec.pidNamespace) throw refuse(`its pid namespace is ${ns ?? 'unknown'}, not the container's ${rec.pidNamespace}`);
  if (ns === processPidNamespace('self')) throw refuse(`it is in the host's own pid namespace ${ns}, where no container's first process is`);
  try {
    process.kill(pid!, 'SIGKILL');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw fromSystemError(`kill ${pid}`, e);
  }
  for (let i = 0; i < 500 && processAlive(pid, start); i++) await new Promise((r) => setTimeout(r, 10));
  if (processAlive(pid, start)) throw new NsboxError('EBUSY', `container process ${pid} did not exit after SIGKILL`);
}
