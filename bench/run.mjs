#!/usr/bin/env node
// nsbox benchmarks (issue 6): start latency, CLI, throughput, supervisor cost, growth and
// images, side by side with crun, runc, bubblewrap, unshare and a C floor, in one run.
//
//   npm run bench                      # the full run, 4-5 minutes on a quiet 2-core machine
//   npm run bench -- --quick           # a smoke run, about a minute (or NSBOX_BENCH_QUICK=1),
//                                      # results and report in bench/.cache/quick
//   npm run bench -- --only 1,2,4      # some measurements only (numbers as in the issue),
//                                      # results and report in bench/.cache/only-124
//   npm run bench -- --wait-quiet 30   # first wait (up to 30 min) for 10 quiet seconds in a row
//   node bench/lib/report.mjs FILE     # regenerate REPORT.md and the SVG from a results file
//
// Needs root, a built tree (npm run build) and a C compiler. Missing peers are skipped with
// the line that installs them. Writes bench/results/<date>.json, bench/REPORT.md and
// bench/start-latency.svg; raw samples go to bench/.cache/raw-<date>.json (not committed).
import * as fs from 'node:fs';
import * as path from 'node:path';

import { measureExec } from './lib/exec.mjs';
import { cpuBusy, floor, loop, MeasureError, quietGate, timeOnce, worker } from './lib/measure.mjs';
import { importFigures } from './import.mjs';
import { floorCgroup, nsboxInitArgs, removeFloorCgroup } from './lib/init-argv.mjs';
import { writeReport } from './lib/report.mjs';
import { BENCH, BENCH_LIMITS, CACHE, REPO, busyboxRootfs, compileHelpers, debianRootfs, detectPeers, machine, ociBundles, sh, which } from './lib/setup.mjs';
import { summarize } from './lib/stats.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick') || process.env.NSBOX_BENCH_QUICK === '1';
const onlyArg = argv.includes('--only') ? argv[argv.indexOf('--only') + 1] : process.env.NSBOX_BENCH_ONLY;
const only = new Set((onlyArg ?? '1,2,3,4,5,6,7,8').split(',').map(Number));
const want = (m) => only.has(m);
const waitQuietMin = argv.includes('--wait-quiet') ? Number(argv[argv.indexOf('--wait-quiet') + 1] ?? 30) : 0;

// Run counts: the in-process start gets >= 300 measured runs (issue 6); slow peers fewer.
const N = quick
  ? { rounds: 1, inproc: 60, floor: 60, peer: 20, runc: 8, cli: 6, tput: 30, tputRepeat: 1, live: 30, growth: 30, heapMB: 1024, imgSmall: 2, imgLarge: 1 }
  : {
      rounds: 6,
      inproc: 75,
      floor: 75,
      peer: 50,
      runc: 20,
      cli: 15,
      tput: 100,
      tputRepeat: 3,
      live: 100,
      growth: 150,
      heapMB: 1024,
      imgSmall: 10,
      imgLarge: 3,
    };
// Per round; rounds interleave every series of measurements 1-3, so that a burst of load from
// elsewhere on a shared machine lands on all of them rather than on one.

const log = (...a) => console.log('[bench]', ...a);
const skipped = [];
const skip = (line) => {
  if (!skipped.includes(line)) skipped.push(line);
  console.log(`[bench] SKIP ${line}`);
};

// --- preflight -------------------------------------------------------------------------
if (process.getuid?.() !== 0) {
  console.error('bench: needs root (namespaces, mounts): sudo npm run bench');
  process.exit(2);
}
const dist = path.join(REPO, 'dist');
if (!fs.existsSync(path.join(dist, 'index.js'))) {
  console.error('bench: dist/ is missing: npm run build first');
  process.exit(2);
}
if (!which('cc')) {
  console.error('bench: needs a C compiler for the floor and the loop harness: apt-get install gcc');
  process.exit(2);
}

if (waitQuietMin > 0) {
  const until = Date.now() + waitQuietMin * 60000;
  let quietFor = 0;
  log(`waiting (up to ${waitQuietMin} min) for the machine to be quiet for 10 s`);
  while (quietFor < 10 && Date.now() < until) {
    quietFor = (await cpuBusy(1000)) <= 0.25 ? quietFor + 1 : 0;
  }
  log(quietFor >= 10 ? 'quiet: starting' : 'never quiet for 10 s: starting anyway');
}

