/**
 * Resource limits: what a caller asks for (`limits`, `ulimits`), checked and turned into
 * (a) the rlimits nsbox-init sets for the whole container before it forks the command, and
 * (b) the cgroup settings src/cgroup.ts writes for the whole process tree.
 * Pure: no system calls here.
 */
import { NsboxError, invalid } from './errors';

export interface Limits {
  /** Memory of the whole container, bytes or '64m' (docker's --memory). */
  memory?: number | string | undefined;
  /** Memory plus swap (docker's --memory-swap); -1: unlimited swap. Default: equal to memory (no swap). */
  memorySwap?: number | string | undefined;
  /** CPUs' worth of time per period, like docker's --cpus: 0.5 is half a CPU. */
  cpus?: number | undefined;
  /** CPUs the container may run on: '0', '0-2', '0,3' (docker's --cpuset-cpus). */
  cpuset?: string | undefined;
  /** Relative CPU weight (docker's --cpu-shares), 2 to 262144. */
  cpuShares?: number | undefined;
  /** Processes and threads of the whole container (docker's --pids-limit). */
  pids?: number | undefined;
  /** Seconds of CPU time of the whole container; beyond it the container is killed. */
  cpuTime?: number | undefined;
  /** Open files per process (RLIMIT_NOFILE). */
  files?: number | undefined;
  /** Largest file a process may write, bytes or '1m' (RLIMIT_FSIZE). */
  fileSize?: number | string | undefined;
  /** What the container may write to its root filesystem, bytes or '64m'; beyond it ENOSPC (see diskLimit). */
  disk?: number | string | undefined;
}

/** Soft and hard limit; Infinity for unlimited. */
export type Ulimit = number | [number, number];

/** RLIMIT_* numbers (the same on every Linux architecture nsbox supports). */
export const RLIMITS: Readonly<Record<string, number>> = Object.freeze({
  cpu: 0,
  fsize: 1,
  data: 2,
  stack: 3,
  core: 4,
  rss: 5,
  nproc: 6,
  nofile: 7,
  memlock: 8,
  as: 9,
  locks: 10,
  sigpending: 11,
  msgqueue: 12,
  nice: 13,
  rtprio: 14,
  rttime: 15,
});

const MIB = 1024 * 1024;

/**
 * What every container starts with, whatever the supervisor's own limits are. No core
 * dumps: with a piped core_pattern a dump runs a host program. Open files as systemd gives a
 * service. The rest: the kernel's usual defaults.
 */
export const DEFAULT_RLIMITS: Readonly<Record<string, [number, number]>> = Object.freeze({
  cpu: [Infinity, Infinity],
  fsize: [Infinity, Infinity],
  data: [Infinity, Infinity],
  stack: [8 * MIB, Infinity],
  core: [0, 0],
  rss: [Infinity, Infinity],
  nproc: [Infinity, Infinity],
  nofile: [1024, 524288],
  memlock: [8 * MIB, 8 * MIB],
  as: [Infinity, Infinity],
  locks: [Infinity, Infinity],
  msgqueue: [819200, 819200],
  nice: [0, 0],
  rtprio: [0, 0],
  rttime: [Infinity, Infinity],
});

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: MIB, g: 1024 * MIB, t: 1024 * 1024 * MIB };

/** Bytes from a number or docker's size syntax ('64m', '1.5g', '512k', '100'). */
export function parseSize(value: unknown, what: string): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw invalid(`${what}: ${value}: a whole number of bytes`);
    return value;
  }
  if (typeof value !== 'string') throw invalid(`${what}: expected bytes as a number or a size like '64m'`);
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(value.trim());
  if (!m) throw invalid(`${what}: ${JSON.stringify(value)}: expected a size like 64m, 1g or 512k`);
  const bytes = Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(bytes)) throw invalid(`${what}: ${value}: too large`);
  return bytes;
}

