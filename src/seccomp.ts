/**
 * The seccomp filter: a denylist of calls that reach past the container, compiled here to
 * classic BPF, so that it is plain bytes a test can run (test/unit/seccomp.test.ts) and the
 * child only loads (src-cc/init/security.cc). The kernel's numbers it needs (syscalls per
 * architecture, clone flags, ioctls, address families) are here too.
 */
import { capabilityBit as capBit } from './capabilities';
import { NsboxError } from './errors';

export type SeccompArch = 'x86_64' | 'aarch64';

export function hostArch(): SeccompArch | undefined {
  return process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : undefined;
}

/** AUDIT_ARCH_* from <linux/audit.h>: the machine, 64-bit, little-endian. */
export const AUDIT_ARCH: Readonly<Record<SeccompArch, number>> = { x86_64: 0xc000003e, aarch64: 0xc00000b7 };

/** On x86_64 the x32 ABI is the same arch with this bit set in the syscall number. */
export const X32_SYSCALL_BIT = 0x40000000;

/** Syscall numbers: x86_64 from asm/unistd_64.h, aarch64 from asm-generic/unistd.h. */
export const SYSCALLS: Readonly<Record<string, Partial<Record<SeccompArch, number>>>> = {
  ioctl: { x86_64: 16, aarch64: 29 },
  clone: { x86_64: 56, aarch64: 220 },
  clone3: { x86_64: 435, aarch64: 435 },
  unshare: { x86_64: 272, aarch64: 97 },
  setns: { x86_64: 308, aarch64: 268 },
  personality: { x86_64: 135, aarch64: 92 },
  mount: { x86_64: 165, aarch64: 40 },
  umount2: { x86_64: 166, aarch64: 39 },
  pivot_root: { x86_64: 155, aarch64: 41 },
  open_tree: { x86_64: 428, aarch64: 428 },
  move_mount: { x86_64: 429, aarch64: 429 },
  fsopen: { x86_64: 430, aarch64: 430 },
  fsconfig: { x86_64: 431, aarch64: 431 },
  fsmount: { x86_64: 432, aarch64: 432 },
  fspick: { x86_64: 433, aarch64: 433 },
  mount_setattr: { x86_64: 442, aarch64: 442 },
  open_tree_attr: { x86_64: 467, aarch64: 467 },
  swapon: { x86_64: 167, aarch64: 224 },
  swapoff: { x86_64: 168, aarch64: 225 },
  quotactl: { x86_64: 179, aarch64: 60 },
  quotactl_fd: { x86_64: 443, aarch64: 443 },
  lookup_dcookie: { x86_64: 212, aarch64: 18 },
  kexec_load: { x86_64: 246, aarch64: 104 },
  kexec_file_load: { x86_64: 320, aarch64: 294 },
  reboot: { x86_64: 169, aarch64: 142 },
  init_module: { x86_64: 175, aarch64: 105 },
  finit_module: { x86_64: 313, aarch64: 273 },
  delete_module: { x86_64: 176, aarch64: 106 },
  create_module: { x86_64: 174 },
  get_kernel_syms: { x86_64: 177 },
  query_module: { x86_64: 178 },
  ptrace: { x86_64: 101, aarch64: 117 },
  process_vm_readv: { x86_64: 310, aarch64: 270 },
  process_vm_writev: { x86_64: 311, aarch64: 271 },
  kcmp: { x86_64: 312, aarch64: 272 },
  settimeofday: { x86_64: 164, aarch64: 170 },
  clock_settime: { x86_64: 227, aarch64: 112 },
  clock_adjtime: { x86_64: 305, aarch64: 266 },
  adjtimex: { x86_64: 159, aarch64: 171 },
  acct: { x86_64: 163, aarch64: 89 },
  iopl: { x86_64: 172 },
  ioperm: { x86_64: 173 },
  open_by_handle_at: { x86_64: 304, aarch64: 265 },
  bpf: { x86_64: 321, aarch64: 280 },
  perf_event_open: { x86_64: 298, aarch64: 241 },
  keyctl: { x86_64: 250, aarch64: 219 },
  add_key: { x86_64: 248, aarch64: 217 },
  request_key: { x86_64: 249, aarch64: 218 },
  userfaultfd: { x86_64: 323, aarch64: 282 },
  nfsservctl: { x86_64: 180, aarch64: 42 },
  sysfs: { x86_64: 139 },
  uselib: { x86_64: 134 },
  _sysctl: { x86_64: 156 },
  io_uring_setup: { x86_64: 425, aarch64: 425 },
  io_uring_enter: { x86_64: 426, aarch64: 426 },
  io_uring_register: { x86_64: 427, aarch64: 427 },
  socket: { x86_64: 41, aarch64: 198 },
  syslog: { x86_64: 103, aarch64: 116 },
  vhangup: { x86_64: 153, aarch64: 58 },
  chroot: { x86_64: 161, aarch64: 51 },
  ustat: { x86_64: 136 },
  fanotify_init: { x86_64: 300, aarch64: 262 },
  pidfd_getfd: { x86_64: 438, aarch64: 438 },
  process_madvise: { x86_64: 440, aarch64: 440 },
  mbind: { x86_64: 237, aarch64: 235 },
  get_mempolicy: { x86_64: 239, aarch64: 236 },
  set_mempolicy: { x86_64: 238, aarch64: 237 },
  set_mempolicy_home_node: { x86_64: 450, aarch64: 450 },
  migrate_pages: { x86_64: 256, aarch64: 238 },
  move_pages: { x86_64: 279, aarch64: 239 },
};