const started = Date.now();
const date = new Date().toISOString().slice(0, 10);
fs.mkdirSync(CACHE, { recursive: true });
const bin = compileHelpers(log);
const busybox = busyboxRootfs(log);
const peers = detectPeers();
for (const p of Object.values(peers)) if (p.missing) skip(p.missing);
const bundles = peers.crun.path || peers.runc.path ? ociBundles(busybox.dir, peers.crun.path ? 'crun' : 'runc') : {};
// Leftovers of an interrupted run (state-PID, scratch-PID of a dead PID) go first.
for (const d of fs.readdirSync(CACHE)) {
  const m = /^(?:state|scratch|profile-state|tmpfs)-(\d+)$/.exec(d);
  if (m && !fs.existsSync(`/proc/${m[1]}`)) {
    if (d.startsWith('tmpfs-')) sh('umount', [path.join(CACHE, d)]);
    fs.rmSync(path.join(CACHE, d), { recursive: true, force: true });
  }
}
const stateRoot = path.join(CACHE, `state-${process.pid}`);
// Issue 14 goal 6: the same starts with the state directory on a tmpfs (nothing of a start on
// this machine's disk, which is mounted with `discard` here), mounted for this run only.
const tmpfsRoot = path.join(CACHE, `tmpfs-${process.pid}`);
let tmpfsState;
if (want(1) || want(4)) {
  fs.mkdirSync(tmpfsRoot, { recursive: true, mode: 0o700 });
  if (sh('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=2g', 'nsbench', tmpfsRoot]).code === 0) tmpfsState = path.join(tmpfsRoot, 'state');
  else skip('state dir on a tmpfs: mount -t tmpfs failed, rows skipped');
}
const scratch = path.join(CACHE, `scratch-${process.pid}`);
fs.mkdirSync(scratch, { recursive: true });
// The installed command (package.json bin): the bundle with its code cache; main.js is the
// same CLI loaded module by module, as a plain tsc build runs it.
const cli = path.join(dist, 'cli', 'start.js');
const cliPlain = path.join(dist, 'cli', 'main.js');
const workerBase = { dist, stateRoot, rootfs: busybox.dir };
const idBase = `nsbench-${process.pid}`;

const results = {
  date,
  quick,
  machine: machine(),
  peers: {},
  skipped,
  counts: N,
  start: {},
  cli: {},
  throughput: {},
  supervisor: {},
  growth: {},
  images: {},
  exec: {},
};
for (const [k, v] of Object.entries(peers)) results.peers[k] = v.version ?? 'missing';
const raw = {};

/** Adds samples (ms) to a series, and optionally CPU ms per run (mean over all runs kept). */
function addSeries(group, id, label, samples, extra = {}, cpu = undefined) {
  const key = `${group}.${id}`;
  raw[key] = (raw[key] ?? []).concat(samples);
  if (cpu) raw[`${key}.cpu`] = (raw[`${key}.cpu`] ?? []).concat(cpu);
  const all = raw[key];
  const cpuAll = raw[`${key}.cpu`];
  results[group][id] = {
    label,
    ...extra,
    ...summarize(all),
    pct: percentiles(all),
    ...(cpuAll ? { cpuMs: cpuAll.reduce((a, b) => a + b, 0) / cpuAll.length } : {}),
  };
}
const perRun = (r) => Array(r.samples.length).fill(r.cpuPerRun);
function percentiles(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.round((s.length - 1) * q))];
  return Object.fromEntries([0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 100].map((p) => [p, at(p / 100)]));
}

/** Runs one sample set, once the machine is quiet; a failure skips that series for the rest of the run. */
const broken = new Set();
const gate = quietGate();
const gates = [];
async function attempt(key, fn) {
  if (broken.has(key)) return undefined;
  const g = await gate();
  gates.push({ key, busy: Math.round(g.busy * 100) / 100, waitedMs: g.waitedMs });
  try {
    return await fn();
  } catch (e) {
    if (!(e instanceof MeasureError)) throw e;
    broken.add(key);
    skip(`${key}: failed, skipped: ${e.message}`);
    return undefined;
  }
}

