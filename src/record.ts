/**
 * containers/<id>/container.json: what `ps` shows and what rm, prune and commit act on. Read
 * back, it is not trusted: an id names a directory to delete, a pid a process to kill, a path
 * a layer to mount and copy. Every field is checked before any of it is used.
 */
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';

import { NsboxError } from './errors';
import { validateImageName } from './image/store';
import { ID_RE, type Layout } from './layout';
import { Volume } from './volume';
import type { IdRange } from './userns';
import type { SubidMap } from './subid';
import {
  arrayOf,
  boolean,
  checkObject,
  expected,
  integer,
  isObject,
  matching,
  nullable,
  object,
  oneOf,
  optional,
  pathString,
  shape,
  string,
  stringRecord,
  union,
  type Check,
  type Spec,
} from './validate';
import type { DeviceSpec } from './device';
import type { Limits, Ulimit } from './limits';
import { tmpfsMountsCheck, type TmpfsMount } from './plan';
import type { SecurityOptions } from './security';
import type { StorageDriver } from './workspace';

/**
 * What a container was run with, beyond the record's own fields (image, command, volumes,
 * readOnly): what `start` needs to run it again as it was. Each part is checked again by the
 * code that uses it (buildConfinement, cgroupLimits, parseDevice, buildPlan) at each start.
 */
export interface ContainerConfig {
  /** The caller's variables (not the defaults nsbox adds). */
  env: Record<string, string>;
  cwd: string | null;
  /** null: the container's id. */
  hostname: string | null;
  network: 'none' | 'host';
  tty: boolean;
  security?: SecurityOptions;
  devices?: DeviceSpec[];
  limits?: Limits;
  /** -1 for unlimited (JSON has no Infinity). */
  ulimits?: Record<string, Ulimit>;
  tmpfs?: TmpfsMount[];
  /** Milliseconds. */
  timeout?: number;
}

/**
 * What `ps` shows. On disk a record says 'creating' (made first, before anything else of the
 * container), 'created', 'running' or 'exited'; the rest is derived: 'removing' (its directory
 * renamed to a tombstone by a live process), 'dead' (left half made or half removed by a
 * process that died: prune, rm -f and the next Runtime finish the job).
 */
export type ContainerStatus = 'creating' | 'created' | 'running' | 'exited' | 'removing' | 'dead';

/** The statuses a record on disk may hold. */
export type RecordStatus = 'creating' | 'created' | 'running' | 'exited';

/** What `ps` shows; the record on disk in containers/<id>/container.json. */
export interface ContainerInfo {
  id: string;
  name: string | null;
  image: string;
  command: string[];
  driver: StorageDriver;
  /** Structured, so that a host path holding ':' survives (records before this held `HOST:CTR[:ro]` strings, still read). */
  volumes: VolumeRecord[];
  status: ContainerStatus;
  pid: number | null;
  exitCode: number | null;
  signal: string | null;
  /** Why it was killed, when nsbox knows: the OOM killer, its timeout, an abort, its CPU time. */
  killedFor?: 'oom' | 'timeout' | 'abort' | 'cpuTime';
  created: string;
  startedAt: string | null;
  finishedAt: string | null;
  remove: boolean;
  readOnly?: boolean;
}

/** A volume as a record keeps it. */
export interface VolumeRecord {
  source: string;
  target: string;
  readonly: boolean;
}

export function volumeRecord(v: Volume): VolumeRecord {
  return { source: v.source, target: v.target, readonly: v.readonly };
}

export interface ContainerRecord extends Omit<ContainerInfo, 'status'> {
  status: RecordStatus;
  /** Start time of pid, to tell it from a reused pid. */
  pidStart: string | null;
  /**
   * The pid namespace of pid (`pid:[4026532...]`), read right after the start: the container's
   * own, never the host's. A pid and start time alone could be copied from any host process.
   */
  pidNamespace: string | null;
  /** The process that started and watches it. */
  supervisor: number;
  /**
   * The supervisor's start time: a 'creating' record whose supervisor is gone was left half
   * made. Absent from records written before it was: such a supervisor counts as alive while
   * its pid is.
   */
  supervisorStart?: string | null;
  /**
   * The supervisor's worker thread (`<tid>-<start time>`, src/proc.ts ownThread) when it ran
   * in one: a terminated worker's process lives on, so its pid says nothing of the worker.
   */
  supervisorThread?: string;
  imageLayer: string;
  /** How it was run; absent from records written before nsbox kept it (such a container cannot be started again). */
  config?: ContainerConfig;
  /** userns 'auto': the host ids its user namespace maps, claimed host-wide (src/userns.ts claimsDir) while it exists. */
  userns?: IdRange;
  /**
   * Its cgroup directories (v1 and v2) of its last start, wherever its supervisor's cgroup
   * was: so that another process can remove what a killed supervisor left. Each is checked
   * before use (named after the container, on a cgroup file system: cgroup.ts).
   */
  cgroups?: string[];
  /**
   * Rootless with a subordinate range (src/subid.ts): the map it was made with, which every
   * start of it uses again (its files on the host are owned by those ids). Absent: one id.
   */
  subid?: SubidMap;
}

