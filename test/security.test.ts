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
import { CAPABILITIES } from '../src/capabilities';
import { hostArch, seccompFilter } from '../src/seccomp';
import { DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS, buildConfinement, type SecurityOptions } from '../src/security';
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

interface Run {
  out: string;
  err: string;
  exitCode: number | null;
  signal: string | null;
}

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
  return Object.fromEntries(
    r.out
      .trim()
      .split('\n')
      .map((l) => l.split(' ') as [string, string]),
  );
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
  return hostMounts().filter(
    (m) => m === '/' || m === '/tmp' || m === ROOTFS || m.startsWith(`${ROOTFS}/`) || (work !== '' && (m === work || m.startsWith(`${work}/`))),
  );
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

// The filter's rules, run by an interpreter on made-up calls, are tested in
// test/unit/seccomp.test.ts; here the kernel loads the filter and containers meet it.

// ---------------------------------------------------------------------------------------

describe('buildConfinement', () => {
  it('defaults: docker caps, no_new_privs, root without groups, a filter, masks and read-only paths', () => {
    const { security, steps } = buildConfinement();
    expect(security.bounding).toEqual(pair(DEFAULT_MASK));
    expect(security.effective).toEqual(pair(DEFAULT_MASK));
    expect(security.ambient).toBeUndefined();
    expect(security.noNewPrivs).toBe(true);
    expect([security.uid, security.gid]).toEqual([0, 0]);
    expect(security.seccomp).toEqual(seccompFilter(hostArch()!, DEFAULT_MASK));
    expect(steps.filter((s) => s.op === 'maskInRoot').map((s) => s.target)).toEqual(MASKED_PATHS.map((p) => p.slice(1)));
    expect(steps.filter((s) => s.op === 'readonlyInRoot').map((s) => s.target)).toEqual(READONLY_PATHS.map((p) => p.slice(1)));
    for (const p of ['proc/kcore', 'proc/keys', 'proc/timer_list', 'proc/sched_debug', 'proc/latency_stats', 'proc/acpi', 'proc/scsi', 'sys/firmware']) {
      expect(steps.some((s) => s.op === 'maskInRoot' && s.target === p)).toBe(true);
    }
    for (const p of ['proc/sys', 'proc/sysrq-trigger', 'proc/irq', 'proc/bus', 'proc/fs']) {
      expect(steps.some((s) => s.op === 'readonlyInRoot' && s.target === p)).toBe(true);
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
      { capAdd: ['NET_ADMINN'] },
      { capDrop: ['CAP_'] },
      { capAdd: [42 as unknown as string] },
      { capAdd: 'NET_ADMIN' as unknown as string[] },
      { capAdd: ['CHOWN'], capDrop: ['cap_chown'] },
      { user: 'nobody' },
      { user: '-1' },
      { user: '1000:' },
      { user: '4294967295' },
      { user: '1:2:3' },
      { seccomp: 'strict' as 'default' },
      { capadd: ['x'] } as SecurityOptions,
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

  it('checks every option for its exact type: a wrong one is INVALID_ARGUMENT naming the option and what it takes', () => {
    const common: unknown[] = ['false', 'true', '', 0, 1, null, {}, { valueOf: () => false }, new Boolean(false)];
    const cases: Record<keyof SecurityOptions, { wrong: unknown[]; right: unknown[]; message: RegExp }> = {
      privileged: { wrong: [...common, [], 'default'], right: [true, false], message: /privileged: .*takes a boolean/ },
      noNewPrivileges: { wrong: [...common, [], 'default'], right: [true, false], message: /noNewPrivileges: .*takes a boolean/ },
      capAdd: { wrong: [...common, true, false, 'NET_ADMIN'], right: [[], ['CHOWN']], message: /capAdd: .*array of capability names/ },
      capDrop: { wrong: [...common, true, false, 'ALL'], right: [[], ['CHOWN']], message: /capDrop: .*array of capability names/ },
      seccomp: { wrong: [...common, true, false, ['default'], 'Default'], right: ['default', 'unconfined'], message: /seccomp: .*'default' or 'unconfined'/ },
      user: { wrong: [...common, true, false, 1000, ['1000']], right: ['1000', '1000:1000'], message: /user: .*UID/ },
    };
    for (const [option, { wrong, right, message }] of Object.entries(cases)) {
      for (const value of wrong) {
        let err: unknown;
        try {
          buildConfinement({ [option]: value } as SecurityOptions);
        } catch (e) {
          err = e;
        }
        const what = `${option}: ${typeof value} ${JSON.stringify(value)}`;
        expect(err, what).toBeInstanceOf(NsboxError);
        expect((err as NsboxError).code, what).toBe('INVALID_ARGUMENT');
        expect((err as NsboxError).message, what).toMatch(message);
      }
      for (const value of right) expect(() => buildConfinement({ [option]: value } as SecurityOptions)).not.toThrow();
      // Undefined is absent.
      expect(buildConfinement({ [option]: undefined } as SecurityOptions)).toEqual(buildConfinement({}));
    }
    // The message tells the string 'false' from the boolean.
    expect(() => buildConfinement({ privileged: 'false' } as unknown as SecurityOptions)).toThrow(/the string "false"/);
    for (const notObject of [null, 'privileged', true, ['privileged']]) {
      expect(() => buildConfinement(notObject as unknown as SecurityOptions)).toThrow(/must be an object/);
    }
  });

  it("privileged: 'false' never starts a privileged container", () => {
    const before = { mounts: ourMounts(), fds: openFds() };
    for (const privileged of ['false', 'true', 1, 0, null]) {
      let err: unknown;
      try {
        Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['true'], security: { privileged } as unknown as SecurityOptions });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NsboxError);
      expect((err as NsboxError).code).toBe('INVALID_ARGUMENT');
    }
    expect(ourMounts()).toEqual(before.mounts);
    expect(openFds()).toEqual(before.fds);
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
    expect(p.steps).toEqual([]);
    const u = buildConfinement({ seccomp: 'unconfined' });
    expect(u.security.seccomp).toBeUndefined();
    expect(u.security.bounding).toEqual(pair(DEFAULT_MASK));
    expect(u.steps.length).toBeGreaterThan(0);
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
      'mount',
      'umount',
      'fsopen',
      'open_tree',
      'pivot_root',
      'keyctl',
      'add_key',
      'unshare-user',
      'unshare-ns',
      'clone-newuser',
      'clone-newpid',
      'setns',
      'kexec_load',
      'finit_module',
      'delete_module',
      'bpf',
      'perf_event_open',
      'userfaultfd',
      'ptrace',
      'process_vm_readv',
      'personality-norandom',
      'reboot',
      'clock_settime',
      'acct',
      'iopl',
      'open_by_handle_at',
      'io_uring_setup',
    ]);
    for (const [call, result] of Object.entries(r)) expect([call, result]).toEqual([call, 'EPERM']);
  });

  it('can still fork, clone without namespaces, unshare harmless flags; clone3 says ENOSYS', async () => {
    expect(await probe({}, ['fork', 'clone', 'unshare-files', 'personality-query', 'clone3', 'nosys'])).toEqual({
      fork: 'OK',
      clone: 'OK',
      'unshare-files': 'OK',
      'personality-query': 'OK',
      clone3: 'ENOSYS',
      nosys: 'ENOSYS',
    });
  });

  it('cannot push input into its terminal (TIOCSTI, TIOCLINUX), but can use it', async () => {
    const c = Container.start({
      root: { type: 'bind', path: ROOTFS },
      command: ['/probe/probe', 'tiocsti', 'tiocsti-high', 'tioclinux', 'tiocgwinsz'],
      tty: true,
      mounts: [probeMount()],
      security: {},
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
    const r = await sh(
      {},
      [
        // 0 bytes (the real /dev/null over it) or an error: never the host's memory.
        'for f in /proc/kcore /proc/keys /proc/timer_list /proc/interrupts /proc/sched_debug /proc/latency_stats; do',
        '  if [ -e $f ]; then printf "%s %s %s\\n" $f $(stat -c %t:%T $f) $(cat $f 2>/dev/null | wc -c); else echo $f absent; fi',
        'done',
        'echo firmware $(ls -A /sys/firmware | wc -l)',
        'echo acpi $(ls -A /proc/acpi 2>/dev/null | wc -l)',
        'echo nsbox > /proc/sys/kernel/hostname 2>/dev/null; echo hostname $?',
        'if [ -e /proc/sysrq-trigger ]; then echo h > /proc/sysrq-trigger 2>/dev/null; echo sysrq $?; else echo sysrq absent; fi',
        'grep -E " /proc/(sys|sysrq-trigger|irq|bus|fs) " /proc/self/mountinfo | grep -c " ro,"',
      ].join('\n'),
    );
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

/** Calls docker's profile refuses (or lifts with a capability) that nsbox once let through. */
const GATED = [
  'vsock-listen',
  'uevent-socket',
  'pidfd-getfd',
  'process-madvise',
  'fanotify',
  'mbind',
  'set_mempolicy',
  'get_mempolicy',
  'move_pages',
  'migrate_pages',
  'syslog',
  'vhangup',
  ...(process.arch === 'x64' ? ['ustat'] : []),
];
const HAS_VSOCK = /^AF_VSOCK\s/m.test(readFileSync('/proc/net/protocols', 'utf8'));
const HAS_NUMA = existsSync('/sys/devices/system/node/node0');
const NUMA_CALLS = ['mbind', 'set_mempolicy', 'get_mempolicy', 'move_pages', 'migrate_pages'];

/** Makes the host's kernel send device events (a "change" of /dev/null) until stopped. */
function hostUevents(): () => void {
  const send = () => writeFileSync('/sys/devices/virtual/mem/null/uevent', 'change');
  send(); // fails here, in the test, if the host cannot
  const timer = setInterval(send, 100);
  return () => clearInterval(timer);
}

describe("docker's denials (issue 15)", () => {
  it('a default container is refused vsock, device-event sockets, pidfd_getfd, fanotify, NUMA calls, syslog', async () => {
    const r = await probe({}, GATED);
    expect(r).toEqual(Object.fromEntries(GATED.map((c) => [c, c === 'vsock-listen' ? 'EAFNOSUPPORT' : 'EPERM'])));
  });

  it('the filter is what refuses them: without it the same calls work here', async () => {
    const bare = await probe({ seccomp: 'unconfined' }, GATED);
    // The kernel itself checks CAP_SYSLOG (dmesg_restrict) and CAP_SYS_TTY_CONFIG.
    const kernelChecks = new Set(['syslog', 'vhangup']);
    for (const call of GATED) {
      if (kernelChecks.has(call)) continue;
      if (call === 'vsock-listen' && !HAS_VSOCK) continue; // no vsock in this kernel: EAFNOSUPPORT either way
      if (NUMA_CALLS.includes(call) && !HAS_NUMA) continue;
      expect([call, bare[call]]).toEqual([call, 'OK']);
    }
  });

  it('a user without any capability could make them all but for the filter: refused to it too', async () => {
    const calls = GATED.filter((c) => !['syslog', 'vhangup'].includes(c) && (HAS_NUMA || !NUMA_CALLS.includes(c)) && (HAS_VSOCK || c !== 'vsock-listen'));
    expect(await probe({ user: '1000', seccomp: 'unconfined' }, calls)).toEqual(Object.fromEntries(calls.map((c) => [c, 'OK'])));
    expect(await probe({ user: '1000' }, calls)).toEqual(Object.fromEntries(calls.map((c) => [c, c === 'vsock-listen' ? 'EAFNOSUPPORT' : 'EPERM'])));
  });

  it('device events of the host reach a container only through the uevent socket the filter refuses', async () => {
    const stop = hostUevents();
    try {
      // Without the filter the host's events arrive in the container's own network namespace.
      expect(await probe({ seccomp: 'unconfined' }, ['uevent-recv'])).toEqual({ 'uevent-recv': 'OK' });
      expect(await probe({}, ['uevent-recv'])).toEqual({ 'uevent-recv': 'EPERM' });
      expect(await probe({ capAdd: ['NET_ADMIN', 'NET_RAW', 'SYS_RESOURCE'] }, ['uevent-recv'])).toEqual({ 'uevent-recv': 'EPERM' });
      // SYS_ADMIN lifts it (it could mount sysfs and see the devices anyway).
      expect(await probe({ capAdd: ['SYS_ADMIN'] }, ['uevent-recv'])).toEqual({ 'uevent-recv': 'OK' });
    } finally {
      stop();
    }
  });

  it('vsock stays refused whatever the capabilities, short of privileged', async () => {
    expect(await probe({ capAdd: ['ALL'] }, ['vsock-listen'])).toEqual({ 'vsock-listen': 'EAFNOSUPPORT' });
    expect(await probe({ capAdd: ['NET_ADMIN', 'SYS_ADMIN'] }, ['vsock-listen'])).toEqual({ 'vsock-listen': 'EAFNOSUPPORT' });
  });

  it('the capability docker lifts each with lifts it here, and only that one', async () => {
    const lifted: Array<[string, string[]]> = [
      ['SYS_PTRACE', ['pidfd-getfd', 'process-madvise']],
      ['SYS_ADMIN', ['fanotify', 'uevent-socket']],
      ['SYSLOG', ['syslog']],
      ['SYS_TTY_CONFIG', ['vhangup']],
      ...(HAS_NUMA ? [['SYS_NICE', NUMA_CALLS] as [string, string[]]] : []),
    ];
    for (const [cap, calls] of lifted) {
      const r = await probe({ capAdd: [cap] }, GATED);
      for (const call of GATED) {
        const want = calls.includes(call) ? 'OK' : call === 'vsock-listen' ? 'EAFNOSUPPORT' : 'EPERM';
        expect([cap, call, r[call]]).toEqual([cap, call, want]);
      }
    }
  });

  it('chroot needs SYS_CHROOT, a default capability', async () => {
    expect(await probe({}, ['chroot'])).toEqual({ chroot: 'OK' });
    expect(await probe({ capDrop: ['SYS_CHROOT'] }, ['chroot'])).toEqual({ chroot: 'EPERM' });
  });

  it('a syscall above the last reviewed number gets ENOSYS from the filter; -1 still reaches the kernel', async (ctx) => {
    // file_getattr (468, Linux 6.17) with a bad fd: the kernel answers something else than ENOSYS.
    const bare = await probe({ seccomp: 'unconfined' }, ['nr-468']);
    if (bare['nr-468'] === 'ENOSYS') ctx.skip();
    expect(await probe({}, ['nr-468', 'nosys'])).toEqual({ 'nr-468': bare['nr-468'], nosys: 'ENOSYS' });
    // The same filter, reviewed up to 467 only: 468 is now a call from the future.
    const { security, steps } = buildConfinement({});
    security.seccomp = seccompFilter(hostArch()!, DEFAULT_MASK, 467);
    // A confinement of the test's own: through the internal launch (start takes only options).
    const c = Container.launch({
      root: { type: 'bind', path: ROOTFS },
      command: ['/probe/probe', 'nr-468', 'nosys'],
      stdio: ['ignore', 'pipe', 'pipe'],
      mounts: [probeMount()],
      confinement: { security, steps },
    });
    const [out, err, status] = await Promise.all([collect(c.stdout), collect(c.stderr), c.wait()]);
    expect([err, status.exitCode]).toEqual(['', 0]);
    expect(out).toBe('nr-468 ENOSYS\nnosys ENOSYS\n');
  });
});

describe('--user', () => {
  it('1000:1000: id says so, no groups, no caps, root-owned paths are not writable', async () => {
    const r = await sh(
      { user: '1000:1000' },
      'id; grep -E "^(Groups|CapEff|CapPrm|CapAmb|CapInh|NoNewPrivs)" /proc/self/status; touch /etc/nsbox-x 2>&1; echo touch $?; echo x > /bin/busybox; echo write $?',
    );
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
    const r = await sh(
      { user: '1000', capAdd: ['NET_BIND_SERVICE'] },
      'grep -E "^Cap" /proc/self/status; nc -l -p 80 & sleep 0.3; netstat -ltn | grep -c ":80 "; kill $!',
    );
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
    const { security, steps } = buildConfinement({});
    // One instruction the kernel's BPF checker refuses.
    security.seccomp = new Uint8Array(8).fill(0xff);
    let err: unknown;
    try {
      Container.launch({ root: { type: 'bind', path: ROOTFS }, command: ['true'], confinement: { security, steps } });
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
      const want = DEFAULT_MASK & ~bit(name) & HOST_BND;
      const s = await caps({ capDrop: [name] });
      expect([name, s.CapBnd, s.CapEff]).toEqual([name, want.toString(16).padStart(16, '0'), want.toString(16).padStart(16, '0')]);
    }
  });

  it('a dropped capability is really gone: without CHOWN, chown fails', async () => {
    const r = await sh({ capDrop: ['CHOWN'] }, 'touch /tmp/nsbox-chown-$$; chown 1000 /tmp/nsbox-chown-$$; echo $?; rm -f /tmp/nsbox-chown-$$', {
      mounts: [probeMount(), { source: work, target: '/tmp', readonly: false }],
    });
    expect(r.out.trim()).toBe('1');
  });

  it('the filter rules of an added capability are lifted with it, and only those', async () => {
    expect(await probe({ capAdd: ['SYS_ADMIN'] }, ['mount', 'unshare-ns', 'ptrace', 'keyctl'])).toEqual({
      mount: 'OK',
      'unshare-ns': 'OK',
      ptrace: 'EPERM',
      keyctl: 'EPERM',
    });
    expect(await probe({ capAdd: ['SYS_PTRACE'] }, ['ptrace', 'process_vm_readv', 'mount'])).toEqual({
      ptrace: 'OK',
      process_vm_readv: 'OK',
      mount: 'EPERM',
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
      root: { type: 'bind', path: root },
      stdio: ['ignore', 'pipe', 'pipe'],
      security: {},
      command: [
        'sh',
        '-c',
        'stat -c "%F %t:%T" /dev/null /proc/keys /proc/timer_list; echo pwned > /dev/null; echo "|/pwn" > /proc/sys/kernel/core_pattern 2>/dev/null; echo $?',
      ],
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
            root: { type: 'bind', path: root },
            stdio: ['ignore', 'pipe', 'ignore'],
            security: {},
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
