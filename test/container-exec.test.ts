// exec (issue 12, item 3): a process in a running container, from the library. Each test
// attacks one promise: that the exec is inside the container (its PID 1, mounts, hostname,
// cgroups), confined exactly as the container is, that its stdio, exit statuses, signals and
// terminal work, that it reaches containers another process supervises, that an exited
// container or a record whose pid is no longer the container's is refused, that a hostile
// container reaches no host fd and not the host's binary, and that nothing is left behind.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Container } from '../src/container';
import { NsboxError } from '../src/errors';
import type { ExecOptions, ExecProcess } from '../src/exec';
import { Runtime, type RunOptions } from '../src/runtime';
import type { SecurityOptions } from '../src/security';
import { ROOTFS, collect, processEnded, snapshot, until, zombies } from './helpers';

const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
let work: string;
let probeDir: string;
const started: Container[] = [];

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-exec-'));
  probeDir = path.join(work, 'probe');
  fs.mkdirSync(probeDir);
  execFileSync('gcc', ['-static', '-O2', '-o', path.join(probeDir, 'probe'), path.join(__dirname, 'probe/probe.c')]);
});

afterAll(async () => {
  for (const c of started) {
    c.kill('SIGKILL');
    await c.wait().catch(() => undefined);
  }
  fs.rmSync(work, { recursive: true, force: true });
});

/**
 * A container that runs until killed; `script` runs first. On an overlay of the built-in
 * busybox image: a hostile script's writes stay in its own layer, never in a shared fixture.
 */
async function box(script = '', options: Partial<RunOptions> = {}): Promise<Container> {
  const c = await boxes().run({
    image: 'busybox',
    command: ['sh', '-c', `${script}\nexec sleep 3600`],
    stdio: 'ignore',
    volumes: [`${probeDir}:/probe:ro`],
    remove: true,
    ...options,
  });
  started.push(c);
  // The script has run once sleep is the command (`exec sleep` replaces sh).
  const command = () => fs.readFileSync(`/proc/${c.pid}/task/${c.pid}/children`, 'utf8').trim().split(' ')[0];
  await until('the container script', () => !!command() && fs.readFileSync(`/proc/${command()}/comm`, 'utf8').trim() === 'sleep');
  return c;
}

let boxRuntime: Runtime | undefined;
const boxes = () => (boxRuntime ??= new Runtime({ root: path.join(work, 'boxes') }));

async function execOut(c: { exec(o: ExecOptions): ExecProcess }, command: string[], options: Omit<ExecOptions, 'command'> = {}) {
  const e = c.exec({ command, ...options });
  const [out, err, status] = await Promise.all([collect(e.stdout), collect(e.stderr), e.wait()]);
  return { out, err, ...status, pid: e.pid };
}

const sh = (c: Container, script: string, options: Omit<ExecOptions, 'command'> = {}) => execOut(c, ['sh', '-c', script], options);

/** The container's processes by name, as an exec of ps (itself left out) sees them. */
async function processesOf(c: Container): Promise<string[]> {
  const r = await execOut(c, ['ps', '-o', 'comm']);
  return r.out
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.trim())
    .filter((x) => x !== 'ps')
    .sort();
}

/** What /proc/self/status says of confinement. */
const CONFINEMENT = /^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):.*$/gm;
const confinement = (status: string) => status.match(CONFINEMENT)!.join('\n');

function execError(fn: () => unknown): NsboxError {
  try {
    fn();
  } catch (e) {
    if (e instanceof NsboxError) return e;
    throw e;
  }
  throw new Error('expected exec to fail');
}

