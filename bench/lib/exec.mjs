// exec latency (issue 12, item 9): a command in a container that is already running, nsbox
// against `crun exec`, in the same run, interleaved round by round. Every series runs
// /bin/true in a busybox container that runs `sleep`:
//   nsbox-exec        Container.exec() of a container this process started (its own pidfd)
//   nsbox-rt-exec     Runtime.exec() of a container another process supervises (`nsbox run
//                     -d`): the record is read and the pid proven (pidfd, start time, pid ns)
//   nsbox-exec-cli    `nsbox exec NAME /bin/true`, a whole Node process
//   crun-exec         `crun exec ID /bin/true` into a running crun container (default config,
//                     read-only busybox root), a whole process, as the harness times crun run
// In-process series are timed from the call to wait() resolving (the command exec'd, exited
// and reaped, its streams closed); processes by bench/spawnloop.c from spawn to reaped exit.
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

import { loop } from './measure.mjs';
import { CACHE, sh } from './setup.mjs';

const now = () => Number(process.hrtime.bigint()) / 1e6;
const UNSHARE_CGROUP = 'mount --make-rprivate / && { mountpoint -q /sys/fs/cgroup/unified && mount -t tmpfs none /sys/fs/cgroup/unified; } ;';

/** A crun bundle running `sleep` on the busybox root (crun spec's defaults otherwise). */
function crunBundle(rootfs, dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const r = sh('crun', ['spec'], { cwd: dir });
  if (r.code !== 0) throw new Error(`crun spec: ${r.stderr}`);
  const file = path.join(dir, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  config.process.terminal = false;
  config.process.args = ['sleep', '3600'];
  config.root = { path: rootfs, readonly: true };
  config.hostname = 'bench';
  fs.writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
  return dir;
}

/**
 * Measures `rounds` rounds of each series; `add(id, label, samples)` receives them. `crun`
 * is crun's path or undefined (then its series is skipped through `skip`); `gate` is awaited
 * before each series (measure.mjs's quietGate).
 */
export async function measureExec({ bin, dist, cli, rootfs, stateRoot, crun, rounds, n, log, add, skip, gate = async () => {} }) {
  const require = createRequire(import.meta.url);
  const { Runtime } = require(path.join(dist, 'index.js'));
  const rt = new Runtime({ root: stateRoot });
  const name = `nsbench-exec-${process.pid}`;
  const own = await rt.run({ image: 'busybox', command: ['sleep', '3600'], stdio: 'ignore', remove: true });
  const detached = sh(process.execPath, [cli, '--root', stateRoot, 'run', '-d', '--name', name, 'busybox', 'sleep', '3600']);
  if (detached.code !== 0) throw new Error(`nsbox run -d: ${detached.stderr}`);
  const other = new Runtime({ root: stateRoot });
  const crunId = `nsbench-exec-${process.pid}`;
  let crunUp = false;
  if (crun) {
    const bundle = crunBundle(rootfs, path.join(CACHE, `exec-bundle-${process.pid}`));
    // No pipes: the detached container would hold them open, and this call wait for their end.
    const r = sh('unshare', ['-m', 'sh', '-c', `${UNSHARE_CGROUP} exec crun run --detach --bundle "$0" "$1"`, bundle, crunId], { stdio: 'ignore' });
    if (r.code === 0) crunUp = true;
    else skip(`crun exec: crun run --detach failed (status ${r.code})`);
  } else {
    skip('crun exec: crun is not installed (apt-get install crun)');
  }
  const inProcess = async (start) => {
    const samples = [];
    for (let i = 0; i < n.inproc + 5; i++) {
      const t0 = now();
      const e = start();
      const s = await e.wait();
      if (s.exitCode !== 0) throw new Error(`exec /bin/true: ${JSON.stringify(s)}`);
      if (i >= 5) samples.push(now() - t0);
    }
    return samples;
  };
  try {
    for (let round = 0; round < rounds; round++) {
      log(`exec round ${round + 1}/${rounds}`);
      // Each series starts on a machine as quiet as the gate can find (a shared machine).
      await gate();
      add('nsbox-exec', 'nsbox: Container.exec(), own container', await inProcess(() => own.exec({ command: ['/bin/true'], stdio: 'ignore' })));
      await gate();
      add(
        'nsbox-rt-exec',
        'nsbox: rt.exec() of a run -d container (record proven)',
        await inProcess(() => other.exec(name, { command: ['/bin/true'], stdio: 'ignore' })),
      );
      if (crunUp) {
        await gate();
        const c = await loop(bin, ['crun', 'exec', crunId, '/bin/true'], { n: n.peer, mountns: true });
        add('crun-exec', 'crun exec (default config)', c.samples);
      }
      await gate();
      const c = await loop(bin, [process.execPath, cli, '--root', stateRoot, 'exec', name, '/bin/true'], { n: n.cli });
      add('nsbox-exec-cli', 'nsbox exec NAME /bin/true (CLI, whole process)', c.samples);
    }
  } finally {
    own.kill('SIGKILL');
    await own.wait().catch(() => undefined);
    sh(process.execPath, [cli, '--root', stateRoot, 'rm', '-f', name]);
    if (crunUp) sh('unshare', ['-m', 'sh', '-c', `${UNSHARE_CGROUP} exec crun delete -f "$0"`, crunId]);
    fs.rmSync(path.join(CACHE, `exec-bundle-${process.pid}`), { recursive: true, force: true });
  }
}