/**
 * The highest syscall number whose call was looked at for this filter, per architecture:
 * every number up to it is either in the rules below or judged harmless to allow. Above it
 * the filter answers ENOSYS (what a kernel without the call says, so libc falls back), so a
 * call a newer kernel adds is not allowed before someone has reviewed it.
 *
 * Reviewed up to listns (470, Linux 6.19), the last in both tables: x86_64's own numbers
 * end at 336 (uprobe), aarch64's at 294, and from 424 both use the common numbers. Calls
 * 451-470 are allowed (cachestat, fchmodat2, map_shadow_stack, futex_wake/wait/requeue,
 * statmount, listmount, lsm_*, mseal, *xattrat, file_getattr/setattr, listns: the kernel
 * checks them like their older relatives) except open_tree_attr (a mount call, above).
 * Raise this only after reviewing the new calls.
 */
export const HIGHEST_REVIEWED_SYSCALL: Readonly<Record<SeccompArch, number>> = { x86_64: 470, aarch64: 470 };

const ERRNO = { EPERM: 1, ENOSYS: 38, EAFNOSUPPORT: 97 } as const;

/** CLONE_NEW* flags: making a namespace is what the filter refuses, not cloning. */
export const CLONE_NEWNS = 0x00020000;
export const CLONE_NEWTIME = 0x00000080;
export const CLONE_NEWCGROUP = 0x02000000;
export const CLONE_NEWUTS = 0x04000000;
export const CLONE_NEWIPC = 0x08000000;
export const CLONE_NEWUSER = 0x10000000;
export const CLONE_NEWPID = 0x20000000;
export const CLONE_NEWNET = 0x40000000;
const NAMESPACE_FLAGS = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;

export const TIOCSTI = 0x5412; // push a byte into the terminal's input: types into the host's shell
export const TIOCLINUX = 0x541c; // console tricks, selection paste among them

/** socket() address families and the netlink protocol the filter looks at. */
export const AF_NETLINK = 16;
export const AF_VSOCK = 40;
export const NETLINK_KOBJECT_UEVENT = 15;

/** personality() values that only change what uname says or ask for the current one. */
const HARMLESS_PERSONALITIES = [0x0 /* PER_LINUX */, 0x8 /* PER_LINUX32 */, 0x20000 /* UNAME26 */, 0x20008, 0xffffffff /* query */];

type ArgTest =
  | { arg: number; anyBit: number } // denied when the argument has one of these bits
  | { arg: number; oneOf: number[] } // denied when the argument is one of these
  | { arg: number; noneOf: number[] }; // denied unless the argument is one of these