describe('exec is inside the container', () => {
  it('sees its PID 1, its processes, its mounts, its files and its hostname', async () => {
    const c = await box('mkdir -p /tmp/only-here && echo from-the-container > /tmp/only-here/mark', { hostname: 'inside-box' });
    const r = await sh(
      c,
      'tr "\\0" " " < /proc/1/cmdline | tr -s " "; echo; ps -o pid,comm; cat /tmp/only-here/mark; hostname; cat /proc/mounts | cut -d" " -f2 | sort | tr "\\n" " "',
    );
    expect(r.exitCode).toBe(0);
    const lines = r.out.split('\n');
    expect(lines[0]!.trim()).toBe('nsbox-init');
    // PID 1 is the container's init, PID 2 its command; the exec's init and command follow.
    expect(r.out).toMatch(/^\s+1 nsbox-init$/m);
    expect(r.out).toMatch(/^\s+2 sleep$/m);
    expect(r.out).toContain('from-the-container');
    expect(r.out).toMatch(/^inside-box$/m);
    // The container's mount table, not the host's: /probe is bound there, and no host path.
    const own = fs
      .readFileSync(`/proc/${c.pid}/mounts`, 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1])
      .filter(Boolean)
      .sort()
      .join(' ');
    expect(lines.at(-1)!.trim()).toBe(own);
    expect(lines.at(-1)).toContain('/probe');
    expect(lines.at(-1)).not.toContain(ROOTFS);
  });

  it("is in the container's cgroups and namespaces (with limits, host network, privileged)", async () => {
    for (const options of [{}, { limits: { memory: '64m', pids: 64 } }, { network: 'host' }, { security: { privileged: true } }] as Partial<RunOptions>[]) {
      const c = await box('', options);
      const e = c.exec({ command: ['sh', '-c', 'cat /proc/self/cgroup; sleep 30'], stdio: ['ignore', 'pipe', 'ignore'] });
      let inside = '';
      e.stdout!.on('data', (d: Buffer) => (inside += d));
      await until('the exec to print', () => inside.includes('0::'));
      // From the host: the exec's command is in the very cgroups of the container's init.
      const command = Number(fs.readFileSync(`/proc/${e.pid}/task/${e.pid}/children`, 'utf8').trim());
      expect(fs.readFileSync(`/proc/${command}/cgroup`, 'utf8')).toBe(fs.readFileSync(`/proc/${c.pid}/cgroup`, 'utf8'));
      expect(fs.readlinkSync(`/proc/${command}/ns/cgroup`)).toBe(fs.readlinkSync(`/proc/${c.pid}/ns/cgroup`));
      for (const ns of ['mnt', 'pid', 'uts', 'ipc', 'net'])
        expect(fs.readlinkSync(`/proc/${command}/ns/${ns}`)).toBe(fs.readlinkSync(`/proc/${c.pid}/ns/${ns}`));
      // Inside, its cgroup namespace is rooted at the container's cgroups.
      expect(inside).toMatch(/^0::\/$/m);
      e.kill('SIGKILL');
      await e.wait();
    }
  });

  it('a memory limit holds for the exec: a hog in it is OOM-killed, and its verdict says so', async () => {
    const c = await box('', { limits: { memory: '32m', memorySwap: '32m' } });
    // tail holds the one endless line of /dev/zero in memory: past 32 MiB the OOM killer ends
    // it. It is the exec's own command and the only process that allocates, so no second
    // victim is taken while its pages are being freed (a pipeline's writer would go on
    // charging pipe pages and the kernel may kill the shell too).
    const r = await execOut(c, ['sh', '-c', 'echo 1000 > /proc/self/oom_score_adj; exec tail /dev/zero']);
    expect(r.signal).toBe('SIGKILL');
    expect(r.oomKilled).toBe(true);
    expect(c.running).toBe(true);
    // Killed by hand, with no OOM kill meanwhile: not called an OOM kill.
    const e = c.exec({ command: ['sleep', '30'], stdio: 'ignore' });
    await until('sleep to start', () => fs.readFileSync(`/proc/${e.pid}/task/${e.pid}/children`, 'utf8').trim() !== '');
    e.kill('SIGKILL');
    const killed = await e.wait();
    expect(killed.signal).toBe('SIGKILL');
    expect(killed.oomKilled).toBe(false);
    // The container is unharmed: it still runs commands.
    expect((await sh(c, 'echo alive')).out).toBe('alive\n');
  });
});

