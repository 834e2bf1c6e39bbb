// nsbox-init as PID 1 (issue 9, items 3 and 4): the workload never reaches the supervisor's
// binary through /proc/self/exe, cannot change init's image, cannot outlive its supervisor
// even when it clears its own parent-death signal and hides in a session of its own; init
// forwards signals, reaps orphans and is not wedged by a workload that makes it its tracer.
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Container, type ProcessOptions } from '../src/container';
import { ROOTFS, collect, distModule, processEnded, run, until } from './helpers';

let work: string;
let probeDir: string;
const probe = () => ({ source: probeDir, target: '/probe', readonly: true });

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'nsbox-init-'));
  probeDir = path.join(work, 'probe');
  mkdirSync(probeDir);
  execFileSync('gcc', ['-static', '-O2', '-o', path.join(probeDir, 'hostile'), path.join(__dirname, 'probe/hostile.c')]);
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Host pids of `pid` and all its descendants. */
function tree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i]!;
    let tasks: string[] = [];
    try {
      tasks = execFileSync('ls', [`/proc/${p}/task`])
        .toString()
        .trim()
        .split('\n');
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        out.push(...readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
      } catch {
        // exited meanwhile
      }
    }
  }
  return out;
}

/**
 * A root filesystem in which the host's node would run if a path reached it: busybox, plus
 * node's shared libraries at their host paths.
 */
