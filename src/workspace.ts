/**
 * A container's layered root: the image layer (read-only, shared), the container's write
 * layer, the overlay workdir and a mount point. The union is normally mounted by the
 * container's first process inside its own mount namespace (DESIGN 4), so it vanishes with
 * the container; mount()/unmount() here serve inspecting a stopped container from the host.
 */
import type * as ChildProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as diskLayer from './disk-layer';
import { NsboxError, fromNative, fromSystemError, invalid } from './errors';
import { removeTree, removeTreeAsync } from './fsat';
import type { BatchOp } from './fsbatch';
import { isRootless } from './rootless';
import { mappedJob, type SubidMap } from './subid';
import type { IdRange } from './userns';
import { native } from './native';
import { overlayLowerdir, type RootSource, type WriteLayerMount } from './plan';

export type StorageDriver = 'overlay' | 'aufs' | 'vfs';

/**
 * limits.disk: the write layer on a filesystem of its own, mounted in the container's mount
 * namespace only. 'tmpfs' (a --rm container: in memory, gone with it) or 'image' (a kept
 * container: an ext4 image file in its directory, on a loop device while it runs).
 */
export interface DiskLayer {
  kind: 'tmpfs' | 'image';
  /** The limit; known when the container is made (not needed to read a layer back). */
  bytes?: number;
}

const OVERLAYFS_SUPER_MAGIC = 0x794c7630;

let filesystems: string | undefined;
function kernelHas(fs_: string): boolean {
  filesystems ??= fs.readFileSync('/proc/filesystems', 'utf8');
  return new RegExp(`\\s${fs_}$`, 'm').test(filesystems);
}

/**
 * overlay where the kernel has it and the state directory can hold an upper layer (not on
 * an overlay itself); else aufs where the kernel lists it; else vfs, a plain copy.
 */
export function detectDriver(stateDir: string): StorageDriver {
  let onOverlay = false;
  try {
    onOverlay = Number(fs.statfsSync(stateDir).type) === OVERLAYFS_SUPER_MAGIC;
  } catch {
    // a missing state dir is made later; its parent's filesystem is what counts then
    onOverlay = false;
  }
  if (kernelHas('overlay') && !onOverlay) return 'overlay';
  if (kernelHas('aufs')) return 'aufs';
  return 'vfs';
}

export function validateDriver(d: string): StorageDriver {
  if (d !== 'overlay' && d !== 'aufs' && d !== 'vfs') throw invalid(`storage driver ${JSON.stringify(d)}: overlay, aufs or vfs`);
  if (d !== 'vfs' && !kernelHas(d)) throw new NsboxError('UNSUPPORTED', `storage driver ${d}: the kernel does not list it in /proc/filesystems`);
  return d;
}

export class Workspace {
  /** containers/<id> */
  readonly dir: string;
  /** The image's read-only layer. */
  readonly imageLayer: string;
  readonly driver: StorageDriver;
  /** Write layer: for vfs, a full copy of the image. */
  readonly upper: string;
  readonly work: string;
  readonly merged: string;
  /** No write layer: the image layer itself is the root, mounted read-only (--read-only). */
  readonly readOnly: boolean;
  /** limits.disk: the write layer's own filesystem, mounted at `layerMount` in the container. */
  readonly disk: DiskLayer | undefined;
  /** Where the container mounts its write layer's filesystem (empty on the host). */
  readonly layerMount: string;
  /** A kept container's write layer with limits.disk: an ext4 image. */
  readonly diskImage: string;
  /**
   * userns 'auto': the host ids the container's namespace maps. Its write layer belongs to the
   * range's root, its overlay keeps its metadata in user.overlay.* (mounted in that namespace),
   * and a commit gives its files the owners the container saw.
   */
  idRange: IdRange | undefined;
  /** Rootless with a subordinate range: the map its files were made with (commit reads them as it, src/subid.ts). */
  subid: SubidMap | undefined;
  private mountedOnHost = false;

  constructor(dir: string, imageLayer: string, driver: StorageDriver, readOnly = false, disk?: DiskLayer) {
    this.dir = dir;
    this.imageLayer = imageLayer;
    this.driver = driver;
    this.readOnly = readOnly;
    this.disk = disk;
    this.layerMount = path.join(dir, 'layer');
    this.diskImage = path.join(dir, 'disk.img');
    this.upper = disk ? path.join(this.layerMount, 'upper') : path.join(dir, driver === 'vfs' ? 'rootfs' : 'upper');
    this.work = disk ? path.join(this.layerMount, 'work') : path.join(dir, 'work');
    this.merged = path.join(dir, 'merged');
  }

