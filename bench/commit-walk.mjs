#!/usr/bin/env node
// Commit time, old build against new, in one run on the same machine: a stopped busybox
// container (the whole image walked, nothing copied) and one that wrote ~20,000 small files
// (all copied), each committed to an image and with -o to a tarball as well. Runs alternate
// between the builds; each figure is the median of RUNS commits.
//
//   node bench/commit-walk.mjs [RUNS] LABEL=PACKAGE_DIR ...
//   e.g. node bench/commit-walk.mjs 5 before=/tmp/fswalk-before after=.
//
// A PACKAGE_DIR holds dist/ and build/Release/nsbox.node (a copy of a built checkout).
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';

import { buildsFromArgs } from './lib/setup.mjs';
import { median } from './lib/stats.mjs';

const args = process.argv.slice(2);
const runs = Number(args.find((a) => /^\d+$/.test(a)) ?? 5);
const builds = buildsFromArgs(args);

const require = createRequire(import.meta.url);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const FILES = 'for d in $(seq 0 99); do mkdir /many$d; for f in $(seq 0 199); do echo "file $d $f" > /many$d/f$f; done; done';

async function prepare(build) {
  const { Runtime } = require(path.join(build.dir, 'dist', 'index.js'));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `nsbox-bench-commit-${build.label}-`));
  const rt = new Runtime({ root });
  const plain = await rt.run({ image: 'busybox', command: ['true'], stdio: 'ignore' });
  await plain.wait();
  const many = await rt.run({ image: 'busybox', command: ['sh', '-c', FILES], stdio: 'ignore' });
  if ((await many.wait()).exitCode !== 0) throw new Error('making the files failed');
  return { ...build, root, rt, cases: { busybox: plain, '20k files': many } };
}

const setups = [];
for (const b of builds) setups.push(await prepare(b));
const times = new Map();
let n = 0;
for (let i = 0; i < runs; i++) {
  for (const s of setups) {
    for (const [what, c] of Object.entries(s.cases)) {
      for (const withTar of [false, true]) {
        const key = `${s.label}\t${what}\t${withTar ? 'image + tarball' : 'image'}`;
        const name = `bench${n++}`;
        const tar = path.join(s.root, `${name}.tar`);
        const t0 = now();
        await c.commit(name, withTar ? { output: tar } : {});
        const ms = now() - t0;
        if (!times.has(key)) times.set(key, []);
        times.get(key).push(ms);
        await s.rt.removeImage(name);
        fs.rmSync(tar, { force: true });
      }
    }
  }
}
console.log('build\tcontainer\tcommit\tmedian ms\truns');
for (const [key, ms] of times) console.log(`${key}\t${median(ms).toFixed(1)}\t${ms.map((x) => x.toFixed(0)).join(' ')}`);
for (const s of setups) {
  for (const c of Object.values(s.cases)) await c.remove();
  fs.rmSync(s.root, { recursive: true, force: true });
}