/** crun/runc delete after a run: the ids are unique, and none may stay behind. */
function cleanupPeers() {
  for (const tool of ['crun', 'runc']) {
    if (!peers[tool].path) continue;
    const ids = sh(tool, ['list', '-q'])
      .stdout.split('\n')
      .filter((x) => x.startsWith(idBase));
    for (const id of ids) {
      sh('unshare', [
        '-m',
        'sh',
        '-c',
        'mount --make-rprivate / && { mountpoint -q /sys/fs/cgroup/unified && mount -t tmpfs none /sys/fs/cgroup/unified; } ; exec "$0" delete -f "$1"',
        tool,
        id,
      ]);
    }
  }
  const left = sh('find', ['/sys/fs/cgroup', '-maxdepth', '3', '-type', 'd', '-name', `${idBase}*`])
    .stdout.split('\n')
    .filter(Boolean);
  for (const d of left.reverse()) sh('rmdir', [d]);
}

// --- 1, 2, 3: start latency, peers and CLI, in interleaved rounds ----------------------
const crunId = (tag, r) => `${idBase}-${tag}-${r}`;
// nsbox's spelling of BENCH_LIMITS (crun's is in the "limits" bundle).
const LIMITS = { memory: BENCH_LIMITS.memory, pids: BENCH_LIMITS.pids, cpus: BENCH_LIMITS.cpus };
const inprocRuns = Math.ceil(N.inproc);
const cliOk = fs.existsSync(cli);
if (want(3) && !cliOk) skip(`nsbox CLI: ${path.relative(REPO, cli)} is missing (npm run build), CLI end to end skipped`);
let api;
// floor -F's nsbox-init and its options, and its cgroup directory: made once, after nsbox's
// rows (whether nsbox made a cgroup per start is known then).
let floorNsbox;
function floorInit() {
  try {
    floorNsbox ??= { ...nsboxInitArgs(REPO), cgroup: floorCgroup() };
  } catch (e) {
    throw new MeasureError(String(e.message ?? e));
  }
  return floorNsbox;
}

