/**
 * The merged view of union layers, walked the way a commit needs it: from directory fds at
 * every step, never by path, so that a container changing its layers meanwhile (swapping a
 * directory or a file for a symlink to a host path) can never make the walk read outside
 * them. Each layer root is opened once; subdirectories are opened from their parent's fd
 * with O_NOFOLLOW; entries are listed and lstat'ed from the fd; what the visitors read is
 * opened from the fd too (src/fsat.ts). A directory that is no longer one when it is opened
 * fails the walk: the layers changed during it.
 *
 * The layers merge the way the driver that made them does it:
 * - the topmost layer holding a name decides what it is;
 * - overlay: a character device 0:0 is a whiteout (the name is deleted below it), a directory
 *   with trusted.overlay.opaque "y" (user.overlay.opaque for layers a rootless overlay made
 *   with `userxattr`) hides the lower layers' copies;
 * - aufs: `.wh.<name>` deletes <name> below, `.wh..wh..opq` makes its directory opaque, other
 *   `.wh..wh.*` entries are aufs' own bookkeeping; no `.wh.*` name is ever visited;
 * - vfs (a plain directory): every name is what it is;
 * - a directory merges with directories of the same name below it, down to the first layer
 *   where the name is something else, is whited out, or the directory is opaque.
 *
 * Names are bytes. The walk is iterative (an explicit stack, however deep the tree) and keeps
 * a bounded number of fds open per layer. Entries come sorted by bytes, a directory before
 * its contents, and visitors hear when a directory's contents are done.
 *
 * The event loop gets a turn every few milliseconds of walking (src/loop-turns.ts): the walk's
 * place is its stack and its open directory fds, which a turn leaves as they are, so every
 * rule above holds across turns as within one (an entry is still opened from the fd its
 * listing came from, and checked again when opened).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError } from '../errors';
import { getXattrFd, listDirAsync, openDir, openDirAt, openParentDir, printable, statFd, type EntryStat } from '../fsat';
import { LoopTurns } from '../loop-turns';
import type { StorageDriver } from '../workspace';

export interface LayerWalkSource {
  /** Layer directories, topmost (the write layer) first. */
  layers: string[];
  /** What made the layers: decides what a whiteout and an opaque directory are. */
  driver: StorageDriver;
  /**
   * An overlay mounted with `userxattr` (rootless) made the layers: its opaque directories say
   * so in user.overlay.opaque. Only then is that xattr read: elsewhere it is a user's own.
   */
  userxattr?: boolean;
  /** Container paths (volume mount points) kept as entries, with nothing beneath them. */
  exclude?: string[];
  /**
   * The topmost layer was written through a user namespace mapping `size` ids from these host
   * ids (userns 'auto'): its owners are given as the container saw them (host uidBase + n is
   * n; an id outside the range, which the container could not make, is the overflow id 65534).
   * The lower layers are the image's, owned as in the image.
   */
  idShift?: { uidBase: number; gidBase: number; size: number };
}

export interface WalkEntry {
  /** Path in the container without the leading '/' ('' for the root), as bytes. */
  path: Buffer;
  /** Its last component ('' for the root). */
  name: Buffer;
  /** The directory holding the copy that wins: open while the visitor runs; -1 for the root. */
  dirFd: number;
  /** The layer (as given) that copy is in. */
  layer: string;
  stat: EntryStat;
}

export interface MergedVisitor {
  entry(e: WalkEntry): Promise<void> | void;
  /** After a directory's contents (none for an excluded one), so deepest first. */
  leave?: ((e: WalkEntry) => Promise<void> | void) | undefined;
}

const { S_IFMT, S_IFDIR, S_IFCHR } = fs.constants;
const EMPTY = Buffer.alloc(0);

/** The error for an entry found changed when it was opened: the walk never follows it. */
export function layersChanged(path: Buffer, err: unknown): NsboxError {
  const code = err instanceof NsboxError ? err.code : 'EIO';
  return new NsboxError(code, `commit: /${printable(path)} changed while the layers were read (${code}): the container changed its files during the commit`, {
    path: `/${printable(path)}`,
    hint: 'commit the container stopped, or retry',
    cause: err,
  });
}

/** Errors of opening a listed entry that mean it is no longer what the listing said. */
export function isChangedError(err: unknown): boolean {
  return err instanceof NsboxError && ['ENOENT', 'ENOTDIR', 'ELOOP', 'EISDIR', 'ENXIO', 'EINVAL'].includes(err.code);
}

