/**
 * Volumes: `HOST:CONTAINER[:ro|:rw]`. The host side is the user's: created when missing,
 * never removed (but for the empty directories a failed run made itself). The container side
 * is resolved inside the container root by the child (openat2 RESOLVE_IN_ROOT), and a symlink
 * as its last component is refused there.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError, fromSystemError, invalid } from './errors';
import { containerPath, type BindMount } from './plan';
import { boolean, checkObject, expected, isObject, optional, string, type Spec } from './validate';

export class Volume {
  /** Absolute host path. */
  readonly source: string;
  /** Absolute, normalised path inside the container. */
  readonly target: string;
  readonly readonly: boolean;

  constructor(source: string, target: string, readonly = false) {
    if (typeof source !== 'string' || source === '') throw invalid('volume: the host path is empty');
    if (source.includes('\0')) throw invalid('volume: the host path contains a NUL byte');
    if (!path.isAbsolute(source)) throw invalid(`volume: ${source}: the host path must be absolute`, source);
    this.source = path.resolve(source);
    this.target = containerPath(target, 'volume');
    if (this.target === '/') throw invalid('volume: / cannot be a volume target', target);
    this.readonly = readonly;
  }

  /** Parses `HOST:CONTAINER[:ro|:rw]` as `-v` takes it. */
  static parse(spec: string): Volume {
    if (typeof spec !== 'string') throw invalid('volume: expected HOST:CONTAINER[:ro|:rw]');
    const parts = spec.split(':');
    if (parts.length < 2) throw invalid(`volume ${JSON.stringify(spec)}: expected HOST:CONTAINER[:ro|:rw] (no ':' found)`);
    if (parts.length > 3) throw invalid(`volume ${JSON.stringify(spec)}: expected HOST:CONTAINER[:ro|:rw] (${parts.length} fields)`);
    const [host, ctr, mode] = parts as [string, string, string | undefined];
    if (host === '' || ctr === '') throw invalid(`volume ${JSON.stringify(spec)}: empty ${host === '' ? 'host' : 'container'} path`);
    if (mode !== undefined && mode !== 'ro' && mode !== 'rw') {
      throw invalid(`volume ${JSON.stringify(spec)}: mode ${JSON.stringify(mode)}: ro or rw`);
    }
    return new Volume(host, ctr, mode === 'ro');
  }

  /** Accepts a spec string, a Volume, or its fields (`name` names it in messages). */
  static from(v: string | Volume | { source: string; target: string; readonly?: boolean | undefined }, name = 'volume'): Volume {
    if (typeof v === 'string') return Volume.parse(v);
    if (v instanceof Volume) return v;
    if (!isObject(v)) return expected(name, 'HOST:CONTAINER[:ro|:rw], a Volume or { source, target, readonly }', v);
    const f = checkObject(VOLUME_FIELDS, v, name);
    return new Volume(f.source, f.target, f.readonly ?? false);
  }

  toString(): string {
    return `${this.source}:${this.target}${this.readonly ? ':ro' : ''}`;
  }

  /**
   * Makes the host directory (0755) when it is missing; returns the mount the child makes.
   * Each directory made here is pushed onto `created` (parents first), so that a run that
   * fails afterwards can take back exactly these (removeCreated) and nothing that was there.
   */
  prepare(created: string[] = []): BindMount {
    refuseLinks(this.source);
    let st: fs.Stats;
    try {
      st = fs.statSync(this.source);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError('volume', e);
      makeDirs(this.source, created);
      try {
        st = fs.statSync(this.source);
      } catch (e2) {
        throw fromSystemError('volume', e2);
      }
    }
    if (!st.isDirectory() && !st.isFile()) throw invalid(`volume: ${this.source}: not a directory or a regular file`, this.source);
    return { source: this.source, target: this.target, readonly: this.readonly, file: st.isFile() };
  }

  /**
   * Removes directories prepare() made, deepest first, each only while it is still empty
   * (rmdir): whatever anyone put in them since stays, and so do their parents.
   */
  static removeCreated(created: string[]): void {
    for (const dir of [...created].reverse()) {
      try {
        fs.rmdirSync(dir);
      } catch {
        return; // not empty (or gone): its parents are not empty either
      }
    }
  }
}

const VOLUME_FIELDS: Spec<{ source: string; target: string; readonly?: boolean }> = {
  source: string,
  target: string,
  readonly: optional(boolean),
};

/**
 * A volume's host path may not go through a symlink: a container that had a parent of it as a
 * volume could have planted one to aim this volume at any host path. (The container's first
 * process checks again, atomically, when it binds the path: openat2 RESOLVE_NO_SYMLINKS.)
 */
function refuseLinks(source: string): void {
  let p = '/';
  for (const part of source.split('/').filter(Boolean)) {
    p = path.join(p, part);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(p, { throwIfNoEntry: false });
    } catch (e) {
      throw fromSystemError('volume', e);
    }
    if (!st) return;
    if (st.isSymbolicLink()) {
      let real = '';
      try {
        real = fs.realpathSync(source);
      } catch {
        // a dangling link: no resolved path to suggest
      }
      throw new NsboxError('UNSAFE_PATH', `volume: ${source}: ${p} is a symlink; a volume's host path may not go through one`, {
        path: source,
        ...(real ? { hint: `give the resolved path: ${real}` } : {}),
      });
    }
  }
}

/** mkdir -p, one component at a time, recording the directories this call made. */
function makeDirs(dir: string, created: string[]): void {
  const missing: string[] = [];
  for (let d = dir; !fs.existsSync(d); d = path.dirname(d)) missing.unshift(d);
  for (const d of missing) {
    try {
      fs.mkdirSync(d, { mode: 0o755 });
      created.push(d);
    } catch (e) {
      // Made by someone else meanwhile: theirs, not ours to remove.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError('volume: create host directory', e);
    }
  }
}
