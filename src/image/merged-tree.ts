/**
 * A new image's root filesystem made straight from the merged view of a container's layers,
 * with no tarball in between (commit). What the container did not change is hard-linked from
 * the image layer: image layers are never written (overlay copies a file up before changing
 * it), so the two images can share those inodes, and a commit costs one link per unchanged
 * file instead of a copy. What the container wrote is copied, with owner, mode and times.
 *
 * Everything goes through directory fds on both sides (src/fsat.ts): the source entry is
 * opened, linked or read relative to its directory's fd without following a symlink, and the
 * new entry is made relative to its new parent's fd. Names are bytes.
 *
 * A big file is copied a few megabytes at a time with a turn of the event loop between them
 * when one is due (the walk gives the others): the fds stay open across it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError } from '../errors';
import {
  copyData,
  createFileAt,
  errnoError,
  linkAt,
  listDir,
  mkdirAt,
  openDir,
  openDirAt,
  openFileAt,
  printable,
  readLinkAt,
  listXattrsFd,
  removeTreeAsync,
  setAttrsFd,
  setLinkAttrsAt,
  setXattrFd,
  symlinkAt,
  tryLinkAt,
} from '../fsat';
import { LoopTurns } from '../loop-turns';
import { DirChain, MergedWalker, type LayerWalkSource, type MergedVisitor, type WalkEntry } from './layer-walk';
import { readChanged, writeMergedTar } from './merged-tar';

export interface MergedTreeSource extends LayerWalkSource {
  /** Layers whose files may be shared by hard link: read-only ones that are never written. */
  shared: string[];
}

export interface MergedTreeResult {
  entries: number;
  /** Bytes of regular files in the tree (linked or copied). */
  bytes: number;
  /** Devices, fifos and sockets, which an image does not keep (as import). */
  skipped: number;
}

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK } = fs.constants;

/** Fills `dest`, an empty directory the caller made, with the merged view of the layers. */
export async function writeMergedTree(source: MergedTreeSource, dest: string): Promise<MergedTreeResult> {
  if (source.layers.length === 0) throw new NsboxError('INVALID_ARGUMENT', 'commit: no layers');
  const tree = new MergedTreeBuilder(dest, source.shared);
  try {
    await new MergedWalker(source, tree).run();
    return tree.finish();
  } catch (err) {
    await tree.abort();
    throw err;
  }
}

/** writeMergedTar and writeMergedTree in one walk of the layers. */
export async function writeMergedTarAndTree(source: MergedTreeSource, output: string, dest: string): Promise<MergedTreeResult> {
  const tree = new MergedTreeBuilder(dest, source.shared);
  try {
    await writeMergedTar(source, output, tree);
    return tree.finish();
  } catch (err) {
    await tree.abort();
    throw err;
  }
}

// A copied file goes in pieces of this size, so that a turn of the loop can come between two.
const COPY_PIECE = 8 << 20;

/**
 * Builds the tree entry by entry, as a visitor of the merged walk: so that a commit that
 * also writes a tarball walks the layers once for both (writeMergedTar's `also`).
 */
export class MergedTreeBuilder implements MergedVisitor {
  private readonly result: MergedTreeResult = { entries: 0, bytes: 0, skipped: 0 };
  /** The directory being filled and its ancestors up to `dest`, opened once the root comes. */
  private chain: DirChain | undefined;
  /** Identity of a copied file with several links → where its first copy went (path bytes). */
  private readonly copies = new Map<string, Buffer>();
  private readonly shared: Set<string>;
  private readonly turns = new LoopTurns();

  constructor(
    private readonly dest: string,
    shared: string[],
  ) {
    this.shared = new Set(shared.map((l) => path.resolve(l)));
  }

  async entry(e: WalkEntry): Promise<void> {
    try {
      await this.make(e);
    } catch (err) {
      if (err instanceof NsboxError && err.message.startsWith('commit:')) throw err;
      const code = err instanceof NsboxError ? err.code : 'EIO';
      throw new NsboxError(code, `commit: /${printable(e.path)}: ${err instanceof Error ? err.message : String(err)}`, {
        path: `/${printable(e.path)}`,
        cause: err,
      });
    }
  }

  /**
   * A directory's contents are done: its owner, mode and times are set now, as adding entries
   * changes its mtime and a read-only mode would have stopped us adding them.
   */
  leave(e: WalkEntry): void {
    const chain = this.chain!;
    setAttrsFd(chain.fd, e.stat);
    if (e.path.length === 0) {
      chain.close();
      this.chain = undefined;
    } else {
      chain.pop();
    }
  }