/** Container paths as the walk compares them: relative, normalised, as latin1 (one char a byte). */
function excludeKey(p: string): string {
  const parts = p.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw new NsboxError('INVALID_ARGUMENT', `commit: exclude ${p}: '..' in a container path`, { path: p });
  return Buffer.from(parts.join('/'), 'utf8').toString('latin1');
}

// Directory levels whose fds stay open below the current one, per chain. Above that, a
// level's fd is closed; on the way back up it is reopened through ".." of its child and
// checked to be the same directory.
const OPEN_LEVELS = 32;

/**
 * The open directories from a root down to the current one, for one tree: a stack of fds
 * with a bounded number of them open (see OPEN_LEVELS), whatever the depth.
 */
export class DirChain {
  private readonly fds: number[];
  private readonly ids: string[];

  constructor(rootFd: number) {
    this.fds = [rootFd];
    this.ids = [''];
  }

  /** The directory at the top: always open. */
  get fd(): number {
    return this.fds[this.fds.length - 1]!;
  }

  get depth(): number {
    return this.fds.length;
  }

  /** Opens the subdirectory `name` of the top (never a symlink); `id` is what it must be when reopened. */
  push(name: Buffer, id: string): number {
    const fd = openDirAt(this.fd, name);
    this.fds.push(fd);
    this.ids.push(id);
    const far = this.fds.length - 1 - OPEN_LEVELS;
    if (far > 0 && this.fds[far]! >= 0) {
      fs.closeSync(this.fds[far]!);
      this.fds[far] = -1;
    }
    return fd;
  }

  /** Closes the top; its parent becomes the top (reopened if it was closed). */
  pop(): void {
    const top = this.fds.pop()!;
    this.ids.pop();
    const parent = this.fds.length - 1;
    try {
      if (parent >= 0 && this.fds[parent] === -1) {
        const fd = openParentDir(top);
        const id = statFd(fd).id;
        if (this.ids[parent] !== '' && id !== this.ids[parent]) {
          fs.closeSync(fd);
          throw new NsboxError('ESTALE', 'a directory moved while it was read');
        }
        this.fds[parent] = fd;
      }
    } finally {
      fs.closeSync(top);
    }
  }

  /** Closes every fd, the root's too. */
  close(): void {
    for (const fd of this.fds) if (fd >= 0) fs.closeSync(fd);
    this.fds.length = 0;
  }
}

interface Candidate {
  /** The name as latin1: sorts by bytes, keys maps. */
  key: string;
  name: Buffer;
  /** Index of the layer whose copy wins. */
  layer: number;
  stat: EntryStat;
  whiteout: boolean;
  /** For a directory: the layers whose copies merge into it, topmost first. */
  dirLayers: number[];
  /** Whether lower layers can still add to it. */
  open: boolean;
}

interface Frame {
  entry: WalkEntry;
  /** Path as latin1. */
  rel: string;
  /** Layers with a copy of this directory (their chains are at its depth), topmost first. */
  layers: number[];
  children: Candidate[];
  next: number;
}

const byKey = (a: Candidate, b: Candidate): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** Visits the merged view of the layers, a directory before its contents, names sorted. */
export class MergedWalker {
  private readonly exclude: Set<string>;
  private readonly layers: string[];
  private chains: DirChain[] = [];
  private readonly turns = new LoopTurns();

  constructor(
    private readonly source: LayerWalkSource,
    private readonly visitor: MergedVisitor,
  ) {
    if (source.layers.length === 0) throw new NsboxError('INVALID_ARGUMENT', 'commit: no layers');
    this.layers = source.layers.map((l) => path.resolve(l));
    this.exclude = new Set((source.exclude ?? []).map(excludeKey));
  }

  async run(): Promise<void> {
    try {
      for (const layer of this.layers) this.chains.push(new DirChain(openDir(layer)));
      await this.walk();
    } finally {
      for (const c of this.chains) c.close();
      this.chains = [];
    }
  }

  /** An entry's owners as the container saw them (idShift), for the topmost layer. */
  private owned(layer: number, st: EntryStat): EntryStat {
    const shift = this.source.idShift;
    if (!shift || layer !== 0) return st;
    const inside = (host: number, base: number) => (host >= base && host < base + shift.size ? host - base : 65534);
    return { ...st, uid: inside(st.uid, shift.uidBase), gid: inside(st.gid, shift.gidBase) };
  }