  /** Refuses limits.disk where there is no overlay write layer to put on a filesystem of its own. */
  static checkDisk(driver: StorageDriver, readOnly: boolean): void {
    if (readOnly) throw invalid('limits.disk: a --read-only container has no write layer to limit');
    if (driver !== 'overlay') throw new NsboxError('UNSUPPORTED', `limits.disk: needs the overlay storage driver (this one is ${driver})`);
  }

  /** What an existing container's directory says of its write layer (see DiskLayer). */
  static diskOf(dir: string): DiskLayer | undefined {
    if (fs.existsSync(path.join(dir, 'disk.img'))) return { kind: 'image' };
    if (fs.existsSync(path.join(dir, 'layer'))) return { kind: 'tmpfs' };
    return undefined;
  }

  /** diskOf, off the event loop. */
  static async diskOfAsync(dir: string): Promise<DiskLayer | undefined> {
    const has = (name: string) =>
      fs.promises.access(path.join(dir, name)).then(
        () => true,
        () => false,
      );
    const [image, layer] = await Promise.all([has('disk.img'), has('layer')]);
    if (image) return { kind: 'image' };
    if (layer) return { kind: 'tmpfs' };
    return undefined;
  }

  /**
   * Checks that the host can hold the limit and makes the ext4 image of a kept one; `dir`
   * must exist. Refusals come before anything is made.
   */
  async createDisk(): Promise<void> {
    const d = this.disk;
    if (!d || d.bytes === undefined) return;
    if (d.kind === 'tmpfs') return diskLayer.checkTmpfsRoom(d.bytes);
    diskLayer.checkImageRoom(this.dir, d.bytes);
    await diskLayer.makeExt4Image(this.diskImage, d.bytes);
  }

  /**
   * A kept container's image, mounted in no namespace, for rootSource(); the caller closes the
   * fd once the container has attached it (see disk-layer.ts).
   */
  mountDisk(): number | undefined {
    if (this.disk?.kind !== 'image') return undefined;
    return diskLayer.mountImageForContainer(this.diskImage);
  }

  /**
   * create() as ops of a batch (src/fsbatch.ts), for a container directory made earlier in the
   * same batch; undefined for vfs (its copy is not a few calls).
   */
  createOps(): BatchOp[] | undefined {
    if (this.readOnly) return [];
    if (this.driver === 'vfs') return undefined;
    if (this.disk) {
      return [
        { op: 'mkdir', path: this.layerMount, mode: 0o700 },
        { op: 'mkdir', path: this.merged, mode: 0o755 },
      ];
    }
    return [
      { op: 'mkdir', path: this.upper, mode: 0o755 },
      ...(this.driver === 'overlay' ? [{ op: 'mkdir', path: this.work, mode: 0o700 } as BatchOp] : []),
      { op: 'mkdir', path: this.merged, mode: 0o755 },
    ];
  }

  /** create() off the event loop (vfs's copy stays as it is: a fallback driver). */
  async createAsync(): Promise<void> {
    if (this.readOnly) return;
    if (this.driver === 'vfs') return this.create();
    try {
      if (this.disk) {
        await Promise.all([fs.promises.mkdir(this.layerMount, { mode: 0o700 }), fs.promises.mkdir(this.merged, { mode: 0o755 })]);
        return;
      }
      await Promise.all([
        fs.promises.mkdir(this.upper, { mode: 0o755 }),
        ...(this.driver === 'overlay' ? [fs.promises.mkdir(this.work, { mode: 0o700 })] : []),
        fs.promises.mkdir(this.merged, { mode: 0o755 }),
      ]);
      // The container's root writes them, and is the range's first id on the host.
      const r = this.idRange;
      if (r && this.driver === 'overlay') {
        await Promise.all([fs.promises.chown(this.upper, r.uidBase, r.gidBase), fs.promises.chown(this.work, r.uidBase, r.gidBase)]);
      }
    } catch (e) {
      throw fromSystemError(`workspace ${this.dir}`, e);
    }
  }

  /** Makes the layer directories. `dir` itself must already exist. */
  create(): void {
    if (this.readOnly) return;
    try {
      if (this.disk) {
        fs.mkdirSync(this.layerMount, { mode: 0o700 });
        fs.mkdirSync(this.merged, { mode: 0o755 });
        return;
      }
      if (this.driver === 'vfs') {
        // cp keeps owners, modes, links and times; a fallback driver, so exec'ing it is fine.
        // node:child_process is loaded only here: the common drivers never need it.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { execFileSync } = require('node:child_process') as typeof ChildProcess;
        execFileSync('cp', ['-a', '--reflink=auto', this.imageLayer, this.upper], { stdio: ['ignore', 'ignore', 'pipe'] });
        return;
      }
      fs.mkdirSync(this.upper, { mode: 0o755 });
      if (this.driver === 'overlay') fs.mkdirSync(this.work, { mode: 0o700 });
      fs.mkdirSync(this.merged, { mode: 0o755 });
    } catch (e) {
      throw fromSystemError(`workspace ${this.dir}`, e);
    }
  }

