#!/usr/bin/env node
// Rootless start latency: nsbox run by an unprivileged user against `bwrap --unshare-all` run
// by the same user, in the same run, rounds interleaved (a shared machine's bursts of load
// land on both). Run as root (it makes the user and a world-readable copy of the package):
//   node bench/rootless.mjs [--rounds 5] [--n 60]
// nsbox: Container.start on an overlay of the busybox root (the same work as a rootless
// `run --rm`: user namespace, overlay with userxattr, /proc, /dev, /sys, pivot_root, nsbox-init,
// exec of /bin/true), timed in-process from the call until the command has been exec'd, and
// to the end of wait(). bwrap: hyperfine -N (no shell) on the whole process, fork to reap.
// Rootless twice: with the one-id map (NSBOX_ID_MAP=single: the child writes its own map) and,
// when the user has an /etc/subuid range and uidmap is installed, with that range
// (NSBOX_ID_MAP=subuid: no CLONE_VM, and newuidmap + newgidmap fork+exec'd by the spawner).
// Writes bench/results/rootless-<date>.json.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const REPO = path.join(path.dirname(new URL(import.meta.url).pathname), '..');
const USER = 'nsboxuser';
const arg = (name, dflt) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : dflt);
const rounds = arg('--rounds', 5);
const n = arg('--n', 60);

if (process.getuid() !== 0) {
  console.error('bench/rootless: run as root (it runs the measurements as the user nsboxuser)');
  process.exit(2);
}
for (const tool of ['bwrap', 'hyperfine']) {
  if (spawnSync(tool, ['--version']).status !== 0) {
    console.error(`bench/rootless: needs ${tool}: apt-get install ${tool === 'bwrap' ? 'bubblewrap' : tool}`);
    process.exit(2);
  }
}
if (spawnSync('id', [USER]).status !== 0) execFileSync('useradd', ['-m', USER]);
const uid = Number(execFileSync('id', ['-u', USER]));
const gid = Number(execFileSync('id', ['-g', USER]));

