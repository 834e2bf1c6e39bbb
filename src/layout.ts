/**
 * State on disk under one root directory (default /var/lib/nsbox):
 *   images/<name>/rootfs        the read-only layer shared by every container of the image
 *   images/<name>/image.json    metadata
 *   containers/<id>/upper, work, merged   write layer, overlay workdir, mount point
 *   containers/<id>/container.json        config and state
 *   names/<name> -> <id>                  a symlink: creating it is the atomic name claim
 *   tmp/                                  half-made images, renamed into place when complete
 * Every JSON file is written whole: a temp file, then rename.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { fromSystemError } from './errors';

export const DEFAULT_ROOT = '/var/lib/nsbox';

export class Layout {
  readonly root: string;
  readonly images: string;
  readonly containers: string;
  readonly names: string;
  readonly tmp: string;
  private made = false;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.images = path.join(this.root, 'images');
    this.containers = path.join(this.root, 'containers');
    this.names = path.join(this.root, 'names');
    this.tmp = path.join(this.root, 'tmp');
  }

  /** Creates the directories once per Layout (0700: container state is root's business). */
  ensure(): void {
    if (this.made) return;
    try {
      for (const d of [this.root, this.images, this.containers, this.names, this.tmp]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw fromSystemError(`state directory ${this.root}`, e);
    }
    this.made = true;
  }

  imageDir(name: string): string {
    return path.join(this.images, encodeURIComponent(name));
  }

  containerDir(id: string): string {
    return path.join(this.containers, id);
  }

  /** A fresh directory under tmp/ for work that is renamed into place when complete. */
  makeTemp(prefix: string): string {
    this.ensure();
    const dir = path.join(this.tmp, `${prefix}-${process.pid}-${newId()}`);
    fs.mkdirSync(dir, { mode: 0o700 });
    return dir;
  }
}

export function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(`read ${file}`, e);
  }
}

/**
 * 12 hex digits. Not a secret, only unique, which mkdir's EEXIST checks: Math.random spares
 * every container start the load of the crypto module.
 */
export function newId(): string {
  let id = '';
  for (let i = 0; i < 3; i++) id += Math.floor(Math.random() * 0x10000).toString(16).padStart(4, '0');
  return id;
}

/** The start time of a process (field 22 of /proc/PID/stat), to tell a pid from its reuse. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

/** True while that very process runs (a zombie counts as gone: it only waits to be reaped). */
export function processAlive(pid: number | undefined, start: string | undefined): boolean {
  if (!pid || !start) return false;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] !== 'Z' && fields[0] !== 'X' && fields[19] === start;
  } catch {
    return false;
  }
}