for (let round = 0; round < N.rounds && (want(1) || want(2) || want(3)); round++) {
  log(`round ${round + 1}/${N.rounds}: start latency`);
  if (want(1) || want(2)) {
    for (const [id, label, extra] of [
      ['nsbox', 'nsbox, in process (net ns, --rm counted)', { network: 'none', remove: 'counted' }],
      ['nsbox-hostnet', 'nsbox, in process, no net ns (--rm counted)', { network: 'host', remove: 'counted' }],
      ['nsbox-keep', 'nsbox, in process (net ns, --rm not counted)', { network: 'none', remove: 'separate' }],
      ['nsbox-bind', 'nsbox, in process, run --read-only: no write layer (as crun’s bundle)', { network: 'none', remove: 'counted', bindRoot: true }],
      // Limits (issue 11 item 8, issue 14 goal 5): the same start with memory + pids + cpu
      // limits, from a warm cgroup set and without one, back to back and 20 ms apart.
      ['nsbox-limits', 'nsbox, in process, memory + pids + cpu limits (net ns, --rm counted)', { network: 'none', remove: 'counted', limits: LIMITS }],
      [
        'nsbox-limits-cold',
        'nsbox, in process, the same limits, no warm cgroup sets (NSBOX_WARM_CGROUPS=0)',
        { network: 'none', remove: 'counted', limits: LIMITS, env: { NSBOX_WARM_CGROUPS: '0' } },
      ],
      ['nsbox-iso', 'nsbox, in process, 20 ms apart (net ns, --rm counted)', { network: 'none', remove: 'counted', gapMs: 20 }],
      // Issue 14 goals 2 and 6: the write layer on a tmpfs of its own (limits.disk), and the
      // whole state directory on a tmpfs.
      ['nsbox-layer-tmpfs', 'nsbox, in process, write layer on a tmpfs (limits.disk 64m, --rm counted)', { network: 'none', remove: 'counted', disk: '64m' }],
      ...(tmpfsState
        ? [
            [
              'nsbox-state-tmpfs',
              'nsbox, in process, state dir on a tmpfs (net ns, --rm counted)',
              { network: 'none', remove: 'counted', stateRoot: tmpfsState },
            ],
          ]
        : []),
      ['nsbox-limits-iso', 'nsbox, in process, memory + pids + cpu limits, 20 ms apart', { network: 'none', remove: 'counted', limits: LIMITS, gapMs: 20 }],
    ]) {
      const r = await attempt(`nsbox in-process ${id}`, () => worker({ ...workerBase, scenario: 'start', runs: inprocRuns, warmup: 20, ...extra }));
      if (!r) continue;
      if (!extra.bindRoot && !extra.limits && !extra.gapMs && !extra.disk && !extra.stateRoot) api = r.api;
      addSeries('start', id, label, r.samples, {}, perRun(r));
      addSeries('start', `${id}.started`, `${label}: run() resolved (after execve)`, r.started, { hidden: true });
      if (extra.remove === 'separate') addSeries('start', 'nsbox-remove', 'nsbox: remove() after exit', r.removal, { hidden: true });
    }
  }
  if (want(2)) {
    const f = await attempt('floor', () => floor(bin, busybox.dir, scratch, { n: N.floor }));
    if (f) {
      addSeries('start', 'floor', 'C floor (net ns, mkdir + cleanup counted)', f.total, {}, f.cpu);
      addSeries('start', 'floor-exit', 'C floor: clone..exit only', f.startExit, { hidden: true });
    }
    const fb = await attempt('floor -b', () => floor(bin, busybox.dir, scratch, { n: N.floor, bindRoot: true }));
    if (fb) addSeries('start', 'floor-bind', 'C floor, image bound as root, no write layer', fb.total, {}, fb.cpu);
    const fh = await attempt('floor -H', () => floor(bin, busybox.dir, scratch, { n: N.floor, hostNet: true }));
    if (fh) addSeries('start', 'floor-hostnet', 'C floor, no net ns', fh.total, {}, fh.cpu);
    const ff = await attempt('floor -f', () => floor(bin, busybox.dir, scratch, { n: N.floor, full: true }));
    if (ff)
      addSeries(
        'start',
        'floor-full',
        "C floor + nsbox's extra steps (devpts, shm, sysfs, nodes, masked and read-only paths, lo, hostname)",
        ff.total,
        {},
        ff.cpu,
      );
    // Issue 14 goal 3: the floor doing the same steps as nsbox (bench/floor.c, -F).
    const fsame = await attempt('floor -F', () => floor(bin, busybox.dir, scratch, { n: N.floor, nsboxInit: floorInit() }));
    if (fsame)
      addSeries(
        'start',
        'floor-same',
        "C floor doing nsbox's steps (its mounts, nsbox-init as PID 1: confinement, fork, exec; a cgroup, the report pipe, a pidfd)",
        fsame.total,
        {},
        fsame.cpu,
      );

    if (peers.crun.path && bundles.default) {
      const c = await attempt('crun', () =>
        loop(bin, ['crun', 'run', '--bundle', bundles.default, '{id}'], { n: N.peer, mountns: true, id: crunId('crun', round) }),
      );
      if (c) addSeries('start', 'crun', 'crun run (default config)', c.samples, {}, c.cpu);
      if (bundles.limits) {
        const cm = await attempt('crun limits', () =>
          loop(bin, ['crun', 'run', '--bundle', bundles.limits, '{id}'], { n: N.peer, mountns: true, id: crunId('crunm', round) }),
        );
        if (cm) addSeries('start', 'crun-limits', 'crun run, memory + pids + cpu limits in config.json', cm.samples, {}, cm.cpu);
      }
      const cl = await attempt('crun lean', () =>
        loop(bin, ['crun', '--cgroup-manager=disabled', 'run', '--bundle', bundles.lean, '{id}'], { n: N.peer, mountns: true, id: crunId('crunl', round) }),
      );
      if (cl) addSeries('start', 'crun-lean', 'crun run (no cgroups, no net ns)', cl.samples, {}, cl.cpu);
    }
    if (peers.runc.path && bundles.default) {
      const c = await attempt('runc', () =>
        loop(bin, ['runc', 'run', '--bundle', bundles.default, '{id}'], { n: N.runc, mountns: true, id: crunId('runc', round) }),
      );
      if (c) addSeries('start', 'runc', 'runc run (default config)', c.samples, {}, c.cpu);
    }
    cleanupPeers();
    if (peers.bwrap.path) {
      const c = await attempt('bwrap', () =>
        loop(bin, ['bwrap', '--unshare-all', '--bind', busybox.dir, '/', '--proc', '/proc', '--dev', '/dev', '/bin/true'], { n: N.peer }),
      );
      if (c) addSeries('start', 'bwrap', 'bwrap --unshare-all', c.samples, {}, c.cpu);
    }
    if (peers.unshare.path) {
      const c = await attempt('unshare', () => loop(bin, ['unshare', '-fCmpiun', `--root=${busybox.dir}`, '--mount-proc', '/bin/true'], { n: N.peer }));
      if (c) addSeries('start', 'unshare', 'unshare -fCmpiun --root --mount-proc', c.samples, {}, c.cpu);
    }
  }
  if (want(3)) {
    log(`round ${round + 1}/${N.rounds}: CLI end to end`);
    const n = await attempt('node -e 0', () => loop(bin, [process.execPath, '-e', '0'], { n: N.cli }));
    if (n) addSeries('cli', 'node', 'node -e 0', n.samples, {}, n.cpu);
    if (cliOk) {
      const c = await attempt('nsbox CLI', () => loop(bin, [process.execPath, cli, '--root', stateRoot, 'run', '--rm', 'busybox', 'true'], { n: N.cli }));
      if (c) addSeries('cli', 'nsbox', 'nsbox run --rm busybox true', c.samples, {}, c.cpu);
      const p = await attempt('nsbox CLI unbundled', () =>
        loop(bin, [process.execPath, cliPlain, '--root', stateRoot, 'run', '--rm', 'busybox', 'true'], { n: N.cli }),
      );
      if (p) addSeries('cli', 'nsbox-plain', 'nsbox run --rm busybox true (main.js, no bundle)', p.samples, {}, p.cpu);
      const h = await attempt('nsbox CLI --help', () => loop(bin, [process.execPath, cli, '--help'], { n: N.cli }));
      if (h) addSeries('cli', 'nsbox-help', 'nsbox --help (CLI load, no container)', h.samples, {}, h.cpu);
    }
    if (peers.crun.path && bundles.default) {
      const c = await attempt('crun (CLI)', () =>
        loop(bin, ['crun', 'run', '--bundle', bundles.default, '{id}'], { n: N.cli, mountns: true, id: crunId('crun3', round) }),
      );
      if (c) addSeries('cli', 'crun', 'crun run (default config)', c.samples, {}, c.cpu);
      cleanupPeers();
    }
  }
}
results.api = api;

