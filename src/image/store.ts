/**
 * Images: extracted root filesystems under images/<name>/rootfs, each the read-only layer
 * of every container made from it. An image is made in tmp/ and renamed into place whole,
 * so a crash or a failed import never leaves half an image under its name.
 */
import type * as ChildProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError, fromSystemError, invalid } from '../errors';
import { removeTree, removeTreeAsync } from '../fsat';
import { isRootless } from '../rootless';
import { chooseIdMap, mappedJob } from '../subid';
import type { ExtractResult } from './extract';
import { Layout, readJson, writeJsonAtomic } from '../layout';
import { checkObject, func, optional, type Check, type Spec } from '../validate';

export interface ImageInfo {
  name: string;
  /** ISO 8601 */
  created: string;
  /** Bytes of file data in the image. */
  size: number;
  /** sha256 of the tarball it was imported from, or of the commit's tarball. */
  digest: string;
  source: 'import' | 'commit' | 'builtin';
  /** The read-only layer. */
  rootfs: string;
}

export interface ImportOptions {
  /** Bytes of the (compressed) tarball read so far, of the total. */
  onProgress?: ((done: number, total: number) => void) | undefined;
}

const IMPORT_OPTIONS: Spec<ImportOptions> = { onProgress: optional(func as Check<ImportOptions['onProgress']>) };

export const BUILTIN_BUSYBOX = 'busybox';
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(:[A-Za-z0-9_.-]{1,128})?$/;

/**
 * Checks an image name and returns its canonical form: `NAME` or `NAME:TAG`, where `:latest`
 * is implicit (docker's habit), so `busybox:latest` is `busybox`, stored and shown as such.
 */
export function validateImageName(name: string): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw invalid(`image name ${JSON.stringify(name)}: letters, digits, '_', '.', '-' (and an optional :tag)`);
  }
  return name.endsWith(':latest') ? name.slice(0, -':latest'.length) : name;
}

/**
 * tmp/rmi-<pid>-... trees this process is deleting now (for every Runtime in it): prune leaves
 * these alone, and deletes this process's other rmi- leftovers (a removal that failed).
 */
export const removalsUnderWay = new Set<string>();

export class ImageStore {
  private readonly layout: Layout;
  /** Images known to exist, so a container start does not stat them again. */
  private readonly known = new Map<string, ImageInfo>();

  constructor(layout: Layout | string) {
    this.layout = typeof layout === 'string' ? new Layout(layout) : layout;
  }

  /** Extracts a rootfs tarball (plain or gzip) into a new image. */
  async import(tarball: string, name: string, given: ImportOptions = {}): Promise<ImageInfo> {
    const options = checkObject(IMPORT_OPTIONS, given, 'import options', (k) => `import option ${k}`);
    name = validateImageName(name);
    this.layout.ensure();
    if (this.dirOf(name)) throw new NsboxError('CONFLICT', `image ${name}: already exists (remove it first with rmi)`);
    try {
      if (!fs.statSync(tarball).isFile()) throw invalid(`import ${tarball}: not a regular file`, tarball);
    } catch (e) {
      throw fromSystemError(`import ${tarball}`, e);
    }
    const tmp = this.layout.makeTemp('import');
    try {
      const rootfs = path.join(tmp, 'rootfs');
      fs.mkdirSync(rootfs, { mode: 0o755 });
      // Loaded on first use: starting a container never needs the tar code.
      const { extractTarball } = await import('./extract');
      // Rootless with a subordinate range: extracted by a helper that is root of a user
      // namespace with that map (src/subid.ts), so that the tarball's owners are kept (owner n
      // is host id SUBUID + n - 1 on disk, n inside a container); an owner beyond the range is
      // an error, never quietly given to someone else.
      const mapped = isRootless() ? chooseIdMap() : undefined;
      const r = mapped
        ? await mappedJob<ExtractResult>('import', { tarball: path.resolve(tarball), dest: path.resolve(rootfs) }, `import ${tarball}`, (code, message) =>
            code === 'EINVAL' && message.includes('fchown')
              ? `an owner of that entry is beyond the user's range (ids 0 to ${mapped.count} exist inside); NSBOX_ID_MAP=single imports with every owner squashed to the user`
              : undefined,
          )
        : await extractTarball(tarball, rootfs, options.onProgress ? { onProgress: options.onProgress } : undefined);
      const info = this.publish(tmp, name, { size: r.bytes, digest: r.digest, source: 'import' });
      if (r.ownersSquashed > 0) {
        // Said, not hidden: with a one-id map there is no other owner to give them.
        process.emitWarning(
          `image ${name}: ${r.ownersSquashed} entries owned by other users than root are owned by uid ${process.geteuid?.()} (root inside its containers): rootless, only that one id is mapped`,
          { code: 'NSBOX_ROOTLESS_OWNERS' },
        );
      }
      return info;
    } finally {
      // On the thread pool: a failed import can leave a big tree half written.
      await removeTreeAsync(tmp, { force: true });
    }
  }