describe('exec is confined as the container is', () => {
  const cases: Array<[string, SecurityOptions]> = [
    ['default', {}],
    ['a non-root user with an added capability', { user: '1000:1000', capAdd: ['NET_ADMIN'] }],
    ['capDrop ALL, no_new_privs off', { capDrop: ['ALL'], noNewPrivileges: false }],
    ['seccomp unconfined', { seccomp: 'unconfined' }],
    ['privileged', { privileged: true }],
  ];
  for (const [name, security] of cases) {
    it(`${name}: the same ids, capability sets, no_new_privs and seccomp, and the filter denies the same calls`, async () => {
      const c = await box('grep -E "" /proc/self/status > /tmp/status-of-the-command; /probe/probe keyctl unshare-user mount > /tmp/probe-of-the-command', {
        security,
      });
      const r = await sh(
        c,
        'cat /tmp/status-of-the-command; echo ====; cat /proc/self/status; echo ====; cat /tmp/probe-of-the-command; echo ====; /probe/probe keyctl unshare-user mount',
      );
      expect(r.exitCode).toBe(0);
      const [theirs, mine, theirProbe, myProbe] = r.out.split('====\n');
      expect(confinement(mine!)).toBe(confinement(theirs!));
      expect(myProbe).toBe(theirProbe);
      if (security.seccomp === undefined && !security.privileged) expect(myProbe).toMatch(/^keyctl EPERM$/m);
    });
  }

  it('-u root gets the bounding set, -u 1000 no capabilities at all', async () => {
    const c = await box('', { security: { user: '1000' } });
    const root = await sh(c, 'grep -E "^(Uid|CapEff|CapBnd):" /proc/self/status', { user: '0' });
    const bnd = /^CapBnd:\s*(\w+)$/m.exec(root.out)![1];
    expect(root.out).toMatch(new RegExp(`^CapEff:\\s*${bnd}$`, 'm'));
    expect(root.out).toMatch(/^Uid:\s+0\s/m);
    const user = await sh(c, 'grep -E "^(Uid|Gid|CapEff|CapPrm):" /proc/self/status', { user: '1000:1001' });
    expect(user.out).toMatch(/^CapEff:\s*0+$/m);
    expect(user.out).toMatch(/^CapPrm:\s*0+$/m);
    expect(user.out).toMatch(/^Uid:\s+1000\s/m);
    expect(user.out).toMatch(/^Gid:\s+1001\s/m);
  });

  it("its rlimits are the container's", async () => {
    const c = await box('', { ulimits: { nofile: [123, 456], nproc: 789 } });
    const r = await sh(c, 'cat /proc/self/limits');
    const pick = (t: string) =>
      t
        .split('\n')
        .filter((l) => /open files|processes/.test(l))
        .join('\n');
    expect(pick(r.out)).toBe(pick(fs.readFileSync(`/proc/${c.pid}/limits`, 'utf8')));
    expect(pick(r.out)).toMatch(/Max open files\s+123\s+456/);
  });
});