  /** What was made; call once the walk is done. */
  finish(): MergedTreeResult {
    return this.result;
  }

  /**
   * After a failure: closes what is open and empties `dest` (however deep it got), on libuv's
   * thread pool: a big tree's removal does not hold the event loop.
   */
  async abort(): Promise<void> {
    this.chain?.close();
    this.chain = undefined;
    let names: Buffer[] = [];
    let fd = -1;
    try {
      fd = openDir(this.dest);
      names = listDir(fd).names;
    } catch {
      // best effort: the caller removes `dest` anyway
    } finally {
      if (fd >= 0) fs.closeSync(fd);
    }
    const prefix = Buffer.from(`${this.dest}/`);
    for (const name of names) await removeTreeAsync(Buffer.concat([prefix, name]), { force: true }).catch(() => {});
  }

  private async make(e: WalkEntry): Promise<void> {
    const st = e.stat;
    if (e.path.length === 0) {
      this.chain = new DirChain(openDir(this.dest));
      this.result.entries++;
      return;
    }
    const dir = this.chain!.fd;
    switch (st.mode & S_IFMT) {
      case S_IFDIR:
        mkdirAt(dir, e.name, 0o700);
        this.chain!.push(e.name, '');
        break;
      case S_IFREG:
        this.result.bytes += st.size;
        if (this.shared.has(e.layer) && this.linkShared(e, dir)) {
          // Same inode, hence same owner, mode and times: nothing more to set (and setting
          // anything would change the image it is shared with).
        } else {
          const first = st.nlink > 1 ? this.copies.get(st.id) : undefined;
          if (first === undefined || !this.linkCopy(first, dir, e.name)) {
            await this.copy(e, dir);
            if (st.nlink > 1 && first === undefined) this.copies.set(st.id, e.path);
          }
        }
        break;
      case S_IFLNK:
        symlinkAt(
          readChanged(e, () => readLinkAt(e.dirFd, e.name)),
          dir,
          e.name,
        );
        setLinkAttrsAt(dir, e.name, st);
        break;
      default:
        this.result.skipped++;
        return;
    }
    this.result.entries++;
  }

  /** A hard link to the image layer's file, or false when on another file system (then it is copied). */
  private linkShared(e: WalkEntry, dir: number): boolean {
    const err = tryLinkAt(e.dirFd, e.name, dir, e.name);
    if (!err) return true;
    if (err.code === 'EXDEV') return false;
    throw errnoError('link from the image', err);
  }

  /**
   * A hard link to the copy made of another name of the same file, found from `dest` one
   * directory fd at a time. False when that copy's path is gone (then this one is copied).
   */
  private linkCopy(first: Buffer, dir: number, name: Buffer): boolean {
    const parts = splitPath(first);
    const opened: number[] = [];
    try {
      let at = openDir(this.dest);
      opened.push(at);
      for (const part of parts.slice(0, -1)) {
        at = openDirAt(at, part);
        opened.push(at);
      }
      linkAt(at, parts[parts.length - 1]!, dir, name);
      return true;
    } catch (err) {
      if (err instanceof NsboxError && err.code === 'ENOENT') return false;
      throw err;
    } finally {
      for (const fd of opened) fs.closeSync(fd);
    }
  }

  /**
   * A copy of the file's content (as much as lstat said it had), with owner, mode and times.
   * copyData goes on from both fds' offsets, so the pieces follow each other.
   */
  private async copy(e: WalkEntry, dir: number): Promise<void> {
    const from = readChanged(e, () => openFileAt(e.dirFd, e.name));
    let to = -1;
    try {
      to = createFileAt(dir, e.name);
      for (let left = e.stat.size; left > 0;) {
        const want = Math.min(left, COPY_PIECE);
        const n = copyData(from, to, want);
        left -= n;
        if (n < want) break; // the file shrank since it was listed: as much as it has
        if (left > 0 && this.turns.due) await this.turns.give();
      }
      setAttrsFd(to, e.stat);
      // After the chown in setAttrsFd, which would clear a file capability; the times are
      // unchanged by setting an attribute.
      for (const [name, value] of listXattrsFd(from)) setXattrFd(to, name, value);
    } finally {
      fs.closeSync(from);
      if (to >= 0) fs.closeSync(to);
    }
  }
}

function splitPath(p: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= p.length; i++) {
    if (i === p.length || p[i] === 0x2f) {
      if (i > start) parts.push(p.subarray(start, i));
      start = i + 1;
    }
  }
  return parts;
}