// A second opinion on the CLI numbers from hyperfine (its own harness and statistics).
if (want(3) && cliOk && peers.hyperfine.path && !broken.has('nsbox CLI')) {
  const out = path.join(scratch, 'hyperfine.json');
  const r = sh('hyperfine', [
    '-N',
    '-w',
    '3',
    '-r',
    quick ? '5' : '20',
    '--export-json',
    out,
    '-n',
    'node -e 0',
    `${process.execPath} -e 0`,
    '-n',
    'nsbox run --rm busybox true',
    `${process.execPath} ${cli} --root ${stateRoot} run --rm busybox true`,
  ]);
  if (r.code === 0) {
    results.cli.hyperfine = JSON.parse(fs.readFileSync(out, 'utf8')).results.map((x) => ({
      command: x.command,
      mean: x.mean * 1e3,
      stddev: x.stddev * 1e3,
      median: x.median * 1e3,
      runs: x.times.length,
    }));
  } else skip(`hyperfine cross-check failed: ${r.stderr.trim().split('\n')[0]}`);
}

// --- 4: throughput -----------------------------------------------------------------------
if (want(4)) {
  log('throughput');
  // Issue 14 goal 1: nsbox's curve with N in flight, the state dir on the disk and on a
  // tmpfs, and how long the event loop was held meanwhile (monitorEventLoopDelay, 1 ms timer).
  for (const [where, root] of [['disk', stateRoot], ...(tmpfsState ? [['tmpfs', tmpfsState]] : [])]) {
    for (const inflight of [1, 2, 4, 8, 10, 16, 32]) {
      const r = await attempt(`nsbox throughput ${inflight} in flight (${where})`, () =>
        worker({ ...workerBase, stateRoot: root, scenario: 'throughput', count: N.tput, inflight, repeat: N.tputRepeat, warmup: 10 }),
      );
      if (r) results.throughput[`nsbox.curve.${where}.${inflight}`] = { ...rate(r.walls, N.tput), inflight, where, loopDelay: r.loopDelay };
    }
  }
  for (const inflight of [1, 10]) {
    const key = inflight === 1 ? 'sequential' : 'inflight10';
    const r = await attempt(`nsbox throughput ${key}`, () =>
      worker({ ...workerBase, scenario: 'throughput', count: N.tput, inflight, repeat: N.tputRepeat, warmup: 10 }),
    );
    if (r) results.throughput[`nsbox.${key}`] = rate(r.walls, N.tput);
    const peersLoop = [];
    if (peers.crun.path && bundles.default) peersLoop.push(['crun', ['crun', 'run', '--bundle', bundles.default, '{id}'], true]);
    if (peers.bwrap.path)
      peersLoop.push(['bwrap', ['bwrap', '--unshare-all', '--bind', busybox.dir, '/', '--proc', '/proc', '--dev', '/dev', '/bin/true'], false]);
    for (const [name, cmd, mountns] of peersLoop) {
      const walls = [];
      for (let k = 0; k < N.tputRepeat; k++) {
        const x = await attempt(`${name} throughput ${key}`, () =>
          loop(bin, cmd, { n: N.tput, warmup: inflight, inflight, mountns, id: `${idBase}-t${inflight}-${k}` }),
        );
        if (x) walls.push(x.wall ?? x.samples.reduce((a, b) => a + b, 0));
      }
      if (walls.length) results.throughput[`${name}.${key}`] = rate(walls, N.tput);
      cleanupPeers();
    }
  }
}
function rate(walls, count) {
  const s = summarize(walls);
  return { count, walls, wallMedian: s.median, perSecond: count / (s.median / 1000) };
}