  /**
   * How the container's first process mounts its root. `disposable`: the write layer is
   * removed when the container exits, so overlay need not sync it to disk on unmount.
   */
  rootSource(disposable = false, diskMount?: number): RootSource {
    if (this.readOnly) return { type: 'bind', path: this.imageLayer, readonly: true };
    switch (this.driver) {
      case 'overlay':
        return {
          type: 'overlay',
          lower: [this.imageLayer],
          upper: this.upper,
          work: this.work,
          target: this.merged,
          ...(disposable ? { volatile: true } : {}),
          ...(this.disk ? { writeLayer: this.writeLayerMount(diskMount) } : {}),
        };
      case 'aufs':
        return { type: 'aufs', lower: [this.imageLayer], upper: this.upper, target: this.merged };
      case 'vfs':
        return { type: 'bind', path: this.upper };
    }
  }

  private writeLayerMount(diskMount: number | undefined): WriteLayerMount {
    const d = this.disk!;
    if (d.kind === 'tmpfs') {
      if (d.bytes === undefined) throw new NsboxError('BAD_STATE', 'limits.disk: a tmpfs write layer needs its size');
      return { fstype: 'tmpfs', options: ['size', String(d.bytes), 'mode', '755'], target: this.layerMount };
    }
    if (diskMount === undefined) throw new NsboxError('BAD_STATE', 'limits.disk: the image is not mounted');
    return { fstype: 'ext4', fd: diskMount, target: this.layerMount };
  }

  /** Mounts the union on the host at `merged` (for inspection); returns the path. */
  mount(): string {
    if (this.mountedOnHost) return this.merged;
    if (this.readOnly) return this.imageLayer;
    if (this.driver === 'vfs') return this.upper;
    if (this.driver === 'aufs') throw new NsboxError('UNSUPPORTED', 'workspace mount: host mounts are made for overlay only');
    if (this.disk) throw new NsboxError('UNSUPPORTED', 'workspace mount: a write layer with limits.disk is never mounted on the host');
    const err = native().mountOverlay({ lowerdir: overlayLowerdir([this.imageLayer]), upper: this.upper, work: this.work, target: this.merged });
    if (err) {
      throw fromNative(`workspace mount ${this.merged}`, err, { path: this.merged });
    }
    this.mountedOnHost = true;
    return this.merged;
  }

  unmount(): void {
    if (!this.mountedOnHost) return;
    const err = native().unmount(this.merged);
    if (err && err.code !== 'EINVAL' && err.code !== 'ENOENT') {
      throw fromNative(`workspace unmount ${this.merged}`, err, { path: this.merged });
    }
    this.mountedOnHost = false;
  }

  get mounted(): boolean {
    return this.mountedOnHost;
  }

  /**
   * A tarball of the merged view (image plus writes, deletions honoured), without what lies
   * under `exclude` (volume mount points).
   */
  async exportTar(output: string, exclude: string[] = []): Promise<{ entries: number; bytes: number }> {
    // Loaded on first use: starting a container never needs the tar code.
    const { writeMergedTar } = await import('./image/merged-tar');
    return this.withLayers((l) => writeMergedTar({ ...l, exclude }, output));
  }

  /** exportTar and exportTree in one walk of the layers. */
  async exportTarAndTree(output: string, dest: string, exclude: string[] = []): Promise<{ entries: number; bytes: number }> {
    const { writeMergedTarAndTree } = await import('./image/merged-tree');
    if (this.subid) return this.mappedTree({ dest, output }, exclude);
    return this.withLayers((l) => writeMergedTarAndTree({ ...l, exclude, shared: this.sharedLayers() }, output, dest));
  }

  /**
   * The merged view written as a directory tree into `dest` (an empty directory on the same
   * filesystem as the image): what the container did not change is hard-linked from the
   * image layer, which is never written. For vfs the root is the container's own writable
   * copy, so everything is copied.
   */
  async exportTree(dest: string, exclude: string[] = []): Promise<{ entries: number; bytes: number }> {
    const { writeMergedTree } = await import('./image/merged-tree');
    if (this.subid) return this.mappedTree({ dest }, exclude);
    return this.withLayers((l) => writeMergedTree({ ...l, exclude, shared: this.sharedLayers() }, dest));
  }

