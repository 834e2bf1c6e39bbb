#!/usr/bin/env node
// Issue 14 goal 1, throughput across cores: what bounds it. For nsbox with 1 and 10 `--rm`
// starts of /bin/true in flight, and for `floor -F` (bench/floor.c doing nsbox's steps in C)
// as 1, 2 and 4 processes side by side, interleaved round by round: the rate, and the whole
// machine's CPU time per start (busy jiffies of /proc/stat over the measured loop only, every
// process and kernel thread counted: the container's processes and the kernel's namespace
// teardown are not the caller's CPU time) and the share of idle CPU. State and scratch on a
// tmpfs.
//
//   node bench/cpu-per-start.mjs [--rounds 3] [--starts 300]
//
// Writes bench/results/cpu-per-start-<date>.json and prints medians.
import { spawn, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';

import { floorCgroup, nsboxInitArgs, removeFloorCgroup } from './lib/init-argv.mjs';
import { BENCH, REPO, busyboxRootfs, compileHelpers } from './lib/setup.mjs';

const argv = process.argv.slice(2);
const opt = (k, d) => (argv.includes(k) ? Number(argv[argv.indexOf(k) + 1]) : d);
const rounds = opt('--rounds', 3);
const starts = opt('--starts', 300);
const log = (s) => process.stderr.write(`[cpu-per-start] ${s}\n`);
const hz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** Busy and idle jiffies of all CPUs (user nice system irq softirq steal; idle iowait). */
function cpuJiffies() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { busy: f[0] + f[1] + f[2] + f[5] + f[6] + f[7], idle: f[3] + f[4] };
}

/** Rate, CPU ms per start (whole machine) and idle share of `body`, which makes `n` starts. */
async function measured(n, body) {
  const j0 = cpuJiffies();
  const t0 = performance.now();
  await body();
  const wall = performance.now() - t0;
  const j1 = cpuJiffies();
  const busy = j1.busy - j0.busy;
  const idle = j1.idle - j0.idle;
  return { rate: (n / wall) * 1000, cpuMs: ((busy / hz) * 1000) / n, idle: idle / (busy + idle) };
}

const bin = compileHelpers(log);
const rootfs = busyboxRootfs(log).dir;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-cpu-per-start-'));
execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=2g', 'nsbox-cpu-per-start', tmp]);
const { Runtime } = createRequire(import.meta.url)(path.join(REPO, 'dist', 'index.js'));
const rt = new Runtime({ root: path.join(tmp, 'state') });
const opts = { image: 'busybox', command: ['true'], stdio: 'ignore', remove: true };
const one = async () => (await rt.run(opts)).wait();
for (let i = 0; i < 10; i++) await one(); // the image, the cgroup parents, warm code

let fInit;
/** `k` floors side by side, `per` starts each. */
const floorRun = (k, per) =>
  Promise.all(
    Array.from({ length: k }, (_, i) => {
      const scratch = path.join(tmp, `floor-${i}`);
      fs.mkdirSync(scratch, { recursive: true });
      const args = [...(fInit.cgroup ? ['-C', fInit.cgroup] : []), '-F', fInit.init, '-n', String(per), '-w', '0', rootfs, scratch, ...fInit.options];
      return new Promise((resolve, reject) => {
        const p = spawn(bin.floor, args, { stdio: ['ignore', 'ignore', 'inherit'] });
        p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`floor exited ${code}`))));
      });
    }),
  );

const floorRow = (k) => {
  const per = Math.round(starts / k);
  return measured(per * k, () => floorRun(k, per));
};

const rows = {};
const variants = [
  [
    'nsbox, 1 in flight',
    () =>
      measured(starts, async () => {
        for (let i = 0; i < starts; i++) await one();
      }),
  ],
  [
    'nsbox, 10 in flight',
    () =>
      measured(starts, async () => {
        let left = starts;
        const lane = async () => {
          while (left-- > 0) await one();
        };
        await Promise.all(Array.from({ length: 10 }, lane));
      }),
  ],
  ['floor -F, 1 process', () => floorRow(1)],
  ['floor -F, 2 processes', () => floorRow(2)],
  ['floor -F, 4 processes', () => floorRow(4)],
];
try {
  fInit = { ...nsboxInitArgs(REPO), cgroup: floorCgroup() };
  for (let r = 0; r < rounds; r++) {
    for (const [label, fn] of variants) {
      const x = await fn();
      (rows[label] ??= []).push(x);
      log(`round ${r + 1}/${rounds} ${label}: ${x.rate.toFixed(1)}/s, ${x.cpuMs.toFixed(2)} ms CPU per start, idle ${(100 * x.idle).toFixed(0)} %`);
    }
  }
} finally {
  removeFloorCgroup(fInit?.cgroup);
  execFileSync('umount', [tmp]);
  fs.rmdirSync(tmp);
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const base = { nsbox: median(rows['nsbox, 1 in flight'].map((x) => x.rate)), floor: median(rows['floor -F, 1 process'].map((x) => x.rate)) };
console.log(`| variant | starts/s | × alone | CPU ms per start (machine) | idle CPU |`);
console.log(`| --- | --: | --: | --: | --: |`);
for (const [label] of variants) {
  const rate = median(rows[label].map((x) => x.rate));
  const alone = label.startsWith('nsbox') ? base.nsbox : base.floor;
  const cpu = median(rows[label].map((x) => x.cpuMs));
  const idle = median(rows[label].map((x) => x.idle));
  console.log(`| ${label} | ${rate.toFixed(1)} | ${(rate / alone).toFixed(2)}× | ${cpu.toFixed(2)} | ${(100 * idle).toFixed(0)} % |`);
}
const out = path.join(BENCH, 'results', `cpu-per-start-${new Date().toISOString().slice(0, 10)}.json`);
fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), cpus: os.cpus().length, rounds, starts, rows }, null, 1));
log(`wrote ${path.relative(REPO, out)}`);