// --- 5: supervisor cost ------------------------------------------------------------------
if (want(5)) {
  log('supervisor cost');
  for (const kind of ['nsbox', 'child_process']) {
    const per = [];
    for (let k = 0; k < (quick ? 1 : 3); k++) {
      const r = await attempt(`supervisor ${kind}`, () => worker({ ...workerBase, scenario: 'supervisor', kind, count: N.live }));
      if (!r) break;
      per.push({
        rssKiB: (r.during.rssKiB - r.before.rssKiB) / N.live,
        fds: (r.during.fds - r.before.fds) / N.live,
        heapKiB: (r.during.heapUsedKiB - r.before.heapUsedKiB) / N.live,
        leakedFds: r.after.fds - r.before.fds,
        before: r.before,
        during: r.during,
        after: r.after,
      });
    }
    if (per.length) {
      const med = (k) => summarize(per.map((p) => p[k])).median;
      results.supervisor[kind] = {
        count: N.live,
        rssKiBPer: med('rssKiB'),
        fdsPer: med('fds'),
        heapKiBPer: med('heapKiB'),
        leakedFds: Math.max(...per.map((p) => p.leakedFds)),
        repeats: per,
      };
    }
  }
}

// --- 6: growth: page-table copy (fork-style) vs CLONE_VM|CLONE_VFORK ---------------------
if (want(6)) {
  for (const [id, label, extra, flags] of [
    ['vfork', 'CLONE_VM|CLONE_VFORK (default), small heap', {}, []],
    // Fork-style clone is no option of the API: src/container.ts reads it from the environment.
    ['fork', 'fork-style clone, small heap', { env: { NSBOX_BENCH_FORK_STYLE: '1' } }, []],
    ['vfork-1g', `CLONE_VM|CLONE_VFORK, ${N.heapMB} MB live heap`, { heapMB: N.heapMB }, ['--max-old-space-size=4096']],
    ['fork-1g', `fork-style clone, ${N.heapMB} MB live heap`, { heapMB: N.heapMB, env: { NSBOX_BENCH_FORK_STYLE: '1' } }, ['--max-old-space-size=4096']],
    ['vfork-100', `CLONE_VM|CLONE_VFORK, ${N.live} containers running`, { background: N.live }, []],
  ]) {
    log(`growth: ${label}`);
    const r = await attempt(`growth ${id}`, () =>
      worker({ ...workerBase, scenario: 'start', runs: N.growth, warmup: 10, network: 'none', remove: 'counted', ...extra }, flags),
    );
    if (r) {
      addSeries('growth', id, label, r.samples, { rssKiB: r.memory.rssKiB }, perRun(r));
      addSeries('growth', `${id}.started`, `${label}: run() resolved`, r.started, { hidden: true });
    }
  }
}

