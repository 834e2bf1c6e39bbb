/**
 * Volumes: `HOST:CONTAINER[:ro|:rw]`. The host side is the user's: created when missing,
 * never removed. The container side is resolved inside the container root by the child
 * (openat2 RESOLVE_IN_ROOT), and a symlink as its last component is refused there.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { fromSystemError, invalid } from './errors';
import { containerPath, type BindMount } from './plan';

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

  /** Accepts a spec string, a Volume, or its fields. */
  static from(v: string | Volume | { source: string; target: string; readonly?: boolean }): Volume {
    if (typeof v === 'string') return Volume.parse(v);
    if (v instanceof Volume) return v;
    if (!v || typeof v !== 'object') throw invalid('volume: expected HOST:CONTAINER[:ro|:rw] or { source, target }');
    return new Volume(v.source, v.target, !!v.readonly);
  }

  toString(): string {
    return `${this.source}:${this.target}${this.readonly ? ':ro' : ''}`;
  }

  /** Makes the host directory (0755) when it is missing; returns the mount the child makes. */
  prepare(): BindMount {
    let st: fs.Stats;
    try {
      st = fs.statSync(this.source);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError('volume', e);
      try {
        fs.mkdirSync(this.source, { recursive: true, mode: 0o755 });
      } catch (e2) {
        throw fromSystemError('volume: create host directory', e2);
      }
      st = fs.statSync(this.source);
    }
    if (!st.isDirectory() && !st.isFile()) throw invalid(`volume: ${this.source}: not a directory or a regular file`, this.source);
    return { source: this.source, target: this.target, readonly: this.readonly, file: st.isFile() };
  }
}
