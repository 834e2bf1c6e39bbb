// The seccomp filter (src/seccomp.ts) run by a classic BPF interpreter on made-up
// seccomp_data: every rule, both architectures, any set of kept capabilities, without a
// kernel or root. test/security.test.ts checks that the kernel loads it and that it acts.
import { existsSync, readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { CAPABILITIES } from '../../src/capabilities';
import {
  AF_NETLINK,
  AF_VSOCK,
  AUDIT_ARCH,
  BPF,
  CLONE_NEWNET,
  CLONE_NEWNS,
  CLONE_NEWUSER,
  HIGHEST_REVIEWED_SYSCALL,
  NETLINK_KOBJECT_UEVENT,
  SECCOMP_DATA,
  SECCOMP_RET,
  SECCOMP_RULES,
  SYSCALLS,
  TIOCLINUX,
  TIOCSTI,
  X32_SYSCALL_BIT,
  seccompFilter,
  type SeccompArch,
} from '../../src/seccomp';
import { DEFAULT_CAPABILITIES } from '../../src/security';

const bit = (name: string) => 1n << BigInt(CAPABILITIES[name]!);
const DEFAULT_MASK = DEFAULT_CAPABILITIES.reduce((m, c) => m | bit(c), 0n);
const ALL = (1n << 64n) - 1n;
const ARCHES: SeccompArch[] = ['x86_64', 'aarch64'];

interface SeccompData {
  nr: number;
  arch: number;
  args?: bigint[];
}

/** Runs the instructions seccompFilter emits, as the kernel would; returns the action. */
function runFilter(prog: Uint8Array, d: SeccompData): number {
  const data = new DataView(new ArrayBuffer(64));
  data.setInt32(SECCOMP_DATA.nr, d.nr, true);
  data.setUint32(SECCOMP_DATA.arch, d.arch, true);
  (d.args ?? []).forEach((a, i) => data.setBigUint64(SECCOMP_DATA.args + 8 * i, BigInt.asUintN(64, a), true));
  const view = new DataView(prog.buffer, prog.byteOffset, prog.byteLength);
  let A = 0;
  for (let pc = 0; pc < prog.length / 8;) {
    const code = view.getUint16(pc * 8, true);
    const jt = view.getUint8(pc * 8 + 2);
    const jf = view.getUint8(pc * 8 + 3);
    const k = view.getUint32(pc * 8 + 4, true);
    pc++;
    switch (code) {
      case BPF.LD_W_ABS:
        if (k % 4 || k + 4 > 64) throw new Error(`bad load offset ${k}`);
        A = data.getUint32(k, true);
        break;
      case BPF.JEQ_K:
        pc += A === k ? jt : jf;
        break;
      case BPF.JGE_K:
        pc += A >= k ? jt : jf;
        break;
      case BPF.JSET_K:
        pc += (A & k) !== 0 ? jt : jf;
        break;
      case BPF.RET_K:
        return k;
      default:
        throw new Error(`unexpected opcode ${code.toString(16)}`);
    }
  }
  throw new Error('fell off the end of the program');
}

const ALLOW = SECCOMP_RET.ALLOW;
const EPERM = SECCOMP_RET.ERRNO | 1;
const ENOSYS = SECCOMP_RET.ERRNO | 38;
const EAFNOSUPPORT = SECCOMP_RET.ERRNO | 97;
const ERRNO_RET = { EPERM, ENOSYS, EAFNOSUPPORT } as const;

/** A filter for `arch` keeping `kept`, called as `call('socket', arg0, arg1, ...)`. */
function caller(arch: SeccompArch, kept: bigint) {
  const prog = seccompFilter(arch, kept);
  return (name: string, ...args: bigint[]) => {
    const nr = SYSCALLS[name]?.[arch];
    if (nr === undefined) throw new Error(`${name}: no number on ${arch}`);
    return runFilter(prog, { nr, arch: AUDIT_ARCH[arch], args });
  };
}

describe('seccomp filter (interpreted)', () => {
  for (const arch of ARCHES) {
    const prog = seccompFilter(arch, DEFAULT_MASK);
    const call = caller(arch, DEFAULT_MASK);
    const raw = (nr: number) => runFilter(prog, { nr, arch: AUDIT_ARCH[arch] });

    it(`${arch}: is well formed (whole instructions, jumps in range, ends in RET, ≤ BPF_MAXINSNS) for any kept caps`, () => {
      for (const kept of [0n, DEFAULT_MASK, DEFAULT_MASK | bit('SYS_ADMIN'), ALL]) {
        const p = seccompFilter(arch, kept);
        expect(p.length % 8).toBe(0);
        const n = p.length / 8;
        expect(n).toBeLessThanOrEqual(4096);
        const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
        for (let i = 0; i < n; i++) {
          const code = view.getUint16(i * 8, true);
          if ((code & 0x07) === 0x05) {
            expect(i + 1 + view.getUint8(i * 8 + 2)).toBeLessThan(n);
            expect(i + 1 + view.getUint8(i * 8 + 3)).toBeLessThan(n);
          }
        }
        expect(view.getUint16((n - 1) * 8, true)).toBe(BPF.RET_K);
      }
    });

    it(`${arch}: kills a foreign architecture`, () => {
      for (const other of [0x40000003 /* i386 */, 0x40000028 /* arm */, AUDIT_ARCH[arch === 'x86_64' ? 'aarch64' : 'x86_64']]) {
        expect(runFilter(prog, { nr: 0, arch: other })).toBe(SECCOMP_RET.KILL_PROCESS);
      }
    });

    it(`${arch}: denies every syscall of an unconditional rule (all of them without caps), and lets ordinary calls through`, () => {
      const none = caller(arch, 0n);
      for (const rule of SECCOMP_RULES.filter((r) => !r.when)) {
        const lifted = (rule.unless ?? []).some((c) => DEFAULT_MASK & bit(c));
        for (const name of rule.syscalls) {
          if (SYSCALLS[name]![arch] === undefined) continue;
          expect([name, none(name)]).toEqual([name, ERRNO_RET[rule.errno]]);
          expect([name, call(name)]).toEqual([name, lifted ? ALLOW : ERRNO_RET[rule.errno]]);
        }
      }
      const ordinary =
        arch === 'x86_64'
          ? { read: 0, write: 1, openat: 257, execve: 59, exit_group: 231, getpid: 39, sethostname: 170, capset: 126, pidfd_open: 434, fanotify_mark: 301 }
          : { read: 63, write: 64, openat: 56, execve: 221, exit_group: 94, getpid: 172, sethostname: 161, capset: 91, pidfd_open: 434, fanotify_mark: 263 };
      for (const [name, n] of Object.entries(ordinary)) expect([name, raw(n)]).toEqual([name, ALLOW]);
      expect(raw(-1)).toBe(ALLOW);
    });

    it(`${arch}: answers ENOSYS above the highest reviewed syscall number, and only there`, () => {
      const highest = HIGHEST_REVIEWED_SYSCALL[arch];
      expect(raw(highest)).toBe(ALLOW);
      expect(raw(highest + 1)).toBe(ENOSYS);
      expect(raw(highest + 100)).toBe(ENOSYS);
      // Below the x32 bit on x86_64 (above it is x32's, killed); all the way up on aarch64.
      expect(raw(X32_SYSCALL_BIT - 1)).toBe(ENOSYS);
      if (arch === 'aarch64') expect(raw(X32_SYSCALL_BIT | 39)).toBe(ENOSYS);
      if (arch === 'aarch64') expect(raw(-2)).toBe(ENOSYS);
      expect(raw(-1)).toBe(ALLOW);
      // Every number a rule names was reviewed: a rule beyond it would never be reached.
      for (const [name, nums] of Object.entries(SYSCALLS)) {
        if (nums[arch] !== undefined) expect([name, nums[arch]! <= highest]).toEqual([name, true]);
      }
    });

    it(`${arch}: checks clone and unshare flags, ioctl requests and personality values`, () => {
      const SIGCHLD = 17n;
      const threadFlags = 0x3d0f00n; // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
      expect(call('clone', SIGCHLD)).toBe(ALLOW);
      expect(call('clone', threadFlags)).toBe(ALLOW);
      expect(call('clone', SIGCHLD | BigInt(CLONE_NEWUSER))).toBe(EPERM);
      expect(call('clone', BigInt(CLONE_NEWNET))).toBe(EPERM);
      expect(call('clone3', 0n)).toBe(ENOSYS);
      expect(call('unshare', 0x400n /* CLONE_FILES */)).toBe(ALLOW);
      expect(call('unshare', BigInt(CLONE_NEWNS))).toBe(EPERM);
      expect(call('unshare', 0x80n /* CLONE_NEWTIME */)).toBe(EPERM);
      expect(call('ioctl', 0n, BigInt(TIOCSTI))).toBe(EPERM);
      expect(call('ioctl', 0n, BigInt(TIOCLINUX))).toBe(EPERM);
      // The kernel reads the request as an unsigned int: high bits must not get past.
      expect(call('ioctl', 0n, (1n << 32n) | BigInt(TIOCSTI))).toBe(EPERM);
      expect(call('ioctl', 0n, 0x5401n /* TCGETS */)).toBe(ALLOW);
      for (const p of [0n, 8n, 0x20000n, 0x20008n, 0xffffffffn]) expect(call('personality', p)).toBe(ALLOW);
      expect(call('personality', 0x0040000n /* ADDR_NO_RANDOMIZE */)).toBe(EPERM);
      expect(call('personality', 0x0400000n /* READ_IMPLIES_EXEC */)).toBe(EPERM);
    });

    it(`${arch}: socket: vsock refused whatever the caps; uevent netlink refused unless SYS_ADMIN; the rest allowed`, () => {
      const SOCK_STREAM = 1n;
      const SOCK_DGRAM = 2n;
      const SOCK_RAW = 3n;
      const CLOEXEC = 0x80000n;
      const [vsock, netlink, uevent] = [BigInt(AF_VSOCK), BigInt(AF_NETLINK), BigInt(NETLINK_KOBJECT_UEVENT)];
      for (const kept of [0n, DEFAULT_MASK, DEFAULT_MASK | bit('SYS_ADMIN') | bit('NET_ADMIN'), ALL]) {
        const c = caller(arch, kept);
        expect(c('socket', vsock, SOCK_STREAM, 0n)).toBe(EAFNOSUPPORT);
        expect(c('socket', vsock, SOCK_DGRAM | CLOEXEC, 0n)).toBe(EAFNOSUPPORT);
        // The family is an int: the high half of the register is not looked at, by the kernel or us.
        expect(c('socket', (1n << 32n) | vsock, SOCK_STREAM, 0n)).toBe(EAFNOSUPPORT);
        const admin = (kept & bit('SYS_ADMIN')) !== 0n;
        expect(c('socket', netlink, SOCK_DGRAM, uevent)).toBe(admin ? ALLOW : EPERM);
        expect(c('socket', netlink, SOCK_RAW | CLOEXEC, uevent)).toBe(admin ? ALLOW : EPERM);
        expect(c('socket', (0xffffn << 32n) | netlink, SOCK_DGRAM, (1n << 40n) | uevent)).toBe(admin ? ALLOW : EPERM);
        // Both arguments must match: neither alone is refused.
        expect(c('socket', netlink, SOCK_RAW, 0n /* NETLINK_ROUTE */)).toBe(ALLOW);
        expect(c('socket', netlink, SOCK_RAW, 4n /* NETLINK_SOCK_DIAG */)).toBe(ALLOW);
        expect(c('socket', 2n /* AF_INET */, SOCK_RAW, uevent)).toBe(ALLOW);
        expect(c('socket', 1n /* AF_UNIX */, SOCK_DGRAM, uevent)).toBe(ALLOW);
        expect(c('socket', 2n, SOCK_STREAM, 0n)).toBe(ALLOW);
        expect(c('socket', 10n /* AF_INET6 */, SOCK_DGRAM, 17n)).toBe(ALLOW);
        expect(c('socket', 41n /* AF_VSOCK + 1 */, SOCK_STREAM, 0n)).toBe(ALLOW);
      }
    });

    it(`${arch}: a kept capability lifts exactly its rules`, () => {
      const withAdmin = caller(arch, DEFAULT_MASK | bit('SYS_ADMIN'));
      expect(withAdmin('mount')).toBe(ALLOW);
      expect(withAdmin('unshare', BigInt(CLONE_NEWNS))).toBe(ALLOW);
      expect(withAdmin('clone3')).toBe(ALLOW);
      expect(withAdmin('fanotify_init')).toBe(ALLOW);
      expect(withAdmin('syslog')).toBe(EPERM);
      expect(withAdmin('ptrace')).toBe(EPERM);
      expect(withAdmin('keyctl')).toBe(EPERM);
      expect(withAdmin('mbind')).toBe(EPERM);
      expect(withAdmin('ioctl', 0n, BigInt(TIOCSTI))).toBe(EPERM);
      const withPtrace = caller(arch, DEFAULT_MASK | bit('SYS_PTRACE'));
      for (const name of ['ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'pidfd_getfd', 'process_madvise']) {
        expect([name, withPtrace(name)]).toEqual([name, ALLOW]);
        expect([name, call(name)]).toEqual([name, EPERM]);
      }
      expect(withPtrace('mount')).toBe(EPERM);
      expect(withPtrace('fanotify_init')).toBe(EPERM);
      const withNice = caller(arch, DEFAULT_MASK | bit('SYS_NICE'));
      for (const name of ['mbind', 'get_mempolicy', 'set_mempolicy', 'set_mempolicy_home_node', 'move_pages', 'migrate_pages']) {
        expect([name, withNice(name)]).toEqual([name, ALLOW]);
        expect([name, call(name)]).toEqual([name, EPERM]);
      }
      expect(withNice('ptrace')).toBe(EPERM);
      expect(caller(arch, DEFAULT_MASK | bit('SYSLOG'))('syslog')).toBe(ALLOW);
      expect(call('syslog')).toBe(EPERM);
      expect(call('fanotify_init')).toBe(EPERM);
      expect(caller(arch, DEFAULT_MASK | bit('SYS_TTY_CONFIG'))('vhangup')).toBe(ALLOW);
      expect(call('vhangup')).toBe(EPERM);
      // SYS_CHROOT is a default capability: chroot is refused only once it is dropped.
      expect(call('chroot')).toBe(ALLOW);
      expect(caller(arch, DEFAULT_MASK & ~bit('SYS_CHROOT'))('chroot')).toBe(EPERM);
    });
  }

  it('x86_64: kills x32 calls but lets -1 through; ustat refused', () => {
    const prog = seccompFilter('x86_64', DEFAULT_MASK);
    expect(runFilter(prog, { nr: X32_SYSCALL_BIT | 39, arch: AUDIT_ARCH.x86_64 })).toBe(SECCOMP_RET.KILL_PROCESS);
    expect(runFilter(prog, { nr: X32_SYSCALL_BIT | 165, arch: AUDIT_ARCH.x86_64 })).toBe(SECCOMP_RET.KILL_PROCESS);
    expect(runFilter(prog, { nr: -1, arch: AUDIT_ARCH.x86_64 })).toBe(ALLOW);
    // x32's own numbers without the bit (512 and up) are no x86_64 call: ENOSYS.
    expect(runFilter(prog, { nr: 512, arch: AUDIT_ARCH.x86_64 })).toBe(ENOSYS);
    expect(caller('x86_64', ALL)('ustat')).toBe(EPERM);
  });

  it('uses the syscall numbers of the kernel headers', (ctx) => {
    const headers: Array<[SeccompArch, string]> = [
      ['x86_64', '/usr/include/x86_64-linux-gnu/asm/unistd_64.h'],
      ['aarch64', '/usr/include/asm-generic/unistd.h'],
    ];
    let checked = 0;
    for (const [arch, file] of headers) {
      if (!existsSync(file)) continue;
      const defined = new Map<string, number>();
      for (const m of readFileSync(file, 'utf8').matchAll(/#define __NR_(\w+)\s+(\d+)/g)) defined.set(m[1]!, Number(m[2]));
      for (const [name, nums] of Object.entries(SYSCALLS)) {
        if (nums[arch] === undefined || !defined.has(name)) continue;
        expect([arch, name, nums[arch]]).toEqual([arch, name, defined.get(name)]);
        checked++;
      }
    }
    if (checked === 0) ctx.skip();
  });
});