function imageWithNodeLibraries(name: string): string {
  const root = path.join(work, name);
  cpSync(ROOTFS, root, { recursive: true, verbatimSymlinks: true });
  const libs = execFileSync('ldd', [process.execPath])
    .toString()
    .matchAll(/(\/\S+) \(0x/g);
  for (const [, lib] of libs) {
    mkdirSync(path.join(root, path.dirname(lib!)), { recursive: true });
    copyFileSync(lib!, path.join(root, lib!));
  }
  return root;
}

describe('nsbox-init', () => {
  it('an image whose /bin/sh is /proc/self/exe does not run the host node (CVE-2019-5736 class)', async () => {
    const root = imageWithNodeLibraries('selfexe');
    rmSync(path.join(root, 'bin/sh'));
    symlinkSync('/proc/self/exe', path.join(root, 'bin/sh'));
    writeFileSync(path.join(root, 'evil'), '#!/proc/self/exe\nconsole.log("NODE RAN " + process.version)\n', { mode: 0o755 });
    // Control: node itself, bound into this image, runs there: the libraries are enough, so
    // the attack would print if it reached the host's binary.
    const nodeMount = { source: process.execPath, target: '/opt/node', readonly: true, file: true };
    const control = await run(['/opt/node', '-e', 'console.log("NODE RAN " + process.version)'], { root: { type: 'bind', path: root }, mounts: [nodeMount] });
    expect(control.out).toBe(`NODE RAN ${process.version}\n`);

    for (const command of [['/bin/sh', '-e', 'console.log("NODE RAN " + process.version)'], ['/evil']]) {
      const r = await run(command, { root: { type: 'bind', path: root } });
      expect(r.out + r.err).not.toContain('NODE RAN');
      // What /proc/self/exe reached is nsbox-init, which refuses arguments not its own.
      expect(r.exitCode).toBe(125);
    }
  });

  it("init's image cannot be read, traced or written from inside, even with SYS_PTRACE", async () => {
    const plain = await run(['sh', '-c', 'readlink /proc/1/exe; echo "readlink=$?"; cat /proc/1/exe >/dev/null; echo "cat=$?"']);
    expect(plain.out).toContain('readlink=1');
    expect(plain.out).toContain('cat=1');
    const traced = await run(
      [
        'sh',
        '-c',
        [
          'readlink /proc/1/exe',
          'echo x >> /proc/1/exe; echo "append=$?"',
          'dd if=/dev/zero of=/proc/1/exe bs=1 count=1 conv=notrunc 2>/dev/null; echo "dd=$?"',
        ].join('; '),
      ],
      { security: { capAdd: ['SYS_PTRACE'] } },
    );
    expect(traced.out).toMatch(/^\/memfd:nsbox-init \(deleted\)$/m);
    expect(traced.out).toMatch(/^append=[1-9]/m);
    expect(traced.out).toMatch(/^dd=[1-9]/m);
  });

  it('PID 1 cannot be killed or stopped from inside', async () => {
    const r = await run(['sh', '-c', 'kill -9 1; kill -STOP 1; sleep 0.2; grep ^State: /proc/1/status; echo alive']);
    expect(r.out).toMatch(/^State:\s+S \(sleeping\)\nalive\n$/);
    expect(r.exitCode).toBe(0);
    // What init has a use for, it forwards: SIGTERM reaches the command (sh, no handler).
    expect(await run(['sh', '-c', 'kill -TERM 1; sleep 5; echo not reached'])).toMatchObject({ exitCode: null, signal: 'SIGTERM', out: '' });
  });

  it('a workload that clears its parent-death signal and hides in its own session dies with a SIGKILLed supervisor', async () => {
    const script = `
      const { Container } = require(process.env.NSBOX_DIST);
      const c = Container.start({
        root: { type: 'bind', path: process.env.NSBOX_ROOTFS }, command: ['/probe/hostile', 'linger'],
        mounts: [{ source: process.env.PROBE, target: '/probe', readonly: true }], stdio: ['ignore', 'pipe', 'inherit'],
      });
      c.stdout.on('data', (d) => process.stdout.write(c.pid + ' ' + d));
      setInterval(() => {}, 1000);
    `;
    const env = { ...process.env, NSBOX_DIST: distModule('container'), NSBOX_ROOTFS: ROOTFS, PROBE: probeDir };
    const node = spawn(process.execPath, ['-e', script], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        node.stdout.once('data', (d: Buffer) => resolve(d.toString()));
        node.once('exit', () => reject(new Error('node exited before the container was ready')));
      });
      const init = Number(line.split(' ')[0]);
      expect(line).toMatch(/^\d+ ready 2 3\n$/);
      const pids = tree(init);
      expect(pids.length).toBe(3); // init, the workload, its grandchild in a session of its own
      // Its cgroup v2 directory, which a SIGKILLed supervisor leaves (empty; prune removes it once stale).
      const v2 = readFileSync(`/proc/${init}/cgroup`, 'utf8')
        .split('\n')
        .find((l) => l.startsWith('0::'))
        ?.slice(3);
      node.kill('SIGKILL');
      await until('every process of the container to be gone', () => pids.every(processEnded), 5000);
      if (v2 && v2 !== '/') {
        const dir = path.join('/sys/fs/cgroup/unified', v2);
        await until(`${dir} to be empty`, () => !existsSync(dir) || readFileSync(`${dir}/cgroup.procs`, 'utf8') === '');
        if (existsSync(dir)) rmdirSync(dir);
      }
    } finally {
      node.kill('SIGKILL');
    }
  });

  it('kill() with SIGTERM ends a command that has no handler for it', async () => {
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sleep', '100'], stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    expect(c.kill('SIGTERM')).toBe(true);
    expect(await c.wait()).toMatchObject({ exitCode: null, signal: 'SIGTERM' });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('reaps orphans: 100 of them leave no zombie', async () => {
    const r = await run(['/probe/hostile', 'orphans', '100'], { mounts: [probe()] });
    expect(r.out).toBe('zombies 0\n');
    expect(r.exitCode).toBe(0);
  });

  it('a command that makes init its tracer (PTRACE_TRACEME) does not wedge the container', async () => {
    const opts: Partial<ProcessOptions> = { mounts: [probe()], security: { capAdd: ['SYS_PTRACE'] } };
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['/probe/hostile', 'traceme'], ...opts });
    const out = collect(c.stdout);
    const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
    const status = await c.wait();
    clearTimeout(timer);
    expect(status).toMatchObject({ exitCode: 0, signal: null });
    expect(await out).toBe('continued\n');
  });
});
