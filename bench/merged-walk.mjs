#!/usr/bin/env node
// The layer walk alone, old build against new, on tmpfs (no disk in the figures): a busybox
// rootfs as the image layer, and a write layer of ~20,000 small files over it, written out
// as a tarball and as a tree (shared files hard-linked, the rest copied). Runs alternate
// between builds; each figure is the median of RUNS.
//
//   node bench/merged-walk.mjs [RUNS] LABEL=PACKAGE_DIR ...   (PACKAGE_DIR as for commit-walk.mjs)
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

import { median } from './lib/stats.mjs';

const args = process.argv.slice(2);
const runs = Number(args.find((a) => /^\d+$/.test(a)) ?? 5);
const builds = args
  .filter((a) => a.includes('='))
  .map((a) => {
    const [label, dir] = a.split('=');
    return { label, dir: path.resolve(dir) };
  });
const require = createRequire(import.meta.url);
const now = () => Number(process.hrtime.bigint()) / 1e6;

const base = fs.mkdtempSync('/dev/shm/nsbox-bench-walk-');
const image = path.join(base, 'image');
execFileSync('bash', [path.join(builds[0].dir, 'scripts', 'make-busybox-rootfs.sh'), image], { stdio: 'ignore' });
const empty = path.join(base, 'empty');
fs.mkdirSync(empty);
const many = path.join(base, 'many');
for (let d = 0; d < 100; d++) {
  fs.mkdirSync(path.join(many, `many${d}`), { recursive: true });
  for (let f = 0; f < 200; f++) fs.writeFileSync(path.join(many, `many${d}`, `f${f}`), `file ${d} ${f}\n`);
}

// The old build took an isOpaque callback, the new one the driver: both are given.
const source = (upper) => ({ layers: [upper, image], driver: 'overlay', isOpaque: () => false, shared: [image] });
const times = new Map();
const record = (key, ms) => {
  if (!times.has(key)) times.set(key, []);
  times.get(key).push(ms);
};
let n = 0;
for (let i = 0; i < runs; i++) {
  for (const b of builds) {
    const { writeMergedTar } = require(path.join(b.dir, 'dist', 'image', 'merged-tar.js'));
    const { writeMergedTree } = require(path.join(b.dir, 'dist', 'image', 'merged-tree.js'));
    for (const [what, upper] of [
      ['busybox', empty],
      ['20k files', many],
    ]) {
      const tar = path.join(base, `out${n}.tar`);
      let t0 = now();
      await writeMergedTar(source(upper), tar);
      record(`${b.label}\t${what}\ttarball`, now() - t0);
      const tree = path.join(base, `tree${n++}`);
      fs.mkdirSync(tree);
      t0 = now();
      await writeMergedTree(source(upper), tree);
      record(`${b.label}\t${what}\ttree`, now() - t0);
      fs.rmSync(tar);
      execFileSync('rm', ['-rf', tree]);
    }
  }
}
console.log('build\twrite layer\toutput\tmedian ms\truns');
for (const [key, ms] of times) console.log(`${key}\t${median(ms).toFixed(1)}\t${ms.map((x) => x.toFixed(0)).join(' ')}`);
execFileSync('rm', ['-rf', base]);
