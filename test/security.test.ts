// Hardening (issue 5): capabilities, no_new_privs, seccomp, masked and read-only paths,
// crafted images, --user. Containers run on the busybox fixture against the real kernel;
// calls a shell cannot make go through test/probe/probe.c, bind-mounted at /probe.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Container, type ProcessOptions } from '../src/container';
import { NsboxError } from '../src/errors';
import {
  AUDIT_ARCH, BPF, CAPABILITIES, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER, DEFAULT_CAPABILITIES,
  MASKED_PATHS, READONLY_PATHS, SECCOMP_DATA, SECCOMP_RET, SECCOMP_RULES, SYSCALLS, TIOCLINUX, TIOCSTI,
  X32_SYSCALL_BIT, buildConfinement, hostArch, seccompFilter, type SeccompArch, type SecurityOptions,
} from '../src/security';
import { ROOTFS, collect, hostMounts, openFds } from './helpers';

// ---------------------------------------------------------------------------------------
// Helpers

const bit = (name: string) => 1n << BigInt(CAPABILITIES[name]!);
const DEFAULT_MASK = DEFAULT_CAPABILITIES.reduce((m, c) => m | bit(c), 0n);
const pair = (m: bigint): [number, number] => [Number(m & 0xffffffffn), Number(m >> 32n)];

/** The "Name:\tvalue" fields of a /proc/<pid>/status text. */
function statusFields(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s*(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim();
  }
  return out;
}
const hex = (s: string | undefined) => BigInt(`0x${s ?? 'x'}`);

/** The test process's own bounding set: what "everything" means on this host. */
const HOST = statusFields(readFileSync('/proc/self/status', 'utf8'));
const HOST_BND = hex(HOST.CapBnd);

let work = '';
let probeDir: string;
const probeMount = () => ({ source: probeDir, target: '/probe', readonly: true });

interface Run { out: string; err: string; exitCode: number | null; signal: string | null }

async function run(opts: SecurityOptions, command: string[], extra: Partial<ProcessOptions> = {}): Promise<Run> {
  const c = Container.start({
    root: { type: 'bind', path: ROOTFS },
    command,
    stdio: ['ignore', 'pipe', 'pipe'],
    mounts: [probeMount()],
    ...extra,
    security: opts,
  });
  const [out, err, status] = await Promise.all([collect(c.stdout), collect(c.stderr), c.wait()]);
  return { out, err, exitCode: status.exitCode, signal: status.signal };
}

const sh = (opts: SecurityOptions, script: string, extra: Partial<ProcessOptions> = {}) => run(opts, ['sh', '-c', script], extra);

/** `probe a b c` → { a: 'EPERM', b: 'OK', ... } */
async function probe(opts: SecurityOptions, calls: string[], extra: Partial<ProcessOptions> = {}): Promise<Record<string, string>> {
  const r = await run(opts, ['/probe/probe', ...calls], extra);
  expect(r.err).toBe('');
  expect(r.exitCode).toBe(0);
  return Object.fromEntries(r.out.trim().split('\n').map((l) => l.split(' ') as [string, string]));
}

async function caps(opts: SecurityOptions): Promise<Record<string, string>> {
  const r = await sh(opts, 'cat /proc/self/status');
  expect(r.exitCode).toBe(0);
  return statusFields(r.out);
}

/** A private copy of the fixture rootfs, to craft without racing other test files. */
function rootfsCopy(name: string): string {
  const dir = path.join(work, name);
  execFileSync('cp', ['-a', ROOTFS, dir]);
  return dir;
}

/**
 * The host's mount points a leak from these tests could show up at: the fixture, the copies
 * and volumes under `work`, and the places the crafted symlinks aim at. Other test files run
 * at the same time and mount elsewhere, so the whole table is not compared.
 */
function ourMounts(): string[] {
  return hostMounts().filter((m) => m === '/' || m === '/tmp' || m === ROOTFS || m.startsWith(`${ROOTFS}/`) ||
    (work !== '' && (m === work || m.startsWith(`${work}/`))));
}

const mountsBefore = ourMounts();
const fdsBefore = openFds();

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'nsbox-security-'));
  probeDir = path.join(work, 'probe');
  mkdirSync(probeDir);
  execFileSync('gcc', ['-static', '-O2', '-o', path.join(probeDir, 'probe'), path.join(__dirname, 'probe/probe.c')]);
});