describe('exec stdio, exit status, signals, terminal', () => {
  it("stdin, stdout and stderr apart; exit codes; the container's environment plus env; cwd", async () => {
    const c = await box('', { env: { FROM_CONTAINER: 'yes' }, cwd: '/tmp' });
    const e = c.exec({ command: ['sh', '-c', 'cat; echo to-err >&2; echo "$FROM_CONTAINER $ADDED $(pwd)"; exit 7'], env: ['ADDED=too'] });
    e.stdin!.end('piped in\n');
    const [out, err, status] = await Promise.all([collect(e.stdout), collect(e.stderr), e.wait()]);
    expect(out).toBe('piped in\nyes too /tmp\n');
    expect(err).toBe('to-err\n');
    expect(status).toMatchObject({ exitCode: 7, signal: null, timedOut: false });
    expect(status.usage.wallMs).toBeGreaterThan(0);
    expect((await sh(c, 'pwd', { cwd: '/etc' })).out).toBe('/etc\n');
    expect((await sh(c, 'kill -SEGV $$')).signal).toBe('SIGSEGV');
  });

  it("a command that cannot be exec'd, a missing cwd: clear errors, nothing left", async () => {
    const c = await box();
    const before = snapshot();
    expect(execError(() => c.exec({ command: ['no-such-program'] }))).toMatchObject({
      code: 'ENOENT',
      step: 'exec',
      message: expect.stringContaining('not found in PATH'),
    });
    expect(execError(() => c.exec({ command: ['/etc'] }))).toMatchObject({ code: 'EACCES', step: 'exec' });
    expect(execError(() => c.exec({ command: ['true'], cwd: '/no/such/dir' }))).toMatchObject({
      code: 'ENOENT',
      message: expect.stringContaining('/no/such/dir'),
    });
    expect(execError(() => c.exec({ command: ['true'], cwd: 'relative' }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(execError(() => c.exec({ command: ['true'], user: 'nobody' }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(execError(() => c.exec({ command: [] }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(execError(() => c.exec({ command: ['true'], bogus: 1 } as ExecOptions))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(snapshot()).toEqual(before);
    // PID 1, sleep, and the nsbox-init of this very exec: nothing of the failed ones. (ps run
    // directly: in a shell pipeline, busybox re-execs itself for an applet, as "exe".)
    expect(await processesOf(c)).toEqual(['nsbox-init', 'nsbox-init', 'sleep']);
  });

  it('kill() passes signals on; SIGKILL ends the command too; a timeout kills it', async () => {
    const c = await box();
    const e = c.exec({
      command: ['sh', '-c', 'trap "echo got-term; exit 5" TERM; echo ready; while :; do sleep 0.05; done'],
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    e.stdout!.on('data', (d: Buffer) => (out += d));
    await until('the trap', () => out.includes('ready'));
    expect(e.kill('SIGTERM')).toBe(true);
    expect(await e.wait()).toMatchObject({ exitCode: 5 });
    expect(out).toContain('got-term');
    expect(e.kill()).toBe(false);

    const k = c.exec({ command: ['sh', '-c', "trap '' TERM; exec sleep 600"], stdio: 'ignore' });
    await until('sleep', () => fs.readFileSync(`/proc/${k.pid}/task/${k.pid}/children`, 'utf8').trim() !== '');
    const command = Number(fs.readFileSync(`/proc/${k.pid}/task/${k.pid}/children`, 'utf8').trim());
    k.kill('SIGKILL');
    expect(await k.wait()).toMatchObject({ signal: 'SIGKILL' });
    await until("the exec's command to die with its init", () => processEnded(command));

    const t = c.exec({ command: ['sleep', '600'], stdio: 'ignore', timeout: 200 });
    expect(await t.wait()).toMatchObject({ signal: 'SIGKILL', timedOut: true });
    const ac = new AbortController();
    const a = c.exec({ command: ['sleep', '600'], stdio: 'ignore', signal: ac.signal });
    ac.abort();
    expect(await a.wait()).toMatchObject({ signal: 'SIGKILL', aborted: true });
    expect(c.running).toBe(true);
  });

  it("tty: the container's own pty, resizes followed, Ctrl-C as a byte", async () => {
    const c = await box();
    const e = c.exec({ command: ['sh'], tty: { cols: 100, rows: 40 } });
    let screen = '';
    e.terminal!.on('data', (d: Buffer) => (screen += d));
    e.terminal!.write('tty; stty size; echo "TERM=$TERM"\n');
    await until('the first answers', () => /TERM=xterm/.test(screen));
    expect(screen).toMatch(/\/dev\/pts\/\d+/);
    expect(screen).toMatch(/^40 100\r?$/m);
    e.resize(132, 50);
    e.terminal!.write('stty size; sleep 30\n');
    await until('the resize', () => /^50 132\r?$/m.test(screen));
    await new Promise((r) => setTimeout(r, 200));
    // The line discipline of the container's pty makes the byte a SIGINT of the foreground job.
    e.terminal!.write('\x03');
    e.terminal!.write('echo "after=$?"\n');
    await until('Ctrl-C to reach sleep', () => /after=130/.test(screen));
    e.terminal!.write('exit 4\n');
    expect(await e.wait()).toMatchObject({ exitCode: 4 });
  });

  it('ends when the container ends', async () => {
    const c = await box();
    const e = c.exec({ command: ['sleep', '600'], stdio: 'ignore' });
    c.kill('SIGKILL');
    expect(await e.wait()).toMatchObject({ signal: 'SIGKILL' });
    await c.wait();
    expect(zombies()).toEqual([]);
  });
});

describe('exec of containers another process supervises, and refusals', () => {
  let rt: Runtime;
  let stateRoot: string;
  const nsbox = (...args: string[]) => spawnSync(process.execPath, [MAIN, '--root', stateRoot, ...args], { encoding: 'utf8', timeout: 30_000 });

  beforeAll(() => {
    stateRoot = path.join(work, 'state');
    rt = new Runtime({ root: stateRoot });
  });
  afterAll(() => {
    nsbox('rm', '-f', 'detached', 'gone', 'forged');
  });

  it('enters a `nsbox run -d` container (its supervisor is another process)', async () => {
    expect(nsbox('run', '-d', '--name', 'detached', '--hostname', 'far-away', 'busybox', 'sh', '-c', 'echo hi > /tmp/there; exec sleep 600').status).toBe(0);
    await until('the file', () => nsbox('exec', 'detached', 'cat', '/tmp/there').stdout === 'hi\n', 5000, 100);
    const r = await execOut({ exec: (o) => rt.exec('detached', o) }, ['sh', '-c', 'hostname; cat /tmp/there; ps -o pid,comm | grep -c sleep']);
    expect(r).toMatchObject({ exitCode: 0, out: 'far-away\nhi\n1\n' });
    // Its init's parent is that supervisor, not us: we hold no pidfd of it, only a proof.
    const info = rt.inspect('detached');
    expect(fs.readFileSync(`/proc/${info.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]).not.toBe(String(process.pid));
  });

  it('an exited container: NOT_RUNNING, and nothing is left behind', async () => {
    expect(nsbox('run', '--name', 'gone', 'busybox', 'true').status).toBe(0);
    const before = snapshot();
    expect(execError(() => rt.exec('gone', { command: ['true'] }))).toMatchObject({ code: 'NOT_RUNNING', message: expect.stringContaining('gone') });
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['true'], stdio: 'ignore' });
    await c.wait();
    expect(execError(() => c.exec({ command: ['true'] }))).toMatchObject({ code: 'NOT_RUNNING' });
    expect(snapshot()).toEqual(before);
    expect(execError(() => rt.exec('no-such-box', { command: ['true'] }))).toMatchObject({ code: 'NOT_FOUND' });
  });

  it("a record whose pid is no longer the container's is refused (reused pid, forged namespace)", async () => {
    expect(nsbox('run', '-d', '--name', 'forged', 'busybox', 'sleep', '600').status).toBe(0);
    const id = rt.inspect('forged').id;
    const file = path.join(stateRoot, 'containers', id, 'container.json');
    const rec = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    // A host process now has the container's pid, its start time and all (the container gone,
    // its record kept): the namespace gives it away.
    const stranger = spawn('sleep', ['600'], { stdio: 'ignore' });
    try {
      await until('the stranger', () => fs.existsSync(`/proc/${stranger.pid}/stat`));
      const start = fs.readFileSync(`/proc/${stranger.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19];
      const write = (patch: Record<string, unknown>) => {
        const text = JSON.stringify({ ...rec, ...patch });
        fs.writeFileSync(file, text.padEnd(4096, ' '));
      };
      const before = snapshot();
      write({ pid: stranger.pid, pidStart: start });
      expect(execError(() => new Runtime({ root: stateRoot }).exec('forged', { command: ['true'] }))).toMatchObject({ code: 'EPERM' });
      // The host's own namespace recorded: still not entered.
      write({ pid: stranger.pid, pidStart: start, pidNamespace: fs.readlinkSync('/proc/self/ns/pid') });
      expect(execError(() => new Runtime({ root: stateRoot }).exec('forged', { command: ['true'] }))).toMatchObject({ code: 'EPERM' });
      // The pid reused by a process started later: its start time differs, the container is gone.
      write({ pid: stranger.pid });
      expect(execError(() => new Runtime({ root: stateRoot }).exec('forged', { command: ['true'] }))).toMatchObject({ code: 'NOT_RUNNING' });
      expect(snapshot()).toEqual(before);
      expect(fs.readFileSync(`/proc/${stranger.pid}/status`, 'utf8')).toMatch(/^NSpid:\s+\d+$/m); // untouched, alone
    } finally {
      stranger.kill('SIGKILL');
      fs.writeFileSync(file, JSON.stringify(rec).padEnd(4096, ' '));
    }
  });
});

describe('a hostile container', () => {
  it("reaches no host fd and not the host's binary through an exec, while it scans /proc", async () => {
    // The container watches every process that appears and tries its fds and its exe: an exec's
    // processes hold Node's fds until they exec nsbox-init, and Node's binary until then.
    const scan = [
      'while :; do for p in /proc/[0-9]*; do',
      '  x=$(readlink $p/exe 2>/dev/null); case "$x" in *node*|*memfd*) echo "exe $p $x" >> /tmp/hits;; esac',
      '  for f in $p/fd/*; do l=$(readlink $f 2>/dev/null); case "$l" in ""|/dev/null|/dev/pts/*|pipe:*|/proc/*) ;; *) echo "fd $f $l" >> /tmp/hits;; esac; done',
      '  cat $p/environ 2>/dev/null | grep -q NSBOX_HOST_SECRET && echo "environ $p" >> /tmp/hits',
      'done; done &',
    ].join('\n');
    process.env.NSBOX_HOST_SECRET = 'x';
    const c = await box(`touch /tmp/hits\n${scan}`);
    const node = createHash('sha256').update(fs.readFileSync(process.execPath)).digest('hex');
    try {
      for (let i = 0; i < 40; i++) {
        const r = await sh(c, 'readlink /proc/self/exe; readlink /proc/$PPID/exe 2>&1 || echo denied; ls /proc/$PPID/fd 2>&1 || echo denied');
        expect(r.exitCode).toBe(0);
        // Its exe is the container's sh; its nsbox-init is not readable at all (not dumpable).
        expect(r.out.split('\n')[0]).toBe('/bin/busybox');
        expect(r.out).not.toMatch(/memfd|node/);
        expect(r.out).toMatch(/denied/);
      }
      // An exec'd command holds its stdio and nothing else, seen from inside and from the host.
      const e = c.exec({ command: ['sleep', '30'] });
      await until('sleep', () => fs.readFileSync(`/proc/${e.pid}/task/${e.pid}/children`, 'utf8').trim() !== '');
      const command = Number(fs.readFileSync(`/proc/${e.pid}/task/${e.pid}/children`, 'utf8').trim());
      await until('its exec', () => fs.readlinkSync(`/proc/${command}/exe`) !== fs.readlinkSync(`/proc/${e.pid}/exe`));
      const inner = /^NSpid:.*\s(\d+)$/m.exec(fs.readFileSync(`/proc/${command}/status`, 'utf8'))![1];
      expect((await sh(c, `echo $(ls /proc/${inner}/fd)`)).out).toBe('0 1 2\n');
      expect(fs.readdirSync(`/proc/${command}/fd`).sort()).toEqual(['0', '1', '2']);
      // Seen from the host, the exec's init is the sealed memfd, never Node's binary.
      expect(fs.readlinkSync(`/proc/${e.pid}/exe`)).toMatch(/^\/memfd:nsbox-init/);
      e.kill('SIGKILL');
      await e.wait();
      expect((await sh(c, 'cat /tmp/hits')).out).toBe('');
    } finally {
      delete process.env.NSBOX_HOST_SECRET;
    }
    expect(createHash('sha256').update(fs.readFileSync(process.execPath)).digest('hex')).toBe(node);
  });

  it('a /bin/sh replaced by "#!/proc/self/exe" runs nsbox-init again, which refuses; nothing is written', async () => {
    const c = await box('printf "#!/proc/self/exe\\n" > /bin/sh.new; chmod +x /bin/sh.new; mv /bin/sh.new /bin/sh');
    const before = snapshot();
    const e = c.exec({ command: ['/bin/sh', '-c', 'true'] });
    const status = await e.wait();
    expect(status.exitCode).toBe(125); // nsbox-init without its arguments
    // The memfd is sealed: opening it for writing from inside fails for every process.
    const w = await execOut(c, ['/bin/busybox', 'sh', '-c', 'for p in /proc/[0-9]*; do echo x 2>/dev/null > $p/exe && echo "wrote $p"; done; echo done']);
    expect(w.out).toBe('done\n');
    expect(snapshot()).toEqual(before);
  });
});

describe('nothing leaked', () => {
  it("exec racing a container's exit: it runs, or fails with NOT_RUNNING; nothing is left either way", async () => {
    const before = snapshot();
    const outcomes = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const c = Container.start({ root: { type: 'bind', path: ROOTFS, readonly: true }, command: ['sleep', '0.0' + (i % 10)], stdio: 'ignore' });
      for (let k = 0; k < 20 && c.running; k++) {
        try {
          const e = c.exec({ command: ['true'], stdio: 'ignore' });
          const s = await e.wait();
          outcomes.add(s.exitCode === 0 ? 'ran' : `killed ${s.signal}`);
        } catch (err) {
          expect(err).toBeInstanceOf(NsboxError);
          expect((err as NsboxError).code).toBe('NOT_RUNNING');
          outcomes.add('NOT_RUNNING');
        }
      }
      await c.wait();
    }
    expect(outcomes.has('ran')).toBe(true);
    expect(snapshot()).toEqual(before);
    expect(zombies()).toEqual([]);
  });

  it('after 30 execs, failed ones among them: no fd, child, zombie or mount left; the container has only its own processes', async () => {
    const c = await box();
    await sh(c, 'true'); // the first exec makes the spawner thread for this cgroup
    const before = snapshot();
    for (let i = 0; i < 10; i++) {
      expect((await sh(c, `exit ${i}`)).exitCode).toBe(i);
      expect(() => c.exec({ command: ['nope'] })).toThrow(NsboxError);
      const t = c.exec({ command: ['sh'], tty: true });
      t.terminal!.write('exit 3\n');
      expect(await t.wait()).toMatchObject({ exitCode: 3 });
    }
    expect(snapshot()).toEqual(before);
    expect(zombies()).toEqual([]);
    expect(await processesOf(c)).toEqual(['nsbox-init', 'nsbox-init', 'sleep']); // PID 1, this exec's own, sleep
  });
});