  /**
   * Rootless with a subordinate range: the walk runs in a helper that is root of a user
   * namespace with the container's map (src/ns-helper.ts), where the files it gave to other
   * ids are readable and the image's copies get the same owners (host ids of the range).
   */
  private mappedTree(to: { dest: string; output?: string | undefined }, exclude: string[]): Promise<{ entries: number; bytes: number }> {
    return this.withLayers((l) =>
      mappedJob<{ entries: number; bytes: number }>('tree', { source: { ...l, exclude, shared: this.sharedLayers() }, ...to }, 'commit'),
    );
  }

  /**
   * Runs `read` on the merged layers. A write layer with limits.disk is reached through a
   * read-only mount in no namespace (its fd), closed afterwards whatever happens: nothing is
   * mounted on a host path, and a process killed meanwhile leaves nothing mounted.
   */
  private async withLayers<T>(read: (l: { layers: string[]; driver: StorageDriver; userxattr?: boolean; idShift?: IdRange }) => Promise<T>): Promise<T> {
    if (!this.disk) return read(this.mergedLayers());
    if (this.disk.kind === 'tmpfs') {
      throw new NsboxError(
        'UNSUPPORTED',
        "commit: this --rm container's write layer (limits.disk) is a tmpfs in its own mount namespace, which the host cannot read",
        {
          hint: 'run it without --rm to commit it',
        },
      );
    }
    const fd = diskLayer.mountImageReadOnly(this.diskImage);
    try {
      return await read({ layers: [`/proc/self/fd/${fd}/upper`, this.imageLayer], driver: this.driver });
    } finally {
      // The mount's last reference: its unmount is the closing thread's work, the pool's here.
      await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
    }
  }

  /** Layers never written, whose files a commit may share by hard link: not a vfs root. */
  private sharedLayers(): string[] {
    return this.driver === 'vfs' && !this.readOnly ? [] : [this.imageLayer];
  }

  /**
   * The layers of the merged view, topmost first, and how they merge: whiteouts and opaque
   * directories are the driver's own (overlay's 0:0 devices and xattrs, aufs' .wh. names), and
   * a single plain directory (vfs, or the image itself for --read-only) has neither.
   */
  private mergedLayers(): { layers: string[]; driver: StorageDriver; userxattr?: boolean; idShift?: IdRange } {
    if (this.readOnly) return { layers: [this.imageLayer], driver: 'vfs' };
    if (this.driver === 'vfs') return { layers: [this.upper], driver: 'vfs' };
    // A state directory is its owner's alone (Layout.verify): a user's was written rootless.
    const r = this.driver === 'overlay' ? this.idRange : undefined;
    return {
      layers: [this.upper, this.imageLayer],
      driver: this.driver,
      ...(this.driver === 'overlay' && (isRootless() || r) ? { userxattr: true } : {}),
      ...(r ? { idShift: r } : {}),
    };
  }

  /** destroy() with the file system work off the event loop (the tree removed on the pool). */
  async destroyAsync(): Promise<void> {
    this.unmount();
    try {
      if (!this.readOnly) {
        const [merged, dir] = await Promise.all([fs.promises.stat(this.merged), fs.promises.stat(this.dir)]);
        if (merged.dev !== dir.dev) {
          throw new NsboxError('EBUSY', `remove workspace: ${this.merged} is a mount point on the host`, { path: this.merged, hint: `umount ${this.merged}` });
        }
      }
    } catch (e) {
      if (e instanceof NsboxError) throw e;
    }
    for (let attempt = 1; ; attempt++) {
      try {
        await removeTreeAsync(this.dir, { force: true });
        return;
      } catch (e) {
        if (!(e instanceof NsboxError && e.code === 'ENOTEMPTY' && attempt < 5)) throw e;
      }
    }
  }

  /** Removes the write layer and everything of the container; never the image or a volume. */
  destroy(): void {
    this.unmount();
    // Volumes were bound inside the container's own mount namespace, gone with it, so merged/
    // is an empty directory. Should anything be mounted there on the host all the same, a
    // recursive delete would walk into it: refuse instead.
    try {
      if (!this.readOnly && fs.statSync(this.merged).dev !== fs.statSync(this.dir).dev) {
        throw new NsboxError('EBUSY', `remove workspace: ${this.merged} is a mount point on the host`, { path: this.merged, hint: `umount ${this.merged}` });
      }
    } catch (e) {
      if (e instanceof NsboxError) throw e;
    }
    // From directory fds, never following a symlink the container left in its write layer,
    // never entering a mount, however deep the tree (src/fsat.ts).
    for (let attempt = 1; ; attempt++) {
      try {
        removeTree(this.dir, { force: true });
        return;
      } catch (e) {
        // A supervisor in another process may be writing its last state file.
        if (!(e instanceof NsboxError && e.code === 'ENOTEMPTY' && attempt < 5)) throw e;
      }
    }
  }
}