  /** Moves a finished image directory (with rootfs/) from tmp/ into place under `name`. */
  publish(tmp: string, name: string, meta: Pick<ImageInfo, 'size' | 'digest' | 'source'>): ImageInfo {
    name = validateImageName(name);
    // One written as NAME:latest before the tag was implicit holds the name too.
    if (this.dirOf(name)) throw new NsboxError('CONFLICT', `image ${name}: already exists (remove it first with rmi)`);
    const dir = this.layout.imageDir(name);
    const info: ImageInfo = { name, created: new Date().toISOString(), ...meta, rootfs: path.join(dir, 'rootfs') };
    const { rootfs: _unused, ...stored } = info;
    void _unused;
    writeJsonAtomic(path.join(tmp, 'image.json'), stored);
    try {
      fs.renameSync(tmp, dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new NsboxError('CONFLICT', `image ${name}: already exists (remove it first with rmi)`);
      throw fromSystemError(`image ${name}`, e);
    }
    this.known.set(name, info);
    return info;
  }

  /** The image, or undefined. The built-in busybox is made on first use. */
  find(name: string): ImageInfo | undefined {
    name = validateImageName(name);
    const cached = this.known.get(name);
    if (cached) return cached;
    const dir = this.dirOf(name) ?? this.layout.imageDir(name);
    const meta = readJson<Omit<ImageInfo, 'rootfs'>>(path.join(dir, 'image.json'));
    if (meta) {
      const info = { ...meta, name, rootfs: path.join(dir, 'rootfs') };
      this.known.set(name, info);
      return info;
    }
    if (name === BUILTIN_BUSYBOX) return this.makeBusybox();
    return undefined;
  }

  get(name: string): ImageInfo {
    name = validateImageName(name);
    const info = this.find(name);
    if (!info)
      throw new NsboxError('NOT_FOUND', `image ${name}: no such image`, { hint: 'nsbox images lists the images; nsbox import FILE.tar NAME adds one' });
    return info;
  }

  list(): ImageInfo[] {
    let names: string[] = [];
    try {
      names = fs.readdirSync(this.layout.images);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError('list images', e);
    }
    const out: ImageInfo[] = [];
    const seen = new Set<string>();
    for (const enc of names) {
      let name: string;
      try {
        name = validateImageName(decodeURIComponent(enc));
      } catch {
        continue; // not an image's directory (nsbox never makes such a name)
      }
      if (seen.has(name)) continue;
      seen.add(name);
      const info = this.find(name);
      if (info) out.push(info);
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Removes an image. `users` lists the containers made from it: refused while any of them
   * runs, even forced (its root would vanish under it, as docker refuses too); refused while
   * stopped ones use it, unless forced (their records stay, and a commit of them fails).
   * The checks and the unlisting happen at once (a refusal throws, and once this returns the
   * name is free and no start finds the image); the tree is then deleted on libuv's thread
   * pool, the event loop free meanwhile, and the promise settles when it is gone.
   */
  remove(name: string, users: { running?: string[]; stopped?: string[] } | string[] = {}, force = false): Promise<void> {
    name = validateImageName(name);
    const dir = this.dirOf(name);
    if (!dir) throw new NsboxError('NOT_FOUND', `image ${name}: no such image`);
    // A plain list (the form before running users were told apart): containers not known to
    // be stopped, so counted as running ones, which force does not override.
    const running = Array.isArray(users) ? users : (users.running ?? []);
    const stopped = Array.isArray(users) ? [] : (users.stopped ?? []);
    const plural = (n: number) => (n > 1 ? 's' : '');
    if (running.length) {
      throw new NsboxError(
        'IN_USE',
        `image ${name}: used by running container${plural(running.length)} ${running.join(', ')}${force ? ' (force removes an image of stopped containers only)' : ''}`,
        {
          hint: 'stop and remove them first',
        },
      );
    }
    if (stopped.length && !force) {
      throw new NsboxError('IN_USE', `image ${name}: used by container${plural(stopped.length)} ${stopped.join(', ')}`, {
        hint: 'remove them first, or force',
      });
    }
    // Renamed away first, so that the name is free at once and a half-deleted tree is never seen.
    this.layout.ensure();
    const doomed = path.join(this.layout.tmp, `rmi-${process.pid}-${Date.now()}-${encodeURIComponent(name)}`);
    try {
      fs.renameSync(dir, doomed);
    } catch (e) {
      throw fromSystemError(`rmi ${name}`, e);
    }
    this.known.delete(name);
    // A removal cut short (a kill) leaves tmp/rmi-<pid>-..., which prune deletes; so does one
    // that failed (a mount inside, an immutable file), once it is no longer under way.
    removalsUnderWay.add(doomed);
    return removeTreeAsync(doomed, { force: true })
      .catch((e: unknown) => {
        throw fromSystemError(`rmi ${name}`, e);
      })
      .finally(() => removalsUnderWay.delete(doomed));
  }

  /**
   * The directory holding image `name` (canonical), or undefined: images/NAME, or, for a name
   * without a tag, images/NAME:latest as it was stored before `:latest` became implicit.
   */
  private dirOf(name: string): string | undefined {
    const dirs = [this.layout.imageDir(name), ...(name.includes(':') ? [] : [this.layout.imageDir(`${name}:latest`)])];
    return dirs.find((d) => fs.existsSync(path.join(d, 'image.json')));
  }

  /** The built-in busybox image, from the host's static busybox (scripts/make-busybox-rootfs.sh). */
  private makeBusybox(): ImageInfo {
    const script = path.join(__dirname, '..', '..', 'scripts', 'make-busybox-rootfs.sh');
    this.layout.ensure();
    const tmp = this.layout.makeTemp('busybox');
    try {
      const rootfs = path.join(tmp, 'rootfs');
      try {
        // Loaded here only: once per machine, not once per container.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { execFileSync } = require('node:child_process') as typeof ChildProcess;
        execFileSync('bash', [script, rootfs], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NSBOX_NO_INSTALL: '1' } });
      } catch (e) {
        const stderr =
          String((e as { stderr?: Buffer }).stderr ?? '')
            .trim()
            .split('\n')
            .pop() ?? '';
        // The hint follows the cause the script gave: a missing busybox is not the only one.
        const missing = !stderr || /needs a static busybox/.test(stderr);
        throw new NsboxError('NOT_FOUND', `image busybox: cannot make it from the host's busybox${stderr ? `: ${stderr}` : ''}`, {
          hint: missing
            ? 'install a static busybox: apt-get install busybox-static'
            : `the message above is the cause (scripts/make-busybox-rootfs.sh, run as uid ${process.geteuid?.() ?? 0})`,
        });
      }
      const size = fs.statSync(path.join(rootfs, 'bin', 'busybox')).size;
      try {
        return this.publish(tmp, BUILTIN_BUSYBOX, { size, digest: '', source: 'builtin' });
      } catch (e) {
        // Another process made it at the same time: theirs is as good as ours.
        if (e instanceof NsboxError && e.code === 'CONFLICT') return this.find(BUILTIN_BUSYBOX)!;
        throw e;
      }
    } finally {
      removeTree(tmp, { force: true });
    }
  }
}
