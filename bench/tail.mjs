#!/usr/bin/env node
// Where the tail of the in-process start goes (issue 14 goal 2): `--rm` starts of /bin/true
// one after another, each cut in three: run() (the record, the layer's directories, the
// /etc files, the clone and the child's setup, the record's update), the container's run
// until its exit is seen, and from the exit to wait() (the streams, the cgroup, the lock, the
// tombstone rename, the write layer's removal). For the median start and the slowest 2 %,
// with the state dir on this machine's disk and on a tmpfs, and with the write layer on a
// tmpfs of its own (limits.disk), interleaved start by start.
//
//   node bench/tail.mjs [RUNS]        # per variant; prints a markdown table
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';

import { CACHE, REPO } from './lib/setup.mjs';
import { summarize } from './lib/stats.mjs';

const runs = Number(process.argv[2] ?? 400);
const require = createRequire(import.meta.url);
const { Runtime } = require(path.join(REPO, 'dist', 'index.js'));
const now = () => Number(process.hrtime.bigint()) / 1e6;

const diskRoot = path.join(CACHE, `tail-${process.pid}`);
const tmpfsMount = path.join(os.tmpdir(), `nsbox-tail-${process.pid}`);
fs.mkdirSync(diskRoot, { recursive: true, mode: 0o700 });
fs.mkdirSync(tmpfsMount, { mode: 0o700 });
execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=1g', 'nsbox-tail', tmpfsMount]);
const variants = {
  'state on disk': { rt: new Runtime({ root: path.join(diskRoot, 'state') }), limits: undefined },
  'state on disk, layer on tmpfs': { rt: new Runtime({ root: path.join(diskRoot, 'state') }), limits: { disk: '64m' } },
  'state on tmpfs': { rt: new Runtime({ root: path.join(tmpfsMount, 'state') }), limits: undefined },
  // No network namespace: none made, none for the kernel to tear down (cleanup_net).
  'state on tmpfs, host network': { rt: new Runtime({ root: path.join(tmpfsMount, 'state') }), limits: undefined, network: 'host' },
};
const samples = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));

try {
  for (let i = -20; i < runs; i++) {
    for (const [name, v] of Object.entries(variants)) {
      const t0 = now();
      const c = await v.rt.run({
        image: 'busybox',
        command: ['/bin/true'],
        stdio: 'ignore',
        network: v.network ?? 'none',
        remove: true,
        ...(v.limits ? { limits: v.limits } : {}),
      });
      const t1 = now();
      let t2 = 0;
      c.once('exit', () => (t2 = now()));
      const st = await c.wait();
      const t3 = now();
      if (st.exitCode !== 0) throw new Error(`exit ${JSON.stringify(st)}`);
      if (i >= 0) samples[name].push({ total: t3 - t0, run: t1 - t0, live: t2 - t1, removal: t3 - t2 });
    }
  }
} finally {
  execFileSync('umount', [tmpfsMount]);
  fs.rmdirSync(tmpfsMount);
  fs.rmSync(diskRoot, { recursive: true, force: true });
}

const med = (xs) => summarize(xs).median;
console.log(`| variant | median total | p99 total | p99 / median | run() median / slowest 2 % | running | exit → wait() (removal) |`);
console.log('| --- | --: | --: | --: | --: | --: | --: |');
const out = {};
for (const [name, xs] of Object.entries(samples)) {
  const totals = summarize(xs.map((x) => x.total));
  const sorted = [...xs].sort((a, b) => a.total - b.total);
  const slow = sorted.slice(Math.floor(sorted.length * 0.98));
  const mid = sorted.slice(Math.floor(sorted.length * 0.4), Math.ceil(sorted.length * 0.6));
  const part = (set, k) => med(set.map((x) => x[k])).toFixed(2);
  out[name] = {
    median: totals.median,
    p99: totals.p99,
    mid: { run: part(mid, 'run'), live: part(mid, 'live'), removal: part(mid, 'removal') },
    slow: { run: part(slow, 'run'), live: part(slow, 'live'), removal: part(slow, 'removal') },
  };
  console.log(
    `| ${name} | ${totals.median.toFixed(2)} | ${totals.p99.toFixed(2)} | ${(totals.p99 / totals.median).toFixed(2)} | ${part(mid, 'run')} / ${part(slow, 'run')} | ${part(mid, 'live')} / ${part(slow, 'live')} | ${part(mid, 'removal')} / ${part(slow, 'removal')} |`,
  );
}
fs.writeFileSync(
  path.join(REPO, 'bench', 'results', `tail-${new Date().toISOString().slice(0, 10)}.json`),
  `${JSON.stringify({ date: new Date().toISOString(), runs, load: os.loadavg(), variants: out }, null, 1)}\n`,
);
process.stderr.write(
  `load ${os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}\n`,
);