export interface SeccompRule {
  syscalls: string[];
  errno: keyof typeof ERRNO;
  /** Lifted when the container keeps any of these capabilities (as docker's profile does). */
  unless?: string[];
  /**
   * Only some calls are denied: those for which the test holds, or every test of a list
   * (at most a few: each is a block of jumps). A test reads the low 32 bits of an argument.
   */
  when?: ArgTest | readonly ArgTest[];
}

/**
 * The denylist. Everything not named here is allowed: this is a filter against calls that
 * reach past the container (kernel, clock, keyring, other processes, new namespaces and
 * mounts), not a list of what programs may do.
 */
export const SECCOMP_RULES: readonly SeccompRule[] = [
  {
    syscalls: [
      'mount',
      'umount2',
      'pivot_root',
      'open_tree',
      'move_mount',
      'fsopen',
      'fsconfig',
      'fsmount',
      'fspick',
      'mount_setattr',
      'open_tree_attr',
      'setns',
      'swapon',
      'swapoff',
      'quotactl',
      'quotactl_fd',
      'lookup_dcookie',
    ],
    errno: 'EPERM',
    unless: ['SYS_ADMIN'],
  },
  // Namespaces: refused at clone and unshare by flag. clone3 passes its flags in memory a
  // filter cannot read, so it gets ENOSYS, and libc falls back to clone.
  { syscalls: ['unshare'], errno: 'EPERM', unless: ['SYS_ADMIN'], when: { arg: 0, anyBit: NAMESPACE_FLAGS | CLONE_NEWTIME } },
  // clone's low byte is the exit signal; CLONE_NEWTIME (0x80) cannot be asked for there.
  { syscalls: ['clone'], errno: 'EPERM', unless: ['SYS_ADMIN'], when: { arg: 0, anyBit: NAMESPACE_FLAGS } },
  { syscalls: ['clone3'], errno: 'ENOSYS', unless: ['SYS_ADMIN'] },
  { syscalls: ['kexec_load', 'kexec_file_load', 'reboot'], errno: 'EPERM', unless: ['SYS_BOOT'] },
  { syscalls: ['init_module', 'finit_module', 'delete_module', 'create_module', 'get_kernel_syms', 'query_module'], errno: 'EPERM', unless: ['SYS_MODULE'] },
  // Reading or acting on another process's memory and files (pidfd_getfd takes a copy of
  // any fd of a process it may ptrace; process_madvise pages out its memory).
  { syscalls: ['ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'pidfd_getfd', 'process_madvise'], errno: 'EPERM', unless: ['SYS_PTRACE'] },
  { syscalls: ['settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex'], errno: 'EPERM', unless: ['SYS_TIME'] },
  { syscalls: ['acct'], errno: 'EPERM', unless: ['SYS_PACCT'] },
  { syscalls: ['iopl', 'ioperm'], errno: 'EPERM', unless: ['SYS_RAWIO'] },
  { syscalls: ['open_by_handle_at'], errno: 'EPERM', unless: ['DAC_READ_SEARCH'] },
  { syscalls: ['bpf'], errno: 'EPERM', unless: ['SYS_ADMIN', 'BPF'] },
  { syscalls: ['perf_event_open'], errno: 'EPERM', unless: ['SYS_ADMIN', 'PERFMON'] },
  // fanotify watches whole filesystems and mounts; since 5.13 a process without caps may
  // start a limited group, which docker's profile does not allow either.
  { syscalls: ['fanotify_init'], errno: 'EPERM', unless: ['SYS_ADMIN'] },
  // The kernel's log is the host's, and dmesg_restrict may be 0. docker lifts this with
  // SYS_ADMIN too; the kernel no longer takes SYS_ADMIN for it (6.x says EPERM), nor do we.
  { syscalls: ['syslog'], errno: 'EPERM', unless: ['SYSLOG'] },
  // NUMA placement of memory: a container without SYS_NICE has no say in which node of
  // the host its pages live on (docker's gate; it denies move_pages and migrate_pages
  // outright, nsbox lifts them with the capability the kernel checks for them).
  { syscalls: ['mbind', 'get_mempolicy', 'set_mempolicy', 'set_mempolicy_home_node', 'move_pages', 'migrate_pages'], errno: 'EPERM', unless: ['SYS_NICE'] },
  // The kernel checks these capabilities too; the filter keeps the calls away from the
  // kernel's code when the container does not have them (as docker does).
  { syscalls: ['vhangup'], errno: 'EPERM', unless: ['SYS_TTY_CONFIG'] },
  { syscalls: ['chroot'], errno: 'EPERM', unless: ['SYS_CHROOT'] },
  // Never namespaced, or a large attack surface for little use in a container: no cap lifts them.
  {
    syscalls: [
      'keyctl',
      'add_key',
      'request_key',
      'userfaultfd',
      'nfsservctl',
      'sysfs',
      'uselib',
      '_sysctl',
      'io_uring_setup',
      'io_uring_enter',
      'io_uring_register',
      'ustat',
    ],
    errno: 'EPERM',
  },
  // vsock reaches the hypervisor and every VM-wide port, whatever the container's network
  // namespace (vsock has none). EAFNOSUPPORT is what a kernel without vsock says: programs
  // that probe for it already take it as "no vsock here"; EPERM would suggest a capability
  // helps, and none does. It also keeps the call from loading the vsock module.
  { syscalls: ['socket'], errno: 'EAFNOSUPPORT', when: { arg: 0, oneOf: [AF_VSOCK] } },
  // The kernel sends the host's device events (a disk plugged in, a block device resized)
  // to every network namespace owned by the initial user namespace, so to a container's
  // own namespace too. With SYS_ADMIN it could mount sysfs and see the devices anyway.
  {
    syscalls: ['socket'],
    errno: 'EPERM',
    unless: ['SYS_ADMIN'],
    when: [
      { arg: 0, oneOf: [AF_NETLINK] },
      { arg: 2, oneOf: [NETLINK_KOBJECT_UEVENT] },
    ],
  },
  { syscalls: ['personality'], errno: 'EPERM', when: { arg: 0, noneOf: HARMLESS_PERSONALITIES } },
  // ioctl's request is an unsigned int: the kernel ignores the high half, and so do we.
  { syscalls: ['ioctl'], errno: 'EPERM', when: { arg: 1, oneOf: [TIOCSTI, TIOCLINUX] } },
];

// Classic BPF, from <linux/filter.h> and <linux/seccomp.h>.
export const BPF = {
  LD_W_ABS: 0x20,
  JEQ_K: 0x15,
  JGE_K: 0x35,
  JSET_K: 0x45,
  RET_K: 0x06,
} as const;
export const SECCOMP_RET = { KILL_PROCESS: 0x80000000, ERRNO: 0x00050000, ALLOW: 0x7fff0000 } as const;
/** Offsets in struct seccomp_data. */
export const SECCOMP_DATA = { nr: 0, arch: 4, args: 16 } as const;

interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

const stmt = (code: number, k: number): Insn => ({ code, jt: 0, jf: 0, k });
const jump = (code: number, k: number, jt: number, jf: number): Insn => {
  // Classic BPF jumps are 8 bits: a rule too long for that is a bug in the table above.
  if (jt > 255 || jf > 255) throw new NsboxError('UNSUPPORTED', `seccomp: jump too far (${jt}, ${jf})`);
  return { code, jt, jf, k: k >>> 0 };
};

function ruleApplies(rule: SeccompRule, kept: bigint): boolean {
  return !(rule.unless ?? []).some((c) => kept & capBit(c));
}

/**
 * One argument test, given how many instructions follow it in its block before the
 * syscall number is loaded again (`after`). When the test holds it falls through to the
 * next instruction (the next test, or the deny); when it does not, it jumps to the reload.
 */
function argTest(t: ArgTest, after: number): Insn[] {
  const load = stmt(BPF.LD_W_ABS, SECCOMP_DATA.args + 8 * t.arg); // little-endian: low half first
  if ('anyBit' in t) return [load, jump(BPF.JSET_K, t.anyBit, 0, after)];
  if ('oneOf' in t) {
    // jeq v_i → past the run of jeqs; the last one's miss goes to the reload.
    const n = t.oneOf.length;
    return [load, ...t.oneOf.map((v, i) => jump(BPF.JEQ_K, v, n - 1 - i, i === n - 1 ? after : 0))];
  }
  // jeq v_i → the reload; no match falls through.
  const n = t.noneOf.length;
  return [load, ...t.noneOf.map((v, i) => jump(BPF.JEQ_K, v, n - 1 - i + after, 0))];
}

/** One rule, as a block that ends with A = the syscall number again, for the next block. */
function ruleBlock(rule: SeccompRule, numbers: number[]): Insn[] {
  const deny = stmt(BPF.RET_K, SECCOMP_RET.ERRNO | ERRNO[rule.errno]);
  if (!rule.when) {
    // jeq nr_i → the ret at the end of the run of jeqs; the last one's miss jumps over it.
    return [...numbers.map((nr, i) => jump(BPF.JEQ_K, nr, numbers.length - 1 - i, i === numbers.length - 1 ? 1 : 0)), deny];
  }
  const tests = Array.isArray(rule.when) ? rule.when : [rule.when as ArgTest];
  // Built from the last test back, each knowing how far the reload is: [tests..., deny, reload].
  let body: Insn[] = [deny];
  for (const t of [...tests].reverse()) body = [...argTest(t, body.length), ...body];
  const blocks: Insn[] = [];
  for (const nr of numbers) blocks.push(jump(BPF.JEQ_K, nr, 0, body.length), ...body, stmt(BPF.LD_W_ABS, SECCOMP_DATA.nr));
  return blocks;
}

/**
 * The filter for one architecture, given the capabilities the container keeps in its
 * bounding set. A syscall from any other ABI (i386 via int 0x80 on x86_64, x32, arm32 on
 * aarch64) kills the process: its numbers would mean different calls. `highestReviewed` is
 * for tests, which lower it to see a call the running kernel has refused as unreviewed.
 */
export function seccompFilter(arch: SeccompArch, kept: bigint, highestReviewed = HIGHEST_REVIEWED_SYSCALL[arch]): Uint8Array {
  const kill = stmt(BPF.RET_K, SECCOMP_RET.KILL_PROCESS);
  const prog: Insn[] = [stmt(BPF.LD_W_ABS, SECCOMP_DATA.arch), jump(BPF.JEQ_K, AUDIT_ARCH[arch], 1, 0), kill, stmt(BPF.LD_W_ABS, SECCOMP_DATA.nr)];
  if (arch === 'x86_64') {
    // x32 calls come with x86_64's arch but their own numbers (bit 30 set). -1 is let
    // through: it is no call at all (the kernel says ENOSYS), and tracers use it.
    prog.push(jump(BPF.JGE_K, X32_SYSCALL_BIT, 0, 2), jump(BPF.JEQ_K, 0xffffffff, 1, 0), kill);
  }
  // Above the last reviewed number: ENOSYS, except -1 (compared unsigned, it is above).
  prog.push(jump(BPF.JGE_K, highestReviewed + 1, 0, 2), jump(BPF.JEQ_K, 0xffffffff, 1, 0), stmt(BPF.RET_K, SECCOMP_RET.ERRNO | ERRNO.ENOSYS));
  for (const rule of SECCOMP_RULES) {
    if (!ruleApplies(rule, kept)) continue;
    const numbers = rule.syscalls.map((s) => SYSCALLS[s]?.[arch]).filter((n): n is number => n !== undefined);
    if (numbers.length) prog.push(...ruleBlock(rule, numbers));
  }
  prog.push(stmt(BPF.RET_K, SECCOMP_RET.ALLOW));

  const bytes = new Uint8Array(prog.length * 8);
  const view = new DataView(bytes.buffer);
  prog.forEach((ins, i) => {
    view.setUint16(i * 8, ins.code, true);
    view.setUint8(i * 8 + 2, ins.jt);
    view.setUint8(i * 8 + 3, ins.jf);
    view.setUint32(i * 8 + 4, ins.k, true);
  });
  return bytes;
}