afterAll(() => {
  // Nothing left behind by any test above, failures included.
  expect(ourMounts()).toEqual(mountsBefore);
  expect(openFds()).toEqual(fdsBefore);
  rmSync(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------
// A classic BPF interpreter for the instructions seccompFilter emits, so that the filter is
// tested on every rule without a kernel; the kernel tests below check that it loads and acts.

interface SeccompData { nr: number; arch: number; args?: bigint[] }

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
      case BPF.JEQ_K: pc += A === k ? jt : jf; break;
      case BPF.JGE_K: pc += A >= k ? jt : jf; break;
      case BPF.JSET_K: pc += (A & k) !== 0 ? jt : jf; break;
      case BPF.RET_K: return k;
      default: throw new Error(`unexpected opcode ${code.toString(16)}`);
    }
  }
  throw new Error('fell off the end of the program');
}

const EPERM = SECCOMP_RET.ERRNO | 1;
const ENOSYS = SECCOMP_RET.ERRNO | 38;

describe('seccomp filter (interpreted)', () => {
  for (const arch of ['x86_64', 'aarch64'] as SeccompArch[]) {
    const prog = seccompFilter(arch, DEFAULT_MASK);
    const nr = (name: string) => SYSCALLS[name]![arch]!;
    const call = (name: string, ...args: bigint[]) => runFilter(prog, { nr: nr(name), arch: AUDIT_ARCH[arch], args });

    it(`${arch}: is well formed (whole instructions, jumps in range, ends in RET, ≤ BPF_MAXINSNS)`, () => {
      expect(prog.length % 8).toBe(0);
      const n = prog.length / 8;
      expect(n).toBeLessThanOrEqual(4096);
      const view = new DataView(prog.buffer, prog.byteOffset, prog.byteLength);
      for (let i = 0; i < n; i++) {
        const code = view.getUint16(i * 8, true);
        if ((code & 0x07) === 0x05) {
          expect(i + 1 + view.getUint8(i * 8 + 2)).toBeLessThan(n);
          expect(i + 1 + view.getUint8(i * 8 + 3)).toBeLessThan(n);
        }
      }
      expect(view.getUint16((n - 1) * 8, true)).toBe(BPF.RET_K);
    });

    it(`${arch}: kills a foreign architecture`, () => {
      for (const other of [0x40000003 /* i386 */, 0x40000028 /* arm */, AUDIT_ARCH[arch === 'x86_64' ? 'aarch64' : 'x86_64']]) {
        expect(runFilter(prog, { nr: 0, arch: other })).toBe(SECCOMP_RET.KILL_PROCESS);
      }
    });

    it(`${arch}: denies every syscall of an unconditional rule, and lets ordinary calls through`, () => {
      for (const rule of SECCOMP_RULES.filter((r) => !r.when)) {
        for (const name of rule.syscalls) {
          if (SYSCALLS[name]![arch] === undefined) continue;
          expect([name, call(name)]).toEqual([name, rule.errno === 'ENOSYS' ? ENOSYS : EPERM]);
        }
      }
      const ordinary = arch === 'x86_64'
        ? { read: 0, write: 1, openat: 257, execve: 59, exit_group: 231, getpid: 39, sethostname: 170, capset: 126 }
        : { read: 63, write: 64, openat: 56, execve: 221, exit_group: 94, getpid: 172, sethostname: 161, capset: 91 };
      for (const [name, n] of Object.entries(ordinary)) {
        expect([name, runFilter(prog, { nr: n, arch: AUDIT_ARCH[arch] })]).toEqual([name, SECCOMP_RET.ALLOW]);
      }
      expect(runFilter(prog, { nr: -1, arch: AUDIT_ARCH[arch] })).toBe(SECCOMP_RET.ALLOW);
    });

    it(`${arch}: checks clone and unshare flags, ioctl requests and personality values`, () => {
      const SIGCHLD = 17n;
      const threadFlags = 0x3d0f00n; // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
      expect(call('clone', SIGCHLD)).toBe(SECCOMP_RET.ALLOW);
      expect(call('clone', threadFlags)).toBe(SECCOMP_RET.ALLOW);
      expect(call('clone', SIGCHLD | BigInt(CLONE_NEWUSER))).toBe(EPERM);
      expect(call('clone', BigInt(CLONE_NEWNET))).toBe(EPERM);
      expect(call('clone3', 0n)).toBe(ENOSYS);
      expect(call('unshare', 0x400n /* CLONE_FILES */)).toBe(SECCOMP_RET.ALLOW);
      expect(call('unshare', BigInt(CLONE_NEWNS))).toBe(EPERM);
      expect(call('unshare', 0x80n /* CLONE_NEWTIME */)).toBe(EPERM);
      expect(call('ioctl', 0n, BigInt(TIOCSTI))).toBe(EPERM);
      expect(call('ioctl', 0n, BigInt(TIOCLINUX))).toBe(EPERM);
      // The kernel reads the request as an unsigned int: high bits must not get past.
      expect(call('ioctl', 0n, (1n << 32n) | BigInt(TIOCSTI))).toBe(EPERM);
      expect(call('ioctl', 0n, 0x5401n /* TCGETS */)).toBe(SECCOMP_RET.ALLOW);
      for (const p of [0n, 8n, 0x20000n, 0x20008n, 0xffffffffn]) expect(call('personality', p)).toBe(SECCOMP_RET.ALLOW);
      expect(call('personality', 0x0040000n /* ADDR_NO_RANDOMIZE */)).toBe(EPERM);
      expect(call('personality', 0x0400000n /* READ_IMPLIES_EXEC */)).toBe(EPERM);
    });

    it(`${arch}: a kept capability lifts exactly its rules`, () => {
      const withAdmin = seccompFilter(arch, DEFAULT_MASK | bit('SYS_ADMIN'));
      const f = (p: Uint8Array, name: string, ...args: bigint[]) => runFilter(p, { nr: nr(name), arch: AUDIT_ARCH[arch], args });
      expect(f(withAdmin, 'mount')).toBe(SECCOMP_RET.ALLOW);
      expect(f(withAdmin, 'unshare', BigInt(CLONE_NEWNS))).toBe(SECCOMP_RET.ALLOW);
      expect(f(withAdmin, 'clone3')).toBe(SECCOMP_RET.ALLOW);
      expect(f(withAdmin, 'ptrace')).toBe(EPERM);
      expect(f(withAdmin, 'keyctl')).toBe(EPERM);
      expect(f(withAdmin, 'ioctl', 0n, BigInt(TIOCSTI))).toBe(EPERM);
      const withPtrace = seccompFilter(arch, DEFAULT_MASK | bit('SYS_PTRACE'));
      expect(f(withPtrace, 'ptrace')).toBe(SECCOMP_RET.ALLOW);
      expect(f(withPtrace, 'process_vm_readv')).toBe(SECCOMP_RET.ALLOW);
      expect(f(withPtrace, 'mount')).toBe(EPERM);
    });
  }

  it('x86_64: kills x32 calls but lets -1 through', () => {
    const prog = seccompFilter('x86_64', DEFAULT_MASK);
    expect(runFilter(prog, { nr: X32_SYSCALL_BIT | 39, arch: AUDIT_ARCH.x86_64 })).toBe(SECCOMP_RET.KILL_PROCESS);
    expect(runFilter(prog, { nr: X32_SYSCALL_BIT | 165, arch: AUDIT_ARCH.x86_64 })).toBe(SECCOMP_RET.KILL_PROCESS);
    expect(runFilter(prog, { nr: -1, arch: AUDIT_ARCH.x86_64 })).toBe(SECCOMP_RET.ALLOW);
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

// ---------------------------------------------------------------------------------------

describe('buildConfinement', () => {
  it('defaults: docker caps, no_new_privs, root without groups, a filter, masks and read-only paths', () => {
    const { security, confine } = buildConfinement();
    expect(security.bounding).toEqual(pair(DEFAULT_MASK));
    expect(security.effective).toEqual(pair(DEFAULT_MASK));
    expect(security.ambient).toBeUndefined();
    expect(security.noNewPrivs).toBe(true);
    expect([security.uid, security.gid]).toEqual([0, 0]);
    expect(security.seccomp).toEqual(seccompFilter(hostArch()!, DEFAULT_MASK));
    expect(confine.filter((s) => s.op === 'maskInRoot').map((s) => s.target)).toEqual(MASKED_PATHS.map((p) => p.slice(1)));
    expect(confine.filter((s) => s.op === 'readonlyInRoot').map((s) => s.target)).toEqual(READONLY_PATHS.map((p) => p.slice(1)));
    for (const p of ['proc/kcore', 'proc/keys', 'proc/timer_list', 'proc/sched_debug', 'proc/latency_stats', 'proc/acpi', 'proc/scsi', 'sys/firmware']) {
      expect(confine.some((s) => s.op === 'maskInRoot' && s.target === p)).toBe(true);
    }
    for (const p of ['proc/sys', 'proc/sysrq-trigger', 'proc/irq', 'proc/bus', 'proc/fs']) {
      expect(confine.some((s) => s.op === 'readonlyInRoot' && s.target === p)).toBe(true);
    }
  });

  it('accepts cap names with or without CAP_, in any case, and ALL', () => {
    const a = buildConfinement({ capAdd: ['net_admin', 'CAP_SYS_PTRACE', 'Cap_Bpf'] }).security;
    expect(a.bounding).toEqual(pair(DEFAULT_MASK | bit('NET_ADMIN') | bit('SYS_PTRACE') | bit('BPF')));
    expect(buildConfinement({ capDrop: ['ALL'] }).security.bounding).toEqual([0, 0]);
    expect(buildConfinement({ capDrop: ['all'], capAdd: ['chown'] }).security.bounding).toEqual(pair(bit('CHOWN')));
    expect(buildConfinement({ capAdd: ['ALL'], capDrop: ['MKNOD'] }).security.bounding).toEqual(pair(((1n << 64n) - 1n) & ~bit('MKNOD')));
    expect(buildConfinement({ capDrop: ['NET_RAW', 'cap_mknod'] }).security.bounding).toEqual(pair(DEFAULT_MASK & ~bit('NET_RAW') & ~bit('MKNOD')));
  });

  it('refuses unknown names, conflicts, bad users and unknown options with INVALID_ARGUMENT', () => {
    const bad: SecurityOptions[] = [
      { capAdd: ['NET_ADMINN'] }, { capDrop: ['CAP_'] }, { capAdd: [42 as unknown as string] },
      { capAdd: 'NET_ADMIN' as unknown as string[] }, { capAdd: ['CHOWN'], capDrop: ['cap_chown'] },
      { user: 'nobody' }, { user: '-1' }, { user: '1000:' }, { user: '4294967295' }, { user: '1:2:3' },
      { seccomp: 'strict' as 'default' }, { capadd: ['x'] } as SecurityOptions,
    ];
    for (const o of bad) {
      let err: unknown;
      try {
        buildConfinement(o);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(o)).toBeInstanceOf(NsboxError);
      expect((err as NsboxError).code).toBe('INVALID_ARGUMENT');
    }
  });

  it('user: UID[:GID], the group defaulting to the uid; a non-root user keeps only added caps', () => {
    expect(buildConfinement({ user: '1000:100' }).security).toMatchObject({ uid: 1000, gid: 100, effective: [0, 0] });
    expect(buildConfinement({ user: '1000' }).security).toMatchObject({ uid: 1000, gid: 1000 });
    const s = buildConfinement({ user: '1000', capAdd: ['NET_BIND_SERVICE'] }).security;
    expect(s.effective).toEqual(pair(bit('NET_BIND_SERVICE')));
    expect(s.ambient).toEqual(pair(bit('NET_BIND_SERVICE')));
    expect(buildConfinement({ user: '1000', capAdd: ['ALL'] }).security.ambient).toBeUndefined();
    expect(buildConfinement({ user: '0:0', capAdd: ['NET_ADMIN'] }).security.ambient).toBeUndefined();
  });

  it('privileged: every cap, no filter, nothing masked; unconfined: no filter only', () => {
    const p = buildConfinement({ privileged: true });
    expect(p.security.bounding).toEqual([0xffffffff, 0xffffffff]);
    expect(p.security.seccomp).toBeUndefined();
    expect(p.confine).toEqual([]);
    const u = buildConfinement({ seccomp: 'unconfined' });
    expect(u.security.seccomp).toBeUndefined();
    expect(u.security.bounding).toEqual(pair(DEFAULT_MASK));
    expect(u.confine.length).toBeGreaterThan(0);
    expect(buildConfinement({ noNewPrivileges: false }).security.noNewPrivs).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------
// Inside real containers.

describe('a default container', () => {
  it('has the default caps, nothing inheritable or ambient, no_new_privs and a filter', async () => {
    const s = await caps({});
    const expected = DEFAULT_MASK & HOST_BND;
    expect(hex(s.CapBnd)).toBe(expected);
    expect(hex(s.CapEff)).toBe(expected);
    expect(hex(s.CapPrm)).toBe(expected);
    expect(hex(s.CapInh)).toBe(0n);
    expect(hex(s.CapAmb)).toBe(0n);
    expect(s.NoNewPrivs).toBe('1');
    expect(s.Seccomp).toBe('2');
    expect(s.Groups).toBe('');
  });

  it('is refused mount, umount, keyctl, new user namespaces, kexec and other kernel-wide calls', async () => {
    const r = await probe({}, [
      'mount', 'umount', 'fsopen', 'open_tree', 'pivot_root', 'keyctl', 'add_key', 'unshare-user', 'unshare-ns',
      'clone-newuser', 'clone-newpid', 'setns', 'kexec_load', 'finit_module', 'delete_module', 'bpf',
      'perf_event_open', 'userfaultfd', 'ptrace', 'process_vm_readv', 'personality-norandom', 'reboot',
      'clock_settime', 'acct', 'iopl', 'open_by_handle_at', 'io_uring_setup',
    ]);
    for (const [call, result] of Object.entries(r)) expect([call, result]).toEqual([call, 'EPERM']);
  });

  it('can still fork, clone without namespaces, unshare harmless flags; clone3 says ENOSYS', async () => {
    expect(await probe({}, ['fork', 'clone', 'unshare-files', 'personality-query', 'clone3', 'nosys'])).toEqual({
      'fork': 'OK', 'clone': 'OK', 'unshare-files': 'OK', 'personality-query': 'OK', 'clone3': 'ENOSYS', 'nosys': 'ENOSYS',
    });
  });

  it('cannot push input into its terminal (TIOCSTI, TIOCLINUX), but can use it', async () => {
    const c = Container.start({
      root: { type: 'bind', path: ROOTFS }, command: ['/probe/probe', 'tiocsti', 'tiocsti-high', 'tioclinux', 'tiocgwinsz'],
      tty: true, mounts: [probeMount()], security: {},
    });
    // The master reads EIO once the container is gone: that is the end of the output.
    const chunks: Buffer[] = [];
    c.terminal!.on('data', (d: Buffer) => chunks.push(d));
    const status = await c.wait();
    const out = Buffer.concat(chunks).toString();
    expect(status.exitCode).toBe(0);
    expect(out.replace(/\r/g, '').trim().split('\n')).toEqual(['tiocsti EPERM', 'tiocsti-high EPERM', 'tioclinux EPERM', 'tiocgwinsz OK']);
  });

  it('is killed for an x32 call', async () => {
    expect((await run({}, ['/probe/probe', 'x32-getpid'])).signal).toBe('SIGSYS');
  });

  it('is killed for an i386 call (int 0x80)', async (ctx) => {
    if (process.arch !== 'x64') ctx.skip();
    // int 0x80 needs IA32 emulation in the kernel; without it the call faults before seccomp.
    const bare = await run({ seccomp: 'unconfined' }, ['/probe/probe', 'i386-getpid']);
    if (bare.signal === 'SIGSEGV') ctx.skip();
    expect(bare.out).toBe('i386-getpid OK\n');
    expect((await run({}, ['/probe/probe', 'i386-getpid'])).signal).toBe('SIGSYS');
  });

  it('sees /proc and /sys masked and read-only', async () => {
    const r = await sh({}, [
      // 0 bytes (the real /dev/null over it) or an error: never the host's memory.
      'for f in /proc/kcore /proc/keys /proc/timer_list /proc/interrupts /proc/sched_debug /proc/latency_stats; do',
      '  if [ -e $f ]; then printf "%s %s %s\\n" $f $(stat -c %t:%T $f) $(cat $f 2>/dev/null | wc -c); else echo $f absent; fi',
      'done',
      'echo firmware $(ls -A /sys/firmware | wc -l)',
      'echo acpi $(ls -A /proc/acpi 2>/dev/null | wc -l)',
      'echo nsbox > /proc/sys/kernel/hostname 2>/dev/null; echo hostname $?',
      'if [ -e /proc/sysrq-trigger ]; then echo h > /proc/sysrq-trigger 2>/dev/null; echo sysrq $?; else echo sysrq absent; fi',
      'grep -E " /proc/(sys|sysrq-trigger|irq|bus|fs) " /proc/self/mountinfo | grep -c " ro,"',
    ].join('\n'));
    const lines = r.out.trim().split('\n');
    for (const f of ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/proc/interrupts', '/proc/sched_debug', '/proc/latency_stats']) {
      const line = lines.find((l) => l.startsWith(`${f} `))!;
      // Present on the host: masked by the 1:3 device, reads nothing. Absent: absent here too.
      expect(line).toBe(existsSync(f) ? `${f} 1:3 0` : `${f} absent`);
    }
    expect(lines).toContain('firmware 0');
    expect(lines).toContain('acpi 0');
    expect(lines).toContain('hostname 1');
    expect(lines).toContain(existsSync('/proc/sysrq-trigger') ? 'sysrq 1' : 'sysrq absent');
    expect(Number(lines.at(-1))).toBe(READONLY_PATHS.filter((p) => existsSync(p)).length);
    if (existsSync('/sys/firmware')) expect(readdirSync('/sys/firmware').length).toBeGreaterThan(0);
  });

  it('reports a write to a read-only /proc file as EROFS', async () => {
    const r = await run({}, ['sh', '-c', 'echo 1 > /proc/sys/vm/drop_caches']);
    expect(r.exitCode).not.toBe(0);
    expect(r.err).toMatch(/Read-only file system/);
  });
});

describe('--user', () => {
  it('1000:1000: id says so, no groups, no caps, root-owned paths are not writable', async () => {
    const r = await sh({ user: '1000:1000' }, 'id; grep -E "^(Groups|CapEff|CapPrm|CapAmb|CapInh|NoNewPrivs)" /proc/self/status; touch /etc/nsbox-x 2>&1; echo touch $?; echo x > /bin/busybox; echo write $?');
    expect(r.out).toMatch(/^uid=1000 gid=1000\n/);
    const s = statusFields(r.out);
    expect(s.Groups).toBe('');
    expect([s.CapEff, s.CapPrm, s.CapAmb, s.CapInh].map(hex)).toEqual([0n, 0n, 0n, 0n]);
    expect(s.NoNewPrivs).toBe('1');
    expect(r.out).toMatch(/Permission denied/);
    expect(r.out).toContain('touch 1');
    expect(r.out).toContain('write 1');
    expect(existsSync(path.join(ROOTFS, 'etc/nsbox-x'))).toBe(false);
  });

  it('keeps an added capability through execve (ambient) and nothing else', async () => {
    const r = await sh({ user: '1000', capAdd: ['NET_BIND_SERVICE'] }, 'grep -E "^Cap" /proc/self/status; nc -l -p 80 & sleep 0.3; netstat -ltn | grep -c ":80 "; kill $!');
    const s = statusFields(r.out);
    expect(hex(s.CapEff)).toBe(bit('NET_BIND_SERVICE'));
    expect(hex(s.CapAmb)).toBe(bit('NET_BIND_SERVICE'));
    expect(hex(s.CapBnd)).toBe((DEFAULT_MASK | bit('NET_BIND_SERVICE')) & HOST_BND);
    expect(r.out.trim().split('\n').at(-1)).toBe('1');
  });
});

describe('failures and lifetime', () => {
  it('a failure in the security phase is an NsboxError naming the call, and leaks nothing', () => {
    const before = { mounts: ourMounts(), fds: openFds() };
    const { security, confine } = buildConfinement({});
    // One instruction the kernel's BPF checker refuses.
    security.seccomp = new Uint8Array(8).fill(0xff);
    let err: unknown;
    try {
      Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['true'], confinement: { security, confine } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NsboxError);
    expect((err as NsboxError).code).toBe('EINVAL');
    expect((err as NsboxError).syscall).toBe('seccomp');
    expect(ourMounts()).toEqual(before.mounts);
    expect(openFds()).toEqual(before.fds);
  });

  // setresuid clears the parent-death signal; the child arms it after apply_security.
  it('a container running as another user still dies with its supervisor', async (ctx) => {
    const dist = path.join(__dirname, '../dist');
    if (!existsSync(path.join(dist, 'security.js'))) ctx.skip();
    const script = `
      const { Container } = require(${JSON.stringify(path.join(dist, 'container.js'))});
      const c = Container.start({ root: { type: 'bind', path: ${JSON.stringify(ROOTFS)} }, command: ['sleep', '60'],
        stdio: 'ignore', security: { user: '1000:1000' } });
      process.stdout.write(String(c.pid) + '\\n');`;
    const supervisor = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const pid = Number((await new Promise<string>((resolve) => supervisor.stdout!.once('data', (d: Buffer) => resolve(d.toString())))).trim());
    expect(pid).toBeGreaterThan(0);
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/\nUid:\s+1000\s/);
    const exited = new Promise((resolve) => supervisor.once('exit', resolve));
    supervisor.kill('SIGKILL');
    await exited;
    // Gone, or a zombie waiting for whoever reaps orphans here.
    const deadline = Date.now() + 5000;
    let state = '';
    while (Date.now() < deadline) {
      try {
        state = /\nState:\s+(\S)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!;
      } catch {
        state = 'gone';
      }
      if (state === 'gone' || state === 'Z') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(['gone', 'Z']).toContain(state);
  });
});

describe('privileged, capAdd and capDrop', () => {
  it('privileged: the host bounding set, no filter, /sys/firmware visible', async () => {
    const r = await sh({ privileged: true }, 'cat /proc/self/status; echo firmware $(ls -A /sys/firmware | wc -l)');
    const s = statusFields(r.out);
    expect(hex(s.CapBnd)).toBe(HOST_BND);
    expect(hex(s.CapEff)).toBe(HOST_BND);
    expect(s.Seccomp).toBe('0');
    if (existsSync('/sys/firmware')) expect(r.out).toContain(`firmware ${readdirSync('/sys/firmware').length}`);
  });

  it('each capAdd adds exactly that capability', async () => {
    for (const name of Object.keys(CAPABILITIES)) {
      const want = (DEFAULT_MASK | bit(name)) & HOST_BND;
      const s = await caps({ capAdd: [name] });
      expect([name, s.CapBnd, s.CapEff]).toEqual([name, want.toString(16).padStart(16, '0'), want.toString(16).padStart(16, '0')]);
    }
  });

  it('each capDrop removes exactly that capability', async () => {
    for (const name of DEFAULT_CAPABILITIES) {
      const want = (DEFAULT_MASK & ~bit(name)) & HOST_BND;
      const s = await caps({ capDrop: [name] });
      expect([name, s.CapBnd, s.CapEff]).toEqual([name, want.toString(16).padStart(16, '0'), want.toString(16).padStart(16, '0')]);
    }
  });

  it('a dropped capability is really gone: without CHOWN, chown fails', async () => {
    const r = await sh({ capDrop: ['CHOWN'] }, 'touch /tmp/nsbox-chown-$$; chown 1000 /tmp/nsbox-chown-$$; echo $?; rm -f /tmp/nsbox-chown-$$', { mounts: [probeMount(), { source: work, target: '/tmp', readonly: false }] });
    expect(r.out.trim()).toBe('1');
  });

  it('the filter rules of an added capability are lifted with it, and only those', async () => {
    expect(await probe({ capAdd: ['SYS_ADMIN'] }, ['mount', 'unshare-ns', 'ptrace', 'keyctl'])).toEqual({
      'mount': 'OK', 'unshare-ns': 'OK', 'ptrace': 'EPERM', 'keyctl': 'EPERM',
    });
    expect(await probe({ capAdd: ['SYS_PTRACE'] }, ['ptrace', 'process_vm_readv', 'mount'])).toEqual({
      'ptrace': 'OK', 'process_vm_readv': 'OK', 'mount': 'EPERM',
    });
  });

  it('seccomp unconfined: caps still reduced, calls reach the kernel (which refuses them for lack of caps)', async () => {
    const s = await caps({ seccomp: 'unconfined' });
    expect(s.Seccomp).toBe('0');
    expect(hex(s.CapBnd)).toBe(DEFAULT_MASK & HOST_BND);
    const r = await probe({ seccomp: 'unconfined' }, ['mount', 'clone3']);
    expect(r.mount).toBe('EPERM'); // no CAP_SYS_ADMIN
    expect(r.clone3).toBe('OK');
  });

  it('noNewPrivileges: false still installs the filter', async () => {
    const s = await caps({ noNewPrivileges: false });
    expect(s.NoNewPrivs).toBe('0');
    expect(s.Seccomp).toBe('2');
    expect(hex(s.CapEff)).toBe(DEFAULT_MASK & HOST_BND);
  });
});

// ---------------------------------------------------------------------------------------

describe('crafted images', () => {
  /** Starts a container on `root`, expecting a refusal; returns the error. */
  function refused(root: string): NsboxError {
    const before = { mounts: ourMounts(), fds: openFds() };
    let err: unknown;
    try {
      Container.start({ root: { type: 'bind', path: root }, command: ['true'], security: {} });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NsboxError);
    expect(ourMounts()).toEqual(before.mounts);
    expect(openFds()).toEqual(before.fds);
    return err as NsboxError;
  }

  it('/proc as a symlink to /tmp is refused', () => {
    const root = rootfsCopy('proc-link');
    rmSync(path.join(root, 'proc'), { recursive: true });
    symlinkSync('/tmp', path.join(root, 'proc'));
    const err = refused(root);
    expect(err.code).toBe('ELOOP');
    expect(err.step).toBe('mount /proc');
  });

  it('/dev as a symlink to / is refused', () => {
    const root = rootfsCopy('dev-link');
    rmSync(path.join(root, 'dev'), { recursive: true });
    symlinkSync('/', path.join(root, 'dev'));
    const err = refused(root);
    expect(err.code).toBe('ELOOP');
    expect(err.step).toBe('mount /dev');
  });

  it('/sys as a symlink is refused', () => {
    const root = rootfsCopy('sys-link');
    rmSync(path.join(root, 'sys'), { recursive: true });
    symlinkSync('/proc', path.join(root, 'sys'));
    expect(refused(root).code).toBe('ELOOP');
  });

  it('/dev/null replaced by a symlink in the image: masks still use the real 1:3 device', async () => {
    const root = rootfsCopy('devnull-link');
    const victim = path.join(work, 'devnull-victim');
    writeFileSync(victim, 'host file\n');
    symlinkSync(victim, path.join(root, 'dev/null'));
    symlinkSync('/proc/sys/kernel/core_pattern', path.join(root, 'dev/zero'));
    const corePattern = readFileSync('/proc/sys/kernel/core_pattern', 'utf8');
    const c = Container.start({
      root: { type: 'bind', path: root }, stdio: ['ignore', 'pipe', 'pipe'], security: {},
      command: ['sh', '-c', 'stat -c "%F %t:%T" /dev/null /proc/keys /proc/timer_list; echo pwned > /dev/null; echo "|/pwn" > /proc/sys/kernel/core_pattern 2>/dev/null; echo $?'],
    });
    const [out, status] = await Promise.all([collect(c.stdout), c.wait()]);
    expect(status.exitCode).toBe(0);
    const lines = out.trim().split('\n');
    expect(lines.slice(0, 3)).toEqual(['character special file 1:3', 'character special file 1:3', 'character special file 1:3']);
    expect(lines.at(-1)).toBe('1');
    expect(readFileSync(victim, 'utf8')).toBe('host file\n');
    expect(readFileSync('/proc/sys/kernel/core_pattern', 'utf8')).toBe(corePattern);
    expect(lstatSync(path.join(root, 'dev/null')).isSymbolicLink()).toBe(true);
  });

  it('a volume target swapped with a symlink during start never lands outside the root', async () => {
    const root = rootfsCopy('volume-race');
    const source = path.join(work, 'volume-source');
    const victim = path.join(work, 'volume-victim');
    mkdirSync(source);
    mkdirSync(victim);
    writeFileSync(path.join(source, 'marker'), 'volume\n');
    // Two pairs of names exchanged without pause: 'data' is in turn the directory and a
    // symlink to the victim (an absolute host path); 'mid' in turn a directory holding
    // 'data' and a symlink to the host's work directory (where 'data' would be created if
    // the link were followed on the host).
    mkdirSync(path.join(root, 'data'));
    symlinkSync(victim, path.join(root, 'data.swap'));
    mkdirSync(path.join(root, 'mid/data'), { recursive: true });
    symlinkSync(work, path.join(root, 'mid.swap'));
    const swappers: ChildProcess[] = [
      spawn(path.join(probeDir, 'probe'), ['swap-loop', path.join(root, 'data'), path.join(root, 'data.swap')], { stdio: 'ignore' }),
      spawn(path.join(probeDir, 'probe'), ['swap-loop', path.join(root, 'mid'), path.join(root, 'mid.swap')], { stdio: 'ignore' }),
    ];
    const outcomes = new Map<string, number>();
    const before = { mounts: ourMounts(), fds: openFds() };
    try {
      for (let i = 0; i < 150; i++) {
        const target = i % 2 ? '/data' : '/mid/data';
        let c: Container;
        try {
          c = Container.start({
            root: { type: 'bind', path: root }, stdio: ['ignore', 'pipe', 'ignore'], security: {},
            mounts: [{ source, target, readonly: false }],
            // Where the volume is mounted now, as the container sees it.
            command: ['sh', '-c', `awk '$4 ~ /volume-source$/ { print $5 }' /proc/self/mountinfo`],
          });
        } catch (e) {
          expect(e).toBeInstanceOf(NsboxError);
          const code = (e as NsboxError).code;
          expect(['ELOOP', 'ENOENT', 'ENOTDIR', 'EEXIST']).toContain(code);
          outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
          continue;
        }
        const [out] = await Promise.all([collect(c.stdout), c.wait()]);
        // Mounted on the directory inside the root. The swapper goes on renaming it while
        // the container runs, and a mount follows its directory, so either name may show.
        expect(['/data', '/data.swap', '/mid/data', '/mid.swap/data']).toContain(out.trim());
        outcomes.set('mounted', (outcomes.get('mounted') ?? 0) + 1);
      }
    } finally {
      for (const s of swappers) s.kill('SIGKILL');
    }
    // The host side of the symlinks is untouched, and nothing was mounted on the host.
    expect(readdirSync(victim)).toEqual([]);
    expect(existsSync(path.join(work, 'data'))).toBe(false);
    expect(ourMounts()).toEqual(before.mounts);
    expect(openFds()).toEqual(before.fds);
    expect(outcomes.get('mounted') ?? 0).toBeGreaterThan(0);
    console.log('volume race outcomes:', Object.fromEntries(outcomes));
  });
});
