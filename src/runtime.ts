/**
 * The runtime: images, containers and their state under one root directory. Containers are
 * started from this process (no daemon, no shim) and their state is on disk, so that
 * another process (`nsbox ps`, `nsbox rm -f`) can see and end them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Container, type CommitOptions, type ExitStatus, type ProcessOptions, type Stdio } from './container';
import { NsboxError, fromSystemError, invalid } from './errors';
import { ImageStore, validateImageName, type ImageInfo, type ImportOptions } from './image/store';
import { DEFAULT_ROOT, Layout, newId, processAlive, processStartTime, readJson, writeJsonAtomic } from './layout';
import type { SecurityOptions } from './security';
import { Volume } from './volume';
import { Workspace, detectDriver, validateDriver, type StorageDriver } from './workspace';

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
  /** Fork-style clone instead of CLONE_VM|CLONE_VFORK (benchmarks). */
  forkStyle?: boolean;
}

export type ContainerStatus = 'created' | 'running' | 'exited';

/** What `ps` shows; the record on disk in containers/<id>/container.json. */
export interface ContainerInfo {
  id: string;
  name: string | null;
  image: string;
  command: string[];
  driver: StorageDriver;
  volumes: string[];
  status: ContainerStatus;
  pid: number | null;
  exitCode: number | null;
  signal: string | null;
  created: string;
  startedAt: string | null;
  finishedAt: string | null;
  remove: boolean;
  readOnly?: boolean;
}

