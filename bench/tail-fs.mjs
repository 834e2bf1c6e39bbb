#!/usr/bin/env node
// Whether the removal's tail on this machine's disk is ext4's `discard` (issue 14 goal 2):
// `--rm` starts of /bin/true with the state directory on the disk itself, on two ext4 file
// systems made for the bench on loop devices (image files on that disk, no journal as the
// disk's, one mounted with `discard` and one without) and on a tmpfs, interleaved start by
// start. Each start is cut at its exit: run() + the command, and exit → wait() (the removal).
//
//   node bench/tail-fs.mjs [RUNS]
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';

import { CACHE, REPO } from './lib/setup.mjs';
import { summarize } from './lib/stats.mjs';

const runs = Number(process.argv[2] ?? 200);
const require = createRequire(import.meta.url);
const { Runtime } = require(path.join(REPO, 'dist', 'index.js'));
const now = () => Number(process.hrtime.bigint()) / 1e6;
const base = path.join(CACHE, `tail-fs-${process.pid}`);
fs.mkdirSync(base, { recursive: true, mode: 0o700 });
const mounts = [];
const loops = [];
function mountFs(name, kind, opts) {
  const dir = path.join(base, name);
  fs.mkdirSync(dir);
  if (kind === 'tmpfs') {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=1g', 'nsbox-tail-fs', dir]);
  } else {
    const img = path.join(base, `${name}.img`);
    execFileSync('truncate', ['-s', '1G', img]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', img]);
    const dev = execFileSync('losetup', ['--find', '--show', img], { encoding: 'utf8' }).trim();
    loops.push(dev);
    execFileSync('mount', ['-t', 'ext4', '-o', opts, dev, dir]);
  }
  mounts.push(dir);
  return dir;
}
const variants = {
  'the disk (ext4, no journal, discard)': path.join(base, 'disk'),
  'ext4 on a loop device, no journal, discard': mountFs('loop-discard', 'ext4', 'discard'),
  'ext4 on a loop device, no journal, nodiscard': mountFs('loop-nodiscard', 'ext4', 'nodiscard'),
  tmpfs: mountFs('tmpfs', 'tmpfs'),
};
const rts = Object.fromEntries(Object.entries(variants).map(([k, d]) => [k, new Runtime({ root: path.join(d, 'state') })]));
const samples = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
try {
  for (let i = -20; i < runs; i++) {
    for (const [k, rt] of Object.entries(rts)) {
      const t0 = now();
      const c = await rt.run({ image: 'busybox', command: ['/bin/true'], stdio: 'ignore', network: 'none', remove: true });
      let t1 = 0;
      c.once('exit', () => (t1 = now()));
      const st = await c.wait();
      const t2 = now();
      if (st.exitCode !== 0) throw new Error(`exit ${JSON.stringify(st)}`);
      if (i >= 0) samples[k].push({ total: t2 - t0, removal: t2 - t1 });
    }
  }
} finally {
  for (const m of mounts.reverse()) execFileSync('umount', ['-l', m]);
  for (const l of loops) execFileSync('losetup', ['-d', l]);
  fs.rmSync(base, { recursive: true, force: true });
}
console.log(
  `${runs} starts each, load ${os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
console.log('| state directory on | median | p99 | p99 / median | removal median | removal p99 |');
console.log('| --- | --: | --: | --: | --: | --: |');
for (const [k, xs] of Object.entries(samples)) {
  const t = summarize(xs.map((x) => x.total));
  const r = summarize(xs.map((x) => x.removal));
  console.log(`| ${k} | ${t.median.toFixed(2)} | ${t.p99.toFixed(2)} | ${(t.p99 / t.median).toFixed(2)} | ${r.median.toFixed(2)} | ${r.p99.toFixed(2)} |`);
}