function positiveInteger(value: unknown, what: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${what}: expected a whole number from ${min} to ${max}`);
  }
  return value;
}

/** What the cgroups must hold (bytes, microseconds); undefined fields are not limited. */
export interface CgroupLimits {
  memory?: number;
  /** memory + swap; -1 for unlimited swap. */
  memorySwap?: number;
  cpuQuotaUs?: number;
  cpuPeriodUs?: number;
  cpuset?: string;
  cpuShares?: number;
  pids?: number;
  cpuTimeNs?: number;
}

export const CPU_PERIOD_US = 100_000;

const LIMIT_KEYS = new Set(['memory', 'memorySwap', 'cpus', 'cpuset', 'cpuShares', 'pids', 'cpuTime', 'files', 'fileSize', 'disk']);

/** Checks `limits` and returns the cgroup part; the rlimit part comes from rlimitsFor(). */
export function cgroupLimits(limits: Limits | undefined): CgroupLimits {
  if (limits === undefined) return {};
  if (!limits || typeof limits !== 'object' || Array.isArray(limits)) throw invalid('limits: expected an object');
  for (const k of Object.keys(limits)) {
    if (!LIMIT_KEYS.has(k)) throw invalid(`limits: ${k}: unknown limit (${[...LIMIT_KEYS].join(', ')})`);
  }
  // Runtime.run takes it off (see withoutDisk): a bare root has no write layer to bound.
  if (limits.disk !== undefined) throw new NsboxError('UNSUPPORTED', 'limits.disk: needs a write layer, which only a container made by Runtime.run has');
  const out: CgroupLimits = {};
  if (limits.memory !== undefined) {
    out.memory = parseSize(limits.memory, 'limits.memory');
    // Less than this and the container cannot even start its init.
    if (out.memory < 6 * MIB) throw invalid('limits.memory: at least 6m');
  }
  if (limits.memorySwap !== undefined) {
    if (limits.memorySwap === -1 || limits.memorySwap === '-1') out.memorySwap = -1;
    else out.memorySwap = parseSize(limits.memorySwap, 'limits.memorySwap');
    if (out.memory === undefined) throw invalid('limits.memorySwap: needs limits.memory');
    if (out.memorySwap !== -1 && out.memorySwap < out.memory) throw invalid('limits.memorySwap: memory plus swap, so at least limits.memory');
  } else if (out.memory !== undefined) {
    out.memorySwap = out.memory; // no swap: an OOM verdict means what it says
  }
  if (limits.cpus !== undefined) {
    if (typeof limits.cpus !== 'number' || !(limits.cpus >= 0.01) || limits.cpus > 1024) throw invalid('limits.cpus: expected a number from 0.01 to 1024');
    out.cpuPeriodUs = CPU_PERIOD_US;
    out.cpuQuotaUs = Math.round(limits.cpus * CPU_PERIOD_US);
  }
  if (limits.cpuset !== undefined) {
    if (typeof limits.cpuset !== 'string' || !/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(limits.cpuset)) {
      throw invalid(`limits.cpuset: ${JSON.stringify(limits.cpuset)}: expected CPUs like 0, 0-2 or 0,3`);
    }
    out.cpuset = limits.cpuset;
  }
  if (limits.cpuShares !== undefined) out.cpuShares = positiveInteger(limits.cpuShares, 'limits.cpuShares', 2, 262144);
  if (limits.pids !== undefined) out.pids = positiveInteger(limits.pids, 'limits.pids');
  if (limits.cpuTime !== undefined) {
    if (typeof limits.cpuTime !== 'number' || !(limits.cpuTime > 0)) throw invalid('limits.cpuTime: expected seconds, more than 0');
    out.cpuTimeNs = Math.round(limits.cpuTime * 1e9);
  }
  return out;
}

/** The smallest write layer limits.disk makes: an ext4 image needs room for its own tables. */
export const MIN_DISK = MIB;

/** limits.disk in bytes (at least MIN_DISK), or undefined when not asked for. */
export function diskLimit(limits: Limits | undefined): number | undefined {
  if (limits?.disk === undefined) return undefined;
  const bytes = parseSize(limits.disk, 'limits.disk');
  if (bytes < MIN_DISK) throw invalid(`limits.disk: ${limits.disk}: at least 1m`);
  return bytes;
}

/** The limits a container's processes get: limits.disk is the write layer's (Runtime.run). */
export function withoutDisk(limits: Limits): Limits {
  const { disk: _disk, ...rest } = limits;
  return rest;
}

function rlimitValue(v: unknown, what: string): number {
  if (v === Infinity || v === -1 || v === 'unlimited') return Infinity;
  return positiveInteger(v, what, 0);
}

/**
 * The rlimits nsbox-init sets: the defaults, then `limits.files`/`fileSize`, then `ulimits`
 * by name (docker's --ulimit names: nofile, nproc, core, fsize, ...).
 */
export function rlimitsFor(
  limits: Limits | undefined,
  ulimits: Record<string, Ulimit> | undefined,
  hard: Record<string, number> = {},
): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {};
  const explicit = new Set<string>();
  for (const [k, v] of Object.entries(DEFAULT_RLIMITS)) out[k] = [...v];
  if (limits?.files !== undefined) {
    const n = positiveInteger(limits.files, 'limits.files');
    out.nofile = [n, n];
    explicit.add('nofile');
  }
  if (limits?.fileSize !== undefined) {
    const n = parseSize(limits.fileSize, 'limits.fileSize');
    out.fsize = [n, n];
    explicit.add('fsize');
  }
  if (ulimits !== undefined) {
    if (!ulimits || typeof ulimits !== 'object' || Array.isArray(ulimits)) throw invalid('ulimits: expected an object of name: limit');
    for (const [name, value] of Object.entries(ulimits)) {
      if (!(name in RLIMITS)) throw invalid(`ulimits: ${name}: unknown (${Object.keys(RLIMITS).join(', ')})`);
      const [soft, hard] = Array.isArray(value) ? value : [value, value];
      const pair: [number, number] = [rlimitValue(soft, `ulimits.${name}`), rlimitValue(hard, `ulimits.${name}`)];
      if (pair[0] > pair[1]) throw invalid(`ulimits: ${name}: the soft limit is above the hard one`);
      out[name] = pair;
      explicit.add(name);
    }
  }
  return clampDefaults(out, explicit, hard);
}

/** The names /proc/PID/limits gives each rlimit. */
export const PROC_LIMIT_NAMES: Readonly<Record<string, string>> = {
  'Max cpu time': 'cpu',
  'Max file size': 'fsize',
  'Max data size': 'data',
  'Max stack size': 'stack',
  'Max core file size': 'core',
  'Max resident set': 'rss',
  'Max processes': 'nproc',
  'Max open files': 'nofile',
  'Max locked memory': 'memlock',
  'Max address space': 'as',
  'Max file locks': 'locks',
  'Max pending signals': 'sigpending',
  'Max msgqueue size': 'msgqueue',
  'Max nice priority': 'nice',
  'Max realtime priority': 'rtprio',
  'Max realtime timeout': 'rttime',
};

/** Hard limits from a /proc/PID/limits text, by rlimit name. */
export function parseProcLimits(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n').slice(1)) {
    const name = Object.keys(PROC_LIMIT_NAMES).find((n) => line.startsWith(n));
    if (!name) continue;
    const hard = line.slice(name.length).trim().split(/\s+/)[1];
    out[PROC_LIMIT_NAMES[name]!] = hard === 'unlimited' ? Infinity : Number(hard);
  }
  return out;
}

/**
 * The defaults as far as this process may set them: without CAP_SYS_RESOURCE no hard limit
 * can go above the supervisor's own, so the defaults stop there (what a caller asks for
 * explicitly is not lowered: setting it then fails, naming the limit).
 */
export function clampDefaults(
  rlimits: Record<string, [number, number]>,
  explicit: Set<string>,
  hard: Record<string, number>,
): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {};
  for (const [name, [soft, h]] of Object.entries(rlimits)) {
    const cap = explicit.has(name) ? Infinity : (hard[name] ?? Infinity);
    const newHard = Math.min(h, cap);
    out[name] = [Math.min(soft, newHard), newHard];
  }
  return out;
}

/** nsbox-init's options for those rlimits: rlimit=RESOURCE:SOFT:HARD. */
export function rlimitOptions(rlimits: Record<string, [number, number]>): string[] {
  const text = (n: number) => (n === Infinity ? 'inf' : String(n));
  return Object.entries(rlimits).map(([name, [soft, hard]]) => `rlimit=${RLIMITS[name]}:${text(soft)}:${text(hard)}`);
}

/** `--ulimit NAME=SOFT[:HARD]` as docker parses it. */
export function parseUlimit(spec: string): [string, Ulimit] {
  const m = /^([a-z]+)=(-?\d+|unlimited)(?::(-?\d+|unlimited))?$/.exec(spec);
  if (!m) throw invalid(`--ulimit ${spec}: expected NAME=SOFT[:HARD]`);
  const v = (t: string) => (t === 'unlimited' || t === '-1' ? Infinity : Number(t));
  const soft = v(m[2]!);
  return [m[1]!, [soft, m[3] === undefined ? soft : v(m[3])]];
}
