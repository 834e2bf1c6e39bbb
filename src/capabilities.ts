/**
 * Linux capabilities by name: the kernel's numbers, and the names a caller may write for them.
 * Shared by the policy (src/security.ts) and the seccomp filter (src/seccomp.ts), whose rules
 * are lifted for a container that keeps a capability.
 */
import { invalid } from './errors';

/** Capability numbers from <linux/capability.h>. */
export const CAPABILITIES: Readonly<Record<string, number>> = Object.freeze({
  CHOWN: 0,
  DAC_OVERRIDE: 1,
  DAC_READ_SEARCH: 2,
  FOWNER: 3,
  FSETID: 4,
  KILL: 5,
  SETGID: 6,
  SETUID: 7,
  SETPCAP: 8,
  LINUX_IMMUTABLE: 9,
  NET_BIND_SERVICE: 10,
  NET_BROADCAST: 11,
  NET_ADMIN: 12,
  NET_RAW: 13,
  IPC_LOCK: 14,
  IPC_OWNER: 15,
  SYS_MODULE: 16,
  SYS_RAWIO: 17,
  SYS_CHROOT: 18,
  SYS_PTRACE: 19,
  SYS_PACCT: 20,
  SYS_ADMIN: 21,
  SYS_BOOT: 22,
  SYS_NICE: 23,
  SYS_RESOURCE: 24,
  SYS_TIME: 25,
  SYS_TTY_CONFIG: 26,
  MKNOD: 27,
  LEASE: 28,
  AUDIT_WRITE: 29,
  AUDIT_CONTROL: 30,
  SETFCAP: 31,
  MAC_OVERRIDE: 32,
  MAC_ADMIN: 33,
  SYSLOG: 34,
  WAKE_ALARM: 35,
  BLOCK_SUSPEND: 36,
  AUDIT_READ: 37,
  PERFMON: 38,
  BPF: 39,
  CHECKPOINT_RESTORE: 40,
});

/** The capability's bit in a 64-bit set. */
export const capabilityBit = (name: string): bigint => 1n << BigInt(CAPABILITIES[name]!);

/** 'net_admin', 'CAP_NET_ADMIN' → 'NET_ADMIN'; 'all' → 'ALL'. */
export function capabilityName(raw: unknown, what: string): string {
  if (typeof raw !== 'string') throw invalid(`${what}: ${String(raw)}: a capability name must be a string`);
  const name = raw.trim().toUpperCase().replace(/^CAP_/, '');
  if (name !== 'ALL' && !(name in CAPABILITIES)) {
    throw invalid(`${what}: ${raw}: unknown capability (${Object.keys(CAPABILITIES).join(', ')} or ALL)`);
  }
  return name;
}
