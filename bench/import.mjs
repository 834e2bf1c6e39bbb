#!/usr/bin/env node
// The import figure (issue 10): `Runtime.import` against GNU `tar -xf` of the same tarball,
// per file system, on fresh directories only.
//
//   node bench/import.mjs [SAMPLES] [--json] [--dist DIR]   # needs root (tmpfs mount) and dist/
//
// --dist: another build's dist/ (with its build/ beside it), to compare two versions.
//
// Why it is done this way: an earlier bench deleted each extraction right before the next
// one, on an ext4 mounted with `discard`; ext4 then scans the recently freed inodes when it
// allocates new ones, and the figure measured that scan, not the extractors. Here:
// - every sample (nsbox's or tar's) goes into a directory never used before, and nothing
//   is deleted until every sample of every file system is taken;
// - nsbox and tar alternate which goes first, sample by sample;
// - `sync` before each timed step, so neither pays for the other's dirty pages;
// - one untimed warm-up of each first (nsbox's code is compiled, tar's binary cached);
// - each pair waits (up to 15 s) for the machine to be quiet, as the rest of the bench does;
// - two file systems, reported apart: the disk the state directory is on (ext4 here) and a
//   tmpfs mounted for the bench (and unmounted after it).
// Images: the busybox image (the test fixture) and "usr-mix", a tarball of part of the
// host's /usr and /etc (GNU tar format, numeric owners): a few thousand files of mixed sizes,
// symlinks and hardlinks, about what a Debian minbase holds.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

import { quietGate } from './lib/measure.mjs';
import { busyboxRootfs, CACHE, REPO, sh } from './lib/setup.mjs';
import { summarize } from './lib/stats.mjs';

const USR_MIX_DIRS = ['etc', 'usr/sbin', 'usr/lib/python3.11', 'usr/share/zoneinfo', 'usr/lib/x86_64-linux-gnu/perl-base', 'usr/share/perl5'];

/** The usr-mix tarball (made once, cached in bench/.cache), or undefined when the host lacks those directories. */
export function usrMixTarball(log = () => {}) {
  const tar = path.join(CACHE, 'usr-mix.tar');
  if (fs.existsSync(tar)) return tar;
  const dirs = USR_MIX_DIRS.filter((d) => fs.existsSync(path.join('/', d)));
  if (dirs.length === 0) return undefined;
  log(`making ${path.relative(REPO, tar)} from the host's /${dirs.join(', /')}`);
  fs.mkdirSync(CACHE, { recursive: true });
  const r = sh('tar', ['--numeric-owner', '--ignore-failed-read', '-C', '/', '-cf', `${tar}.tmp`, ...dirs]);
  if (r.code > 1) throw new Error(`tar -cf usr-mix: ${r.stderr}`);
  fs.renameSync(`${tar}.tmp`, tar);
  return tar;
}

function timeTar(tarball, into) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('tar', ['-xf', tarball, '-C', into], { encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`tar -xf ${tarball}: ${r.stderr}`);
  return ms;
}

/**
 * Measures every image on every file system; returns
 * { [fs]: { [image]: { entries, tarBytes, import, tarExtract, ratio } } }.
 */
export async function importFigures({ samples = 7, log = () => {}, dist = path.join(REPO, 'dist') } = {}) {
  const require = createRequire(import.meta.url);
  const { Runtime } = require(path.join(dist, 'runtime.js'));
  const gate = quietGate();
  const images = [['busybox', busyboxRootfs(log).tar]];
  const mix = usrMixTarball(log);
  if (mix) images.push(['usr-mix', mix]);

  const base = path.join(CACHE, `import-${process.pid}`);
  const tmpfs = path.join(base, 'tmpfs');
  fs.mkdirSync(tmpfs, { recursive: true });
  const mounted = sh('mount', ['-t', 'tmpfs', '-o', 'size=4g,mode=0755', 'nsbench-import', tmpfs]).code === 0;
  const systems = [[`${sh('findmnt', ['-no', 'FSTYPE', '-T', base]).stdout.trim() || 'disk'} (state dir's disk)`, path.join(base, 'disk')]];
  if (mounted) systems.push(['tmpfs', path.join(tmpfs, 'work')]);
  else log('import: could not mount a tmpfs; measured on the disk only');

  const out = {};
  try {
    for (const [fsName, dir] of systems) {
      fs.mkdirSync(dir, { recursive: true });
      const rt = new Runtime({ root: path.join(dir, 'state') });
      out[fsName] = {};
      let n = 0;
      const fresh = () => {
        const d = path.join(dir, `tar-${n++}`);
        fs.mkdirSync(d);
        return d;
      };
      for (const [name, tarball] of images) {
        log(`import: ${name} on ${fsName}`);
        const entries = Number(sh('sh', ['-c', `tar -tf '${tarball}' | wc -l`]).stdout.trim());
        // Warm-up, untimed.
        await rt.import(tarball, `warm-${name}`);
        timeTar(tarball, fresh());
        const imp = [];
        const tarx = [];
        for (let k = 0; k < samples; k++) {
          await gate();
          const nsboxFirst = k % 2 === 0;
          for (const side of nsboxFirst ? ['nsbox', 'tar'] : ['tar', 'nsbox']) {
            if (side === 'tar') {
              const into = fresh();
              sh('sync');
              tarx.push(timeTar(tarball, into));
            } else {
              sh('sync');
              const t0 = process.hrtime.bigint();
              await rt.import(tarball, `${name}-${k}`);
              imp.push(Number(process.hrtime.bigint() - t0) / 1e6);
            }
          }
        }
        const i = summarize(imp);
        const t = summarize(tarx);
        out[fsName][name] = { entries, tarBytes: fs.statSync(tarball).size, import: i, tarExtract: t, ratio: i.median / t.median };
      }
    }
  } finally {
    // Deleted only now, all at once: no sample was taken after a deletion.
    if (mounted) sh('umount', [tmpfs]);
    fs.rmSync(base, { recursive: true, force: true });
  }
  return out;
}

/** A markdown table of importFigures' result. */
export function importTable(figures) {
  const ms = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + ' ms';
  const L = ['| file system | image | entries | tarball | nsbox import | tar -xf | ratio |', '|---|---|--:|--:|--:|--:|--:|'];
  for (const [fsName, imgs] of Object.entries(figures)) {
    for (const [name, r] of Object.entries(imgs)) {
      L.push(
        `| ${fsName} | ${name} | ${r.entries} | ${(r.tarBytes / 2 ** 20).toFixed(1)} MiB | ${ms(r.import.median)} | ${ms(r.tarExtract.median)} | ${r.ratio.toFixed(2)}× |`,
      );
    }
  }
  return L.join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  if (process.getuid?.() !== 0) {
    console.error('bench/import.mjs: needs root (a tmpfs is mounted for the bench)');
    process.exit(2);
  }
  const args = process.argv.slice(2);
  const samples = Number(args.find((a, i) => /^\d+$/.test(a) && args[i - 1] !== '--dist') ?? 7);
  const dist = args.includes('--dist') ? path.resolve(args[args.indexOf('--dist') + 1]) : undefined;
  const figures = await importFigures({ samples, log: (...a) => console.error('[import]', ...a), ...(dist ? { dist } : {}) });
  if (args.includes('--json')) console.log(JSON.stringify(figures));
  else console.log(importTable(figures));
}
