#!/usr/bin/env node
// Where an import's CPU goes, per thread (issue 10's split): `Runtime.import` of usr-mix into a
// tmpfs, N times, with each thread's CPU from /proc/self/task/*/schedstat before and after.
// Threads that end during the import (the import's SHA-256 thread) are no longer listed at
// the end: their CPU is the process's (process.cpuUsage) minus all the threads listed.
// Beside it, `tar -xf` of the same tarball (user + system CPU of the child) and the wall
// times of both, so a run says which of the threads is the longest, against tar's one.
//
//   node bench/import-cpu.mjs [IMPORTS=4] [--dist DIR]   # needs root (tmpfs mount)
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';

import { usrMixTarball } from './import.mjs';
import { CACHE, REPO, sh } from './lib/setup.mjs';

const args = process.argv.slice(2);
const imports = Number(args.find((a, i) => /^\d+$/.test(a) && args[i - 1] !== '--dist') ?? 4);
const dist = args.includes('--dist') ? path.resolve(args[args.indexOf('--dist') + 1]) : path.join(REPO, 'dist');
const { Runtime } = createRequire(import.meta.url)(path.join(dist, 'runtime.js'));

/** Nanoseconds of CPU per thread, by thread name (threads of one name summed). */
function threads() {
  const out = new Map();
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      const ns = Number(fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      const name = tid === String(process.pid) ? 'JS thread' : fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      out.set(`${name}#${tid}`, ns);
    } catch {
      // Ended meanwhile.
    }
  }
  return out;
}

const tarball = usrMixTarball();
const base = path.join(CACHE, `import-cpu-${process.pid}`);
fs.mkdirSync(base, { recursive: true });
if (sh('mount', ['-t', 'tmpfs', '-o', 'size=4g', 'nsbench-cpu', base]).code !== 0) throw new Error('mount tmpfs');
try {
  const rt = new Runtime({ root: path.join(base, 'state') });
  await rt.import(tarball, 'warm');
  const before = threads();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < imports; i++) await rt.import(tarball, `i${i}`);
  const wall = (performance.now() - t0) / imports;
  const cpu1 = process.cpuUsage(cpu0);
  const after = threads();
  const groups = new Map();
  let listed = 0;
  for (const [key, ns] of after) {
    const d = (ns - (before.get(key) ?? 0)) / 1e6 / imports;
    listed += d;
    const name = key
      .split('#')[0]
      .replace(/^V8 DefaultWorke.*$/, 'V8 helpers')
      .replace(/^node$/, 'libuv pool');
    groups.set(name, (groups.get(name) ?? 0) + d);
  }
  const total = (cpu1.user + cpu1.system) / 1e3 / imports;
  const tars = [];
  for (let i = 0; i < imports; i++) {
    const into = path.join(base, `tar-${i}`);
    fs.mkdirSync(into);
    const r = spawnSync('/usr/bin/time', ['-f', '%e %U %S', 'tar', '-xf', tarball, '-C', into], { encoding: 'utf8' });
    const [e, u, s] = r.stderr.trim().split('\n').at(-1).split(' ').map(Number);
    tars.push({ wall: e * 1e3, cpu: (u + s) * 1e3 });
  }
  const med = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const row = (name, ms) => console.log(`${name.padEnd(28)} ${ms.toFixed(1).padStart(7)} ms`);
  console.log(
    `usr-mix into a tmpfs, ${imports} imports, per import (load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}):`,
  );
  row('wall', wall);
  for (const [name, ms] of [...groups].sort((a, b) => b[1] - a[1])) if (ms >= 0.5) row(name, ms);
  row('threads ended (SHA-256)', Math.max(0, total - listed));
  row('total CPU', total);
  row('tar -xf wall (median)', med(tars.map((t) => t.wall)));
  row('tar -xf CPU (median)', med(tars.map((t) => t.cpu)));
} finally {
  sh('umount', [base]);
  fs.rmSync(base, { recursive: true, force: true });
}
