/**
 * A new image's root filesystem made straight from the merged view of a container's layers,
 * with no tarball in between (commit). What the container did not change is hard-linked from
 * the image layer: image layers are never written (overlay copies a file up before changing
 * it), so the two images can share those inodes, and a commit costs one link() per unchanged
 * file instead of a copy. What the container wrote is copied, with owner, mode and times.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError, fromSystemError } from '../errors';
import { MergedWalker, containerRelativeSet, type MergedTarSource } from './merged-tar';

export interface MergedTreeSource extends MergedTarSource {
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

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, COPYFILE_EXCL } = fs.constants;

/** Fills `dest`, an empty directory the caller made, with the merged view of the layers. */
export async function writeMergedTree(source: MergedTreeSource, dest: string): Promise<MergedTreeResult> {
  if (source.layers.length === 0) throw new NsboxError('INVALID_ARGUMENT', 'commit: no layers');
  const tree = new MergedTreeBuilder(dest, source.shared);
  await new MergedWalker(source.layers.map((l) => path.resolve(l)), source.isOpaque, containerRelativeSet(source.exclude), tree.visit).run();
  return tree.finish();
}

/**
 * Builds the tree entry by entry, as a visitor of the merged walk: so that a commit that
 * also writes a tarball walks the layers once for both (writeMergedTar's `also`).
 */
export class MergedTreeBuilder {
  private readonly result: MergedTreeResult = { entries: 0, bytes: 0, skipped: 0 };
  // Directories get their owner, mode and times last, deepest first: adding entries to a
  // directory changes its mtime, and a read-only mode would stop us adding them.
  private readonly dirs: Array<[string, fs.Stats]> = [];
  /** "dev:ino" of a copied file with several links → where its first copy went. */
  private readonly copies = new Map<string, string>();
  private readonly shared: string[];

  constructor(private readonly dest: string, shared: string[]) {
    this.shared = shared.map((l) => `${path.resolve(l)}/`);
  }

  readonly visit = (rel: string, host: string, st: fs.Stats): void => {
    const target = rel === '' ? this.dest : path.join(this.dest, rel);
    try {
      switch (st.mode & S_IFMT) {
        case S_IFDIR:
          if (rel !== '') fs.mkdirSync(target, { mode: 0o700 });
          this.dirs.push([target, st]);
          break;
        case S_IFREG:
          this.result.bytes += st.size;
          if (this.shared.some((l) => host.startsWith(l)) && linkShared(host, target)) {
            // Same inode, hence same owner, mode and times: nothing more to set (and setting
            // anything would change the image it is shared with).
          } else {
            const key = `${st.dev}:${st.ino}`;
            const first = st.nlink > 1 ? this.copies.get(key) : undefined;
            if (first !== undefined) {
              fs.linkSync(first, target);
            } else {
              fs.copyFileSync(host, target, COPYFILE_EXCL);
              setAttributes(target, st);
              if (st.nlink > 1) this.copies.set(key, target);
            }
          }
          break;
        case S_IFLNK:
          fs.symlinkSync(fs.readlinkSync(host), target);
          fs.lchownSync(target, st.uid, st.gid);
          fs.lutimesSync(target, st.atime, st.mtime);
          break;
        default:
          this.result.skipped++;
          return;
      }
    } catch (err) {
      throw fromSystemError(`commit: ${rel === '' ? '/' : `/${rel}`}`, err);
    }
    this.result.entries++;
  };

  /** Sets the directories' attributes; call once the walk is done. */
  finish(): MergedTreeResult {
    for (let i = this.dirs.length - 1; i >= 0; i--) {
      const [target, st] = this.dirs[i]!;
      try {
        setAttributes(target, st);
      } catch (err) {
        throw fromSystemError('commit: directory attributes', err);
      }
    }
    return this.result;
  }
}

/** A hard link, or false when the layers are on different filesystems (then it is copied). */
function linkShared(host: string, target: string): boolean {
  try {
    fs.linkSync(host, target);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EXDEV') return false;
    throw err;
  }
}

/** chown before chmod: chown clears the setuid and setgid bits. */
function setAttributes(target: string, st: fs.Stats): void {
  fs.lchownSync(target, st.uid, st.gid);
  fs.chmodSync(target, st.mode & 0o7777);
  fs.utimesSync(target, st.atime, st.mtime);
}