// --- 7: images ---------------------------------------------------------------------------
if (want(7)) {
  const sets = [['busybox', busybox, N.imgSmall]];
  const deb = debianRootfs(log);
  if (deb.skipped) skip(`Debian minbase image: ${deb.skipped}`);
  else sets.push(['debian', deb, N.imgLarge]);
  for (const [name, img, repeat] of sets) {
    log(`images: ${name}`);
    const entry = { tarBytes: fs.statSync(img.tar).size, entries: Number(sh('sh', ['-c', `tar -tf '${img.tar}' | wc -l`]).stdout.trim()) };
    // Alternating, so that load from elsewhere falls on both sides alike. Import is measured
    // apart, on fresh directories and per file system (importRows below).
    const tarc = [];
    const com = [];
    for (let k = 0; k < repeat; k++) {
      await gate();
      const out = path.join(scratch, `tarc-${k}.tar`);
      // Each timed step starts with no dirty pages left by the one before (worker.mjs does the same).
      sh('sync');
      tarc.push(timeOnce('tar', ['-cf', out, '-C', img.dir, '.']));
      fs.rmSync(out, { force: true });
      const r = await attempt(`nsbox import/commit ${name}`, () =>
        worker({ ...workerBase, scenario: 'images', tarball: img.tar, repeat: 1, commit: true, scratch }),
      );
      if (r?.skipped) {
        skip(`images (${name}): ${r.skipped}`);
        break;
      }
      if (r) com.push(...r.commitMs);
    }
    entry.tarCreate = summarize(tarc);
    if (com.length) entry.commit = summarize(com);
    results.images[name] = entry;
  }
  await importRows();
}

/** Import against tar -xf, per file system, on fresh directories (bench/import.mjs says why). */
async function importRows() {
  log('images: import, per file system');
  await gate();
  try {
    results.imports = await importFigures({ samples: quick ? 3 : 9, log });
  } catch (e) {
    skip(`import figures: failed, skipped: ${e.message}`);
  }
}

// --- 8: exec into a running container, against crun exec ------------------------------
if (want(8)) {
  log('exec');
  await attempt('exec', () =>
    measureExec({
      bin,
      dist,
      cli,
      rootfs: busybox.dir,
      stateRoot,
      crun: peers.crun.path,
      rounds: N.rounds,
      n: { inproc: N.inproc, peer: N.peer, cli: N.cli },
      log,
      skip,
      gate,
      add: (id, label, samples) => addSeries('exec', id, label, samples),
    }),
  );
}

// --- the end -----------------------------------------------------------------------------
cleanupPeers();
if (floorNsbox) removeFloorCgroup(floorNsbox.cgroup);
fs.rmSync(scratch, { recursive: true, force: true });
if (tmpfsState) sh('umount', [tmpfsRoot]);
if (fs.existsSync(tmpfsRoot)) fs.rmdirSync(tmpfsRoot);
// The state root holds containers' write layers only if something went wrong; images go too.
fs.rmSync(stateRoot, { recursive: true, force: true });
results.durationSeconds = Math.round((Date.now() - started) / 1000);
// How busy the machine was (from others) when each sample set started.
results.load = {
  sets: gates.length,
  startedBusy: gates.filter((g) => g.busy > 0.35).length,
  medianBusy: summarize(gates.map((g) => g.busy)).median,
  waitedSeconds: Math.round(gates.reduce((a, g) => a + g.waitedMs, 0) / 1000),
};

// A quick or partial run is a smoke test: its results and report stay in bench/.cache.
const partial = quick || only.size < 8;
const outDir = partial ? path.join(CACHE, quick ? 'quick' : `only-${[...only].join('')}`) : BENCH;
const resultsDir = partial ? outDir : path.join(BENCH, 'results');
fs.mkdirSync(resultsDir, { recursive: true });
const file = path.join(resultsDir, `${date}.json`);
fs.writeFileSync(file, `${JSON.stringify(results, roundNumbers, 1)}\n`);
fs.writeFileSync(path.join(CACHE, `raw-${date}${quick ? '-quick' : ''}.json`), JSON.stringify(raw));
writeReport(results, path.relative(outDir, file), outDir);
log(`wrote ${path.relative(REPO, file)}, ${path.relative(REPO, path.join(outDir, 'REPORT.md'))} and start-latency.svg (${results.durationSeconds} s)`);
if (skipped.length) log(`skipped:\n  ${skipped.join('\n  ')}`);

function roundNumbers(_k, v) {
  return typeof v === 'number' && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v;
}