/** Container names, as `--name` takes them and names/<name> holds them. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

const PID_MAX = 4194304; // the kernel's limit (PID_MAX_LIMIT on 64-bit)
const pid = integer(1, PID_MAX);
const isoTime = matching(/^\d{4}-\d{2}-\d{2}T[\d:.]+Z$/, 'an ISO 8601 time');
const time = nullable(isoTime);

const ULIMIT = union<Ulimit>('a number or [soft, hard]', [
  [(v) => typeof v === 'number', (v, name) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= -1 ? v : expected(name, 'an rlimit', v))],
  [Array.isArray, arrayOf(integer(-1, Number.MAX_SAFE_INTEGER), { min: 2, max: 2 }) as Check<Ulimit>],
]);

const CONFIG: Spec<ContainerConfig> = {
  env: stringRecord,
  cwd: nullable(string),
  hostname: nullable(string),
  network: oneOf(['none', 'host'] as const),
  tty: boolean,
  security: optional(object as Check<SecurityOptions>),
  devices: optional(arrayOf<DeviceSpec>((v, name) => (typeof v === 'string' || isObject(v) ? (v as DeviceSpec) : expected(name, 'a device', v)))),
  limits: optional(object as Check<Limits>),
  ulimits: optional(((v, name) => {
    if (!isObject(v)) return expected(name, 'an object of rlimits', v);
    const out: Record<string, Ulimit> = {};
    for (const k of Object.keys(v)) out[k] = ULIMIT(v[k], `${name}.${k}`);
    return out;
  }) as Check<Record<string, Ulimit>>),
  tmpfs: tmpfsMountsCheck,
  timeout: optional(integer(1, 2 ** 31 - 1)),
};

/** Field by field; `imageLayer` depends on the layout: checked in readRecord. */
const RECORD: Spec<ContainerRecord> = {
  id: matching(ID_RE, '12 hexadecimal digits'),
  name: nullable(matching(NAME_RE, "a container name (letters, digits, '_', '.', '-')")),
  image: (v, name) => {
    try {
      return validateImageName(string(v, name));
    } catch {
      return expected(name, 'an image name', v);
    }
  },
  command: arrayOf(string, { min: 1 }),
  driver: oneOf<StorageDriver>(['overlay', 'aufs', 'vfs']),
  volumes: arrayOf((v, name) => volumeRecord(typeof v === 'string' ? Volume.parse(v) : Volume.from(v as VolumeRecord, name))),
  status: oneOf<RecordStatus>(['creating', 'created', 'running', 'exited']),
  pid: nullable(pid),
  pidStart: nullable(matching(/^\d{1,20}$/, 'a start time in clock ticks')),
  // Absent from records written before it was: such a container's process is never killed
  // from another process (nothing proves it is the container's), but is listed and removed.
  pidNamespace: (v, name) => (v === undefined ? null : nullable(matching(/^pid:\[\d{1,20}\]$/, 'a pid namespace (pid:[INODE])'))(v, name)),
  exitCode: nullable(integer(0, 255)),
  signal: nullable(matching(/^SIG[A-Z0-9+-]{1,16}$/, 'a signal name')),
  killedFor: optional(oneOf(['oom', 'timeout', 'abort', 'cpuTime'] as const)),
  created: isoTime,
  startedAt: time,
  finishedAt: time,
  remove: boolean,
  readOnly: optional(boolean),
  config: optional(shape(CONFIG)),
  supervisor: pid,
  supervisorStart: optional(nullable(matching(/^\d{1,20}$/, 'a start time in clock ticks'))),
  supervisorThread: optional(matching(/^\d{1,10}-\d{1,20}$/, 'a thread id and its start time')),
  imageLayer: string,
  cgroups: optional(arrayOf(pathString, { max: 16 })),
  userns: optional(
    shape<IdRange>({
      uidBase: integer(1, 2 ** 32 - 2 - 65536),
      gidBase: integer(1, 2 ** 32 - 2 - 65536),
      size: integer(1, 65536),
    }),
  ),
  subid: optional(
    shape<SubidMap>({
      uid: integer(1, 2 ** 32 - 2),
      gid: integer(0, 2 ** 32 - 2),
      subuid: integer(1, 2 ** 32 - 2),
      subgid: integer(1, 2 ** 32 - 2),
      count: integer(1, 2 ** 32 - 2),
    }),
  ),
};

/** The error for a record that cannot be used; `dir` is the container's directory. */
export function badRecord(dir: string, why: string, cause?: unknown): NsboxError {
  return new NsboxError('BAD_STATE', `container ${path.basename(dir)}: its record ${path.join(dir, 'container.json')} is not valid: ${why}`, {
    path: dir,
    hint: `nsbox rm -f ${path.basename(dir)} removes its directory without killing anything`,
    ...(cause === undefined ? {} : { cause }),
  });
}