interface ContainerRecord extends ContainerInfo {
  /** Start time of pid, to tell it from a reused pid. */
  pidStart: string | null;
  /** The process that started and watches it. */
  supervisor: number;
  imageLayer: string;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

function envObject(env: RunOptions['env']): Record<string, string> | undefined {
  if (!Array.isArray(env)) return env;
  const out: Record<string, string> = {};
  for (const kv of env) {
    if (typeof kv !== 'string') throw invalid('env: expected K=V strings');
    const eq = kv.indexOf('=');
    if (eq <= 0) throw invalid(`env: ${JSON.stringify(kv)}: expected K=V`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

export class Runtime {
  readonly root: string;
  readonly images: ImageStore;
  readonly layout: Layout;
  private driverChoice: StorageDriver | undefined;
  /** Containers this process started and still watches, by id. */
  private readonly live = new Map<string, Container>();

  constructor(options: RuntimeOptions = {}) {
    this.layout = new Layout(options.root ?? process.env.NSBOX_ROOT ?? DEFAULT_ROOT);
    this.root = this.layout.root;
    this.images = new ImageStore(this.layout);
    if (options.storageDriver !== undefined) this.driverChoice = validateDriver(options.storageDriver);
  }

  get storageDriver(): StorageDriver {
    this.driverChoice ??= detectDriver(fs.existsSync(this.root) ? this.root : path.dirname(this.root));
    return this.driverChoice;
  }

  import(tarball: string, name: string, options?: ImportOptions): Promise<ImageInfo> {
    return this.images.import(tarball, name, options);
  }

  /** Creates a container from an image and starts it. Throws NsboxError; leaves nothing on failure. */
  async run(options: RunOptions): Promise<Container> {
    if (!options || typeof options !== 'object') throw invalid('run: options object required');
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
    try {
      workspace.create();
      record = {
        id, name, image: image.name, command, driver, volumes: volumes.map(String), status: 'created',
        pid: null, pidStart: null, exitCode: null, signal: null, created: new Date().toISOString(),
        startedAt: null, finishedAt: null, remove: !!options.remove, readOnly: !!options.readOnly, supervisor: process.pid, imageLayer: image.rootfs,
      };
      const processOptions: ProcessOptions = {
        root: workspace.rootSource(!!options.remove),
        command,
        hostname: options.hostname ?? id,
        mounts: volumes.map((v) => v.prepare()),
        stdio: options.stdio ?? 'pipe',
        ...(env ? { env } : {}),
        ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
        ...(options.network !== undefined ? { network: options.network } : {}),
        ...(options.tty !== undefined ? { tty: options.tty } : {}),
        ...(options.security !== undefined ? { security: options.security } : {}),
        ...(options.forkStyle ? { forkStyle: true } : {}),
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

  private readName(name: string): string | undefined {
    try {
      return fs.readlinkSync(path.join(this.layout.names, name));
    } catch {
      return undefined;
    }
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

  private record(id: string): ContainerRecord | undefined {
    return readJson<ContainerRecord>(path.join(this.layout.containerDir(id), 'container.json'));
  }

  /** Finds a container by id, unique id prefix, or name. */
  private resolve(ref: string): ContainerRecord {
    if (typeof ref !== 'string' || ref === '' || ref.includes('/') || ref.includes('\0')) {
      throw invalid(`container ${JSON.stringify(ref)}: expected an id or a name`);
    }
    const byName = NAME_RE.test(ref) ? this.readName(ref) : undefined;
    let id = byName;
    if (!id) {
      let ids: string[] = [];
      try {
        ids = fs.readdirSync(this.layout.containers);
      } catch {
        // no containers directory yet
      }
      const matches = ids.filter((x) => x.startsWith(ref));
      if (matches.length > 1) throw invalid(`container ${ref}: ambiguous, matches ${matches.join(', ')}`);
      id = matches[0];
    }
    const rec = id ? this.record(id) : undefined;
    if (!rec) throw new NsboxError('NOT_FOUND', `container ${ref}: no such container`);
    return rec;
  }

  private statusOf(rec: ContainerRecord): ContainerStatus {
    if (rec.status !== 'running') return rec.status;
    // Running per the record: believe it only while that very process is alive.
    return processAlive(rec.pid ?? undefined, rec.pidStart ?? undefined) ? 'running' : 'exited';
  }

  private info(rec: ContainerRecord): ContainerInfo {
    const { pidStart: _a, supervisor: _b, imageLayer: _c, ...info } = rec;
    void _a; void _b; void _c;
    return { ...info, status: this.statusOf(rec) };
  }

  inspect(ref: string): ContainerInfo {
    return this.info(this.resolve(ref));
  }

  /** Containers on disk; only running ones unless `all`. */
  list(options: { all?: boolean } = {}): ContainerInfo[] {
    let ids: string[] = [];
    try {
      ids = fs.readdirSync(this.layout.containers);
    } catch {
      return [];
    }
    const out: ContainerInfo[] = [];
    for (const id of ids) {
      const rec = this.record(id);
      if (!rec) continue;
      const info = this.info(rec);
      if (options.all || info.status === 'running') out.push(info);
    }
    return out.sort((a, b) => b.created.localeCompare(a.created));
  }

  /**
   * Removes a container. A running one is refused unless `force`: then it is killed first
   * (through its pidfd when this process started it, else by pid after checking that the pid
   * still belongs to it) and removed once it is gone.
   */
  async remove(ref: string, options: { force?: boolean } = {}): Promise<void> {
    const rec = this.resolve(ref);
    if (this.statusOf(rec) === 'running') {
      if (!options.force) {
        throw new NsboxError('IN_USE', `container ${rec.name ?? rec.id} is running`, { hint: 'use force (-f) to kill and remove it' });
      }
      const mine = this.live.get(rec.id);
      if (mine) {
        mine.kill('SIGKILL');
        await mine.wait();
        if (rec.remove) return; // afterExit removed it
      } else {
        await killAndWait(rec.pid!, rec.pidStart!);
      }
    }
    this.discard(rec.id, rec.name, this.workspaceOf(rec));
  }

  /**
   * A new image from a container's root: the merged view (image plus writes, deletions
   * honoured, no whiteouts), without the contents of volumes. Running or stopped.
   */
  async commit(ref: string, image: string, options: CommitOptions = {}): Promise<ImageInfo> {
    validateImageName(image);
    const rec = this.resolve(ref);
    if (this.images.find(image)) throw new NsboxError('CONFLICT', `image ${image}: already exists (remove it first with rmi)`);
    const workspace = this.workspaceOf(rec);
    const exclude = rec.volumes.map((v) => Volume.parse(v).target);
    const tmp = this.layout.makeTemp('commit');
    try {
      // The image is made straight from the layers (unchanged files hard-linked from the
      // image layer), never from the tarball; with -o, both come from one walk.
      const rootfs = path.join(tmp, 'rootfs');
      fs.mkdirSync(rootfs, { mode: 0o755 });
      const r = options.output
        ? await workspace.exportTarAndTree(path.resolve(options.output), rootfs, exclude)
        : await workspace.exportTree(rootfs, exclude);
      return this.images.publish(tmp, image, { size: r.bytes, digest: '', source: 'commit' });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }

  /** Removes an image; refused while a container uses it unless `force`. */
  removeImage(name: string, options: { force?: boolean } = {}): void {
    const usedBy = this.list({ all: true }).filter((c) => c.image === name).map((c) => c.name ?? c.id);
    this.images.remove(name, usedBy, !!options.force);
  }

  /** Removes every container that is not running, and leftovers of interrupted work. */
  prune(): string[] {
    const removed: string[] = [];
    for (const c of this.list({ all: true })) {
      if (c.status === 'running') continue;
      const rec = this.record(c.id);
      if (!rec) continue;
      this.discard(rec.id, rec.name, this.workspaceOf(rec));
      removed.push(c.id);
    }
    // tmp/<what>-<pid>-<rand>: a dead pid's work will never be finished.
    try {
      for (const t of fs.readdirSync(this.layout.tmp)) {
        const pid = Number(t.split('-')[1]);
        if (pid && pid !== process.pid && !fs.existsSync(`/proc/${pid}`)) fs.rmSync(path.join(this.layout.tmp, t), { recursive: true, force: true });
      }
    } catch {
      // no tmp directory yet
    }
    return removed;
  }
}

/** SIGKILL a pid we did not start, once it is proven to be the same process; wait until gone. */
async function killAndWait(pid: number, start: string): Promise<void> {
  if (!processAlive(pid, start)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw fromSystemError(`kill ${pid}`, e);
  }
  for (let i = 0; i < 500 && processAlive(pid, start); i++) await new Promise((r) => setTimeout(r, 10));
  if (processAlive(pid, start)) throw new NsboxError('EBUSY', `container process ${pid} did not exit after SIGKILL`);
}
