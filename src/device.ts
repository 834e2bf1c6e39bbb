/**
 * `--device HOST[:CONTAINER]`: a host device node the container may use. It is bound into the
 * container's /dev (the node itself, checked again by the child to be that device) and allowed
 * in its device cgroup.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { fromSystemError, invalid } from './errors';
import { containerPath, type DeviceNode } from './plan';

export type DeviceSpec = string | { source: string; target?: string };

// Linux's dev_t layout (as glibc's major()/minor() read it).
const major = (rdev: number) => Number((BigInt(rdev) >> 8n) & 0xfffn) | Number((BigInt(rdev) >> 32n) & ~0xfffn);
const minor = (rdev: number) => Number(BigInt(rdev) & 0xffn) | Number((BigInt(rdev) >> 12n) & ~0xffn);

export function parseDevice(spec: unknown): DeviceNode {
  let source: string, target: string | undefined;
  if (typeof spec === 'string') {
    const parts = spec.split(':');
    if (parts.length > 2 || parts.some((p) => p === '')) throw invalid(`device ${JSON.stringify(spec)}: expected HOST[:CONTAINER]`);
    [source, target] = parts as [string, string | undefined];
  } else if (spec && typeof spec === 'object' && typeof (spec as { source?: unknown }).source === 'string') {
    const o = spec as { source: string; target?: unknown };
    if (o.target !== undefined && typeof o.target !== 'string') throw invalid('device: target must be a string');
    source = o.source;
    target = o.target as string | undefined;
  } else {
    throw invalid('device: expected HOST[:CONTAINER] or { source, target }');
  }
  if (!path.isAbsolute(source) || source.includes('\0')) throw invalid(`device ${source}: the host path must be absolute`, source);
  const t = containerPath(target ?? source, 'device');
  if (!t.startsWith('/dev/')) throw invalid(`device ${t}: must be under /dev in the container`, t);
  let st: fs.Stats;
  try {
    // The node itself, never what a symlink at that path names.
    st = fs.lstatSync(source);
  } catch (e) {
    throw fromSystemError(`device ${source}`, e);
  }
  if (!st.isCharacterDevice() && !st.isBlockDevice()) throw invalid(`device ${source}: not a device node`, source);
  return { source, target: t, type: st.isCharacterDevice() ? 'c' : 'b', major: major(st.rdev), minor: minor(st.rdev) };
}