/**
 * Reads containers/<id>/container.json (or the record in `dir`, a tombstone of that id).
 * Undefined when there is none (a directory left by an older nsbox, or a tombstone whose
 * record is deleted already); a BAD_STATE NsboxError when it is not a record this `id` could
 * have written.
 */
export function readRecord(layout: Layout, id: string, dir = layout.containerDir(id)): ContainerRecord | undefined {
  if (!ID_RE.test(id)) throw new NsboxError('BAD_STATE', `containers/${JSON.stringify(id)}: not a container id`);
  let text: string;
  try {
    // A symlink in containers/ would have us read a record, and act on layers, elsewhere.
    if (!fs.lstatSync(dir).isDirectory()) throw badRecord(dir, 'its directory is not a directory (a symbolic link?)');
    // O_NOFOLLOW: a record that is a symlink could make us read (and show) any file.
    const fd = fs.openSync(path.join(dir, 'container.json'), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      text = fs.readFileSync(fd, 'utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    if (e instanceof NsboxError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw badRecord(dir, code === 'ELOOP' ? 'a symbolic link' : `unreadable (${code ?? String(e)})`, e);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw badRecord(dir, `not JSON (${(e as Error).message})`, e);
  }
  let rec: ContainerRecord;
  try {
    rec = checkObject(RECORD, value, 'record', (k) => k);
  } catch (e) {
    throw badRecord(dir, (e as Error).message, e);
  }
  if (rec.id !== id) throw badRecord(dir, `its id ${rec.id} is not the name of its directory`);
  if (rec.status === 'running') mergeExitFile(rec, dir);
  const layer = path.relative(layout.images, rec.imageLayer);
  const parts = layer.split(path.sep);
  if (
    !path.isAbsolute(rec.imageLayer) ||
    path.normalize(rec.imageLayer) !== rec.imageLayer ||
    parts.length !== 2 ||
    parts[0] === '..' ||
    parts[0] === '.' ||
    parts[1] !== 'rootfs'
  ) {
    throw badRecord(dir, `imageLayer ${JSON.stringify(rec.imageLayer)} is not an image's rootfs under ${layout.images}`);
  }
  return rec;
}

/**
 * What a detached container's monitor (src-cc/init/monitor.cc) writes at its end, in
 * containers/<id>/exit.json (whole: written beside and renamed). Checked like a record.
 */
export interface ExitFile {
  exitCode: number | null;
  /** The signal's number. */
  signal: number | null;
  finishedAt: string;
  userUs: number;
  systemUs: number;
  maxRssKiB: number;
  oomKilled: boolean;
  /** The monitor killed it at its timeout (absent in files of monitors before this field). */
  timedOut?: boolean;
  /** The monitor killed it when its cgroup had used limits.cpuTime. */
  cpuTimeExceeded?: boolean;
}

const count = integer(0, Number.MAX_SAFE_INTEGER);
const EXIT_FILE: Spec<ExitFile> = {
  exitCode: nullable(integer(0, 255)),
  signal: nullable(integer(1, 64)),
  finishedAt: matching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/, 'a time with nanoseconds'),
  userUs: count,
  systemUs: count,
  maxRssKiB: count,
  oomKilled: boolean,
  timedOut: optional(boolean),
  cpuTimeExceeded: optional(boolean),
};

const SIGNAL_NAMES = new Map(Object.entries(osConstants.signals).map(([name, n]) => [n as number, name]));

/** Reads exit.json in `dir`: undefined when there is none or it is not one the monitor wrote. */
export function readExitFile(dir: string): ExitFile | undefined {
  let text: string;
  try {
    const fd = fs.openSync(path.join(dir, 'exit.json'), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      text = fs.readFileSync(fd, 'utf8');
    } finally {
      fs.closeSync(fd);
    }
    return checkObject(EXIT_FILE, JSON.parse(text), 'exit.json', (k) => k);
  } catch {
    return undefined;
  }
}

/**
 * A running record of a detached container whose monitor wrote exit.json: the exit status
 * is that file's (the monitor cannot write JSON records; this merge is how ps, inspect and
 * wait learn it).
 */
function mergeExitFile(rec: ContainerRecord, dir: string): void {
  const exit = readExitFile(dir);
  if (!exit) return;
  // A file left by an earlier run (start removes it, but a crash may come between): only an
  // end after this run's start is this run's end.
  if (rec.startedAt !== null && `${exit.finishedAt.slice(0, 23)}Z` < rec.startedAt) return;
  rec.status = 'exited';
  rec.exitCode = exit.exitCode;
  rec.signal = exit.signal === null ? null : (SIGNAL_NAMES.get(exit.signal) ?? `SIG${exit.signal}`);
  // Milliseconds, as every other time of a record.
  rec.finishedAt = `${exit.finishedAt.slice(0, 23)}Z`;
  // As a run in Node names it (runtime.ts): the OOM killer first, then what nsbox killed it for.
  if (exit.oomKilled) rec.killedFor = 'oom';
  else if (exit.timedOut) rec.killedFor = 'timeout';
  else if (exit.cpuTimeExceeded) rec.killedFor = 'cpuTime';
}
