/**
 * What a container may do once it runs: its capabilities, its user, no_new_privs, the
 * seccomp filter and the /proc and /sys paths it may not see or write. Pure: this turns
 * options into a Confinement, the plan's `security` and its masking steps (src/plan.ts); the
 * child applies them (src-cc/core/security.cc, and the mask/read-only steps in child.cc).
 * The filter itself is compiled by src/seccomp.ts, the capability table is src/capabilities.ts.
 *
 * The defaults follow docker's: its default capability list, its masked and read-only
 * paths, and a seccomp denylist in the spirit of its default profile (which is an
 * allowlist: calls newer than those reviewed here get ENOSYS).
 */
import { capabilityBit as capBit, capabilityName } from './capabilities';
import { NsboxError, invalid } from './errors';
import { MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, type NativeSecurity, type NativeStep } from './native';
import { hostArch, seccompFilter, type SeccompArch } from './seccomp';

export interface SecurityOptions {
  /** All capabilities, no seccomp filter, nothing masked in /proc and /sys (like docker's). */
  privileged?: boolean | undefined;
  /** Capabilities to add to the default set: 'NET_ADMIN', 'CAP_NET_ADMIN' or 'ALL'. */
  capAdd?: string[] | undefined;
  /** Capabilities to remove from the default set, or 'ALL'. */
  capDrop?: string[] | undefined;
  /** 'default' (a denylist of dangerous calls) or 'unconfined' (no filter). */
  seccomp?: 'default' | 'unconfined' | undefined;
  /** Whether execve may never again grant privileges (setuid bits, file caps). Default true. */
  noNewPrivileges?: boolean | undefined;
  /** 'UID[:GID]', numeric. Without GID the group is the UID (never root's group by accident). */
  user?: string | undefined;
}

export interface Confinement {
  security: NativeSecurity;
  /** Masking and read-only steps, run after the mounts and before pivot_root. */
  steps: NativeStep[];
}

/** docker's default list. */
export const DEFAULT_CAPABILITIES: readonly string[] = Object.freeze([
  'CHOWN',
  'DAC_OVERRIDE',
  'FSETID',
  'FOWNER',
  'MKNOD',
  'NET_RAW',
  'SETGID',
  'SETUID',
  'SETFCAP',
  'SETPCAP',
  'NET_BIND_SERVICE',
  'SYS_CHROOT',
  'KILL',
  'AUDIT_WRITE',
]);

/** Paths nobody in a container needs, that tell about or act on the host. */
export const MASKED_PATHS: readonly string[] = Object.freeze([
  '/proc/acpi',
  '/proc/asound',
  '/proc/interrupts',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/sys/devices/virtual/powercap',
  '/sys/firmware',
]);

/** Host-wide knobs: readable, not writable. */
export const READONLY_PATHS: readonly string[] = Object.freeze(['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']);

const ALL_CAPS = (1n << 64n) - 1n;

function toPair(mask: bigint): [number, number] {
  return [Number(mask & 0xffffffffn), Number((mask >> 32n) & 0xffffffffn)];
}

function capList(list: unknown, what: string): string[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw invalid(`${what}: ${describe(list)}: must be an array of capability names`);
  return list.map((c) => capabilityName(c, what));
}

/** The bounding set after capAdd/capDrop, and the caps added by name (not through ALL). */
function capabilitySets(opts: SecurityOptions): { bounding: bigint; added: bigint } {
  const add = capList(opts.capAdd, 'capAdd');
  const drop = capList(opts.capDrop, 'capDrop');
  if (opts.privileged === true) return { bounding: ALL_CAPS, added: 0n };
  for (const c of add) {
    if (c !== 'ALL' && drop.includes(c)) throw invalid(`capAdd/capDrop: ${c} is both added and dropped`);
  }
  // As docker: ALL in capAdd starts from everything, ALL in capDrop from nothing; the
  // names on the other side then apply on top.
  let bounding = add.includes('ALL') ? ALL_CAPS : drop.includes('ALL') ? 0n : DEFAULT_CAPABILITIES.reduce((m, c) => m | capBit(c), 0n);
  let added = 0n;
  for (const c of add) if (c !== 'ALL') added |= capBit(c);
  for (const c of drop) if (c !== 'ALL') bounding &= ~capBit(c);
  bounding |= added;
  return { bounding, added };
}