const base = fs.mkdtempSync('/tmp/nsbox-bench-rootless-');
try {
  fs.chmodSync(base, 0o755);
  const pkg = path.join(base, 'pkg');
  for (const p of ['dist', 'build/Release/nsbox.node', 'package.json', 'scripts/make-busybox-rootfs.sh']) {
    fs.cpSync(path.join(REPO, p), path.join(pkg, p), { recursive: true });
  }
  execFileSync('chmod', ['-R', 'a+rX', base]);
  const work = path.join(base, 'work');
  fs.mkdirSync(work);
  fs.chownSync(work, uid, gid);
  const asUser = (argv, opts = {}, env = ['NSBOX_ID_MAP=single']) =>
    execFileSync('runuser', ['-u', USER, '--', 'env', '-i', `PATH=${process.env.PATH}`, `HOME=${work}`, ...env, ...argv], {
      cwd: base,
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      ...opts,
    });
  const rootfs = path.join(work, 'busybox');
  asUser(['bash', path.join(pkg, 'scripts/make-busybox-rootfs.sh'), rootfs]);

  const worker = path.join(base, 'worker.mjs');
  fs.writeFileSync(
    worker,
    `
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as childProcess from 'node:child_process';
const require = createRequire(import.meta.url);
const { Container } = require(${JSON.stringify(path.join(pkg, 'dist/index.js'))});
const now = () => Number(process.hrtime.bigint()) / 1e6;
const [rootfs, dir, count] = [process.argv[2], process.argv[3], Number(process.argv[4])];
const start = [], whole = [];
for (let i = -5; i < count; i++) {
  const d = dir + '/' + process.pid + '-' + i;
  const [upper, w, target] = ['upper', 'work', 'merged'].map((x) => d + '/' + x);
  for (const x of [d, upper, w, target]) fs.mkdirSync(x);
  const t0 = now();
  const c = Container.start({ root: { type: 'overlay', lower: [rootfs], upper, work: w, target, volatile: true }, command: ['/bin/true'], stdio: 'ignore' });
  const t1 = now();
  const s = await c.wait();
  const t2 = now();
  if (s.exitCode !== 0) throw new Error('exit ' + s.exitCode);
  // overlay makes work/work (and volatile's work/incompat/...) mode 000: only root's
  // CAP_DAC_OVERRIDE walks into them unasked.
  childProcess.execFileSync('chmod', ['-R', 'u+rwx', w]);
  fs.rmSync(d, { recursive: true, force: true });
  if (i >= 0) { start.push(t1 - t0); whole.push(t2 - t0); }
}
console.log(JSON.stringify({ start, whole }));
`,
  );
  fs.chmodSync(worker, 0o644);
  const bwrap = `bwrap --unshare-all --bind ${rootfs} / --proc /proc --dev /dev /bin/true`;
  const series = { nsboxStart: [], nsboxWhole: [], bwrap: [], rootStart: [], subuidStart: [], subuidWhole: [] };
  // The range's row only where it can run (the user's entries and the helpers).
  const subuid =
    spawnSync(
      'runuser',
      ['-u', USER, '--', 'env', '-i', `PATH=${process.env.PATH}`, `HOME=${work}`, 'NSBOX_ID_MAP=subuid', 'node', worker, rootfs, work, '1'],
      { cwd: base },
    ).status === 0;
  // For scale: the same worker as root (no user namespace), on a root-owned copy of the root.
  const rootWork = path.join(base, 'root-work');
  fs.mkdirSync(rootWork);
  const rootRootfs = path.join(rootWork, 'busybox');
  fs.cpSync(rootfs, rootRootfs, { recursive: true, verbatimSymlinks: true });
  execFileSync('chown', ['-R', '0:0', rootRootfs]);
  const load = [];
  for (let r = 0; r < rounds; r++) {
    load.push(os.loadavg()[0]);
    const out = JSON.parse(
      asUser(['node', worker, rootfs, work, String(n)])
        .trim()
        .split('\n')
        .pop(),
    );
    series.nsboxStart.push(...out.start);
    series.nsboxWhole.push(...out.whole);
    const asRoot = JSON.parse(
      execFileSync('node', [worker, rootRootfs, rootWork, String(n)], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .pop(),
    );
    series.rootStart.push(...asRoot.start);
    if (subuid) {
      const out = JSON.parse(
        asUser(['node', worker, rootfs, work, String(n)], {}, ['NSBOX_ID_MAP=subuid'])
          .trim()
          .split('\n')
          .pop(),
      );
      series.subuidStart.push(...out.start);
      series.subuidWhole.push(...out.whole);
    }
    const json = path.join(work, `hf-${r}.json`);
    asUser(['hyperfine', '-N', '--warmup', '5', '--runs', String(n), '--export-json', json, bwrap], { stdio: ['ignore', 'ignore', 'inherit'] });
    series.bwrap.push(...JSON.parse(fs.readFileSync(json, 'utf8')).results[0].times.map((t) => t * 1000));
    console.log(`[rootless bench] round ${r + 1}/${rounds} done`);
  }
  const stat = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
    return { n: s.length, median: +q(0.5).toFixed(3), p10: +q(0.1).toFixed(3), p90: +q(0.9).toFixed(3) };
  };
  const result = {
    date: new Date().toISOString(),
    kernel: os.release(),
    cpus: os.cpus().length,
    loadavg1: load,
    user: USER,
    rounds,
    n,
    nsboxRootlessStart: stat(series.nsboxStart),
    nsboxRootlessWhole: stat(series.nsboxWhole),
    bwrapWhole: stat(series.bwrap),
    nsboxRootStart: stat(series.rootStart),
  };
  if (subuid) {
    result.nsboxSubuidStart = stat(series.subuidStart);
    result.nsboxSubuidWhole = stat(series.subuidWhole);
    result.ratioSubuidToSingleStart = +(result.nsboxSubuidStart.median / result.nsboxRootlessStart.median).toFixed(3);
    result.ratioSubuidToSingleWhole = +(result.nsboxSubuidWhole.median / result.nsboxRootlessWhole.median).toFixed(3);
  }
  result.ratioStartToBwrap = +(result.nsboxRootlessStart.median / result.bwrapWhole.median).toFixed(3);
  result.ratioWholeToBwrap = +(result.nsboxRootlessWhole.median / result.bwrapWhole.median).toFixed(3);
  const file = path.join(REPO, 'bench', 'results', `rootless-${result.date.slice(0, 10)}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(JSON.stringify(result, null, 2));
  console.log(`written ${path.relative(REPO, file)}`);
} finally {
  fs.rmSync(base, { recursive: true, force: true });
}