  private async walk(): Promise<void> {
    const { layers } = this;
    const root: WalkEntry = { path: EMPTY, name: EMPTY, dirFd: -1, layer: layers[0]!, stat: this.owned(0, statFd(this.chains[0]!.fd)) };
    await this.visitor.entry(root);
    if (this.exclude.has('')) {
      await this.visitor.leave?.(root);
      return;
    }
    const all = layers.map((_, i) => i);
    const stack: Frame[] = [{ entry: root, rel: '', layers: all, children: await this.merge(all), next: 0 }];
    while (stack.length > 0) {
      if (this.turns.due) await this.turns.give();
      const frame = stack[stack.length - 1]!;
      if (frame.next === frame.children.length) {
        stack.pop();
        if (stack.length > 0) for (const l of frame.layers) this.chains[l]!.pop();
        await this.visitor.leave?.(frame.entry);
        continue;
      }
      const c = frame.children[frame.next++]!;
      if (c.whiteout) continue;
      const rel = frame.rel === '' ? c.key : `${frame.rel}/${c.key}`;
      const entry: WalkEntry = {
        path: Buffer.from(rel, 'latin1'),
        name: c.name,
        dirFd: this.chains[c.layer]!.fd,
        layer: layers[c.layer]!,
        stat: this.owned(c.layer, c.stat),
      };
      await this.visitor.entry(entry);
      if ((c.stat.mode & S_IFMT) !== S_IFDIR) continue;
      if (this.exclude.has(rel)) {
        await this.visitor.leave?.(entry);
        continue;
      }
      try {
        // Only the write layer's copy can change; the image layers below are never written.
        for (const l of c.dirLayers) this.chains[l]!.push(c.name, l === c.layer ? c.stat.id : '');
      } catch (err) {
        // (run() closes every chain.)
        throw isChangedError(err) ? layersChanged(entry.path, err) : err;
      }
      stack.push({ entry, rel, layers: c.dirLayers, children: await this.merge(c.dirLayers), next: 0 });
    }
  }

  /**
   * The names of a directory across the layers that hold it, each with the copy that wins.
   * Each layer's copy is listed on the thread pool (its fd stays open meanwhile: this walk is
   * waiting for it).
   */
  private async merge(dirLayers: number[]): Promise<Candidate[]> {
    const { driver } = this.source;
    const merged = new Map<string, Candidate>();
    for (let i = 0; i < dirLayers.length; i++) {
      const l = dirLayers[i]!;
      const fd = this.chains[l]!.fd;
      const { names, stats } = await listDirAsync(fd, this.turns);
      let opaque = false;
      const whiteouts: string[] = [];
      for (let j = 0; j < names.length; j++) {
        if ((j & 255) === 255 && this.turns.due) await this.turns.give();
        const name = names[j]!;
        const key = name.toString('latin1');
        if (driver === 'aufs' && key.startsWith('.wh.')) {
          if (key === '.wh..wh..opq') opaque = true;
          else if (!key.startsWith('.wh..wh.')) whiteouts.push(key.slice(4));
          continue;
        }
        const stat = stats[j]!;
        const type = stat.mode & S_IFMT;
        const isDir = type === S_IFDIR;
        const whiteout = driver === 'overlay' && type === S_IFCHR && stat.rdevMajor === 0 && stat.rdevMinor === 0;
        const seen = merged.get(key);
        if (seen === undefined) {
          merged.set(key, { key, name, layer: l, stat, whiteout, dirLayers: isDir ? [l] : [], open: isDir });
        } else if (seen.open) {
          if (isDir) seen.dirLayers.push(l);
          else seen.open = false;
        }
      }
      // An aufs whiteout hides the name in the layers below its own.
      for (const key of whiteouts) {
        const seen = merged.get(key);
        if (seen === undefined) merged.set(key, { key, name: EMPTY, layer: l, stat: stats[0]!, whiteout: true, dirLayers: [], open: false });
        else seen.open = false;
      }
      if (i < dirLayers.length - 1 && (opaque || (driver === 'overlay' && isOverlayOpaque(fd, this.source.userxattr === true)))) break;
    }
    return [...merged.values()].sort(byKey);
  }
}

function isOverlayOpaque(fd: number, userxattr: boolean): boolean {
  const v = getXattrFd(fd, userxattr ? 'user.overlay.opaque' : 'trusted.overlay.opaque');
  return v !== null && v.length === 1 && v[0] === 0x79; // "y"
}