const MAX_ID = 0xfffffffe; // (uid_t)-1 means "unchanged" to setresuid

function parseUser(user: unknown): { uid: number; gid: number } {
  if (user === undefined) return { uid: 0, gid: 0 };
  const m = typeof user === 'string' ? /^(\d+)(?::(\d+))?$/.exec(user) : null;
  if (!m) throw invalid(`user: ${String(user)}: expected UID or UID:GID, numeric`);
  const uid = Number(m[1]);
  const gid = m[2] === undefined ? uid : Number(m[2]);
  if (uid > MAX_ID || gid > MAX_ID) throw invalid(`user: ${user}: ids go up to ${MAX_ID}`);
  return { uid, gid };
}

function maskingSteps(): NativeStep[] {
  const rel = (p: string) => p.replace(/^\/+/, '');
  return [
    ...MASKED_PATHS.map((p): NativeStep => ({ op: 'maskInRoot', name: `mask ${p}`, target: rel(p) })),
    ...READONLY_PATHS.map((p): NativeStep => ({
      op: 'readonlyInRoot',
      name: `read-only ${p}`,
      target: rel(p),
      attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
    })),
  ];
}

/** A value as a message shows it: the string 'false' must not read like the boolean false. */
function describe(v: unknown): string {
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/**
 * What each option takes, checked by its exact type: options often come from JSON or a
 * config file, and tested for truthiness `privileged: 'false'` would mean privileged.
 * Undefined is the same as absent.
 */
const OPTION_CHECKS: Readonly<Record<keyof SecurityOptions, { ok: (v: unknown) => boolean; takes: string }>> = {
  privileged: { ok: (v) => typeof v === 'boolean', takes: 'a boolean (true or false)' },
  capAdd: { ok: Array.isArray, takes: 'an array of capability names' },
  capDrop: { ok: Array.isArray, takes: 'an array of capability names' },
  seccomp: { ok: (v) => v === 'default' || v === 'unconfined', takes: "'default' or 'unconfined'" },
  noNewPrivileges: { ok: (v) => typeof v === 'boolean', takes: 'a boolean (true or false)' },
  user: { ok: (v) => typeof v === 'string', takes: "a string 'UID' or 'UID:GID'" },
};
const OPTION_KEYS = new Set(Object.keys(OPTION_CHECKS));

export function checkOptions(opts: unknown): asserts opts is SecurityOptions {
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) throw invalid(`security options: ${describe(opts)}: must be an object`);
  for (const [k, v] of Object.entries(opts)) {
    if (!OPTION_KEYS.has(k)) throw invalid(`security options: ${k}: unknown option (${[...OPTION_KEYS].join(', ')})`);
    const check = OPTION_CHECKS[k as keyof SecurityOptions];
    if (v !== undefined && !check.ok(v)) throw invalid(`security options: ${k}: ${describe(v)}: takes ${check.takes}`);
  }
}

/** Turns security options into the plan's `confinement`: credentials and filter, and the masking steps. */
export function buildConfinement(opts: SecurityOptions = {}, arch: SeccompArch | undefined = hostArch()): Confinement {
  checkOptions(opts);
  const { bounding, added } = capabilitySets(opts);
  const { uid, gid } = parseUser(opts.user);
  // Root gets the bounding set back from execve anyway. Any other uid gets nothing from
  // execve but its ambient set: the caps it was given by name (docker gives a non-root
  // user none at all; nsbox lets `capAdd` mean what it says). ALL is never made ambient.
  const ambient = uid === 0 ? 0n : added & bounding;
  const security: NativeSecurity = {
    bounding: toPair(bounding),
    effective: toPair(uid === 0 ? bounding : ambient),
    noNewPrivs: opts.noNewPrivileges ?? true,
    uid,
    gid,
  };
  if (ambient) security.ambient = toPair(ambient);
  if (opts.privileged !== true && opts.seccomp !== 'unconfined') {
    if (!arch) {
      throw new NsboxError('UNSUPPORTED', `seccomp: no default filter for ${process.arch}`, { hint: "use seccomp: 'unconfined'" });
    }
    security.seccomp = seccompFilter(arch, bounding);
  }
  return { security, steps: opts.privileged === true ? [] : maskingSteps() };
}
