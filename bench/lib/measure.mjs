// Ways of taking one sample set: a whole process in a loop (spawnloop), the C floor, and an
// in-process scenario in a fresh Node worker. All return milliseconds.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { BENCH, sh } from './setup.mjs';

/** Runs a command, collecting stdout; resolves { code, stdout, stderr }. */
function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', (e) => resolve({ code: 127, stdout, stderr: String(e) }));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export class MeasureError extends Error {}

/**
 * `argv` run `n` times after `warmup` by bench/.cache/bin/spawnloop; per-run latencies, and
 * the wall time when `inflight` > 1. `mountns`: in a private mount namespace (crun, runc).
 */
export async function loop(bin, argv, { n, warmup = 3, inflight = 1, mountns = false, id = 'nsbench' }) {
  const args = ['-n', String(n), '-w', String(warmup), '-j', String(inflight), '-i', id];
  if (mountns) args.push('-m');
  const r = await run(bin.spawnloop, [...args, '--', ...argv]);
  if (r.code !== 0) throw new MeasureError(`${argv.join(' ')}: ${r.stderr.trim().split('\n').slice(0, 6).join(' | ')}`);
  const lines = r.stdout.trim().split('\n');
  const wall = lines.find((l) => l.startsWith('wall '));
  const rows = lines.filter((l) => /^\d+ \d+$/.test(l)).map((l) => l.split(' ').map(Number));
  return {
    samples: rows.map((x) => x[0] / 1e6),
    cpu: rows.map((x) => x[1] / 1e3),
    wall: wall ? Number(wall.slice(5)) / 1e6 : undefined,
  };
}

/**
 * The C floor: per run, clone..exit and mkdir..cleanup-done. `nsboxInit`: `floor -F`, nsbox's
 * own process tree ({ init, options } from bench/lib/init-argv.mjs; `cgroup`: the directory
 * the per-run cgroups are made in).
 */
export async function floor(bin, rootfs, scratch, { n, warmup = 10, hostNet = false, full = false, bindRoot = false, nsboxInit = undefined }) {
  const args = ['-n', String(n), '-w', String(warmup)];
  if (nsboxInit) {
    args.unshift('-F', nsboxInit.init);
    if (nsboxInit.cgroup) args.unshift('-C', nsboxInit.cgroup);
  }
  if (bindRoot) args.push('-b');
  if (hostNet) args.push('-H');
  if (full) args.push('-f');
  const r = await run(bin.floor, [...args, rootfs, scratch, ...(nsboxInit ? nsboxInit.options : [])]);
  if (r.code !== 0) throw new MeasureError(`floor: ${r.stderr.trim()}`);
  const rows = r.stdout
    .trim()
    .split('\n')
    .map((l) => l.split(' ').map((x) => Number(x) / 1e6));
  return { startExit: rows.map((x) => x[0]), total: rows.map((x) => x[1]), cpu: rows.map((x) => x[2] * 1e3) };
}

/** One scenario of bench/lib/worker.mjs in a fresh Node process. */
export async function worker(config, nodeFlags = []) {
  const r = await run(process.execPath, ['--expose-gc', ...nodeFlags, path.join(BENCH, 'lib', 'worker.mjs'), JSON.stringify(config)]);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let out;
  try {
    out = JSON.parse(last);
  } catch {
    throw new MeasureError(`worker ${config.scenario}: exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 600)}`);
  }
  if (out.error) throw new MeasureError(`worker ${config.scenario}: ${out.error.split('\n').slice(0, 4).join(' | ')}`);
  return out;
}

/** Wall time of one command, in ms (images: tar -xf, tar -cf). */
export function timeOnce(cmd, args, opts) {
  const t0 = process.hrtime.bigint();
  const r = sh(cmd, args, opts);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.code !== 0) throw new MeasureError(`${cmd} ${args.join(' ')}: ${r.stderr.trim()}`);
  return ms;
}

/** The share of all CPU time that was busy over `ms` milliseconds (from /proc/stat). */
export async function cpuBusy(ms = 300) {
  const read = () => {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] ?? 0);
    return { idle, total: f.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  await new Promise((r) => setTimeout(r, ms));
  const b = read();
  return 1 - (b.idle - a.idle) / Math.max(1, b.total - a.total);
}

/**
 * Waits (within a budget for the whole run) until the machine is mostly idle, so that a
 * sample set does not start in the middle of someone else's build. Returns what it saw.
 */
export function quietGate({ threshold = 0.35, maxWaitMs = 15000, budgetMs = 120000 } = {}) {
  let spent = 0;
  return async function gate() {
    const t0 = Date.now();
    let busy = await cpuBusy();
    while (busy > threshold && Date.now() - t0 < maxWaitMs && spent + (Date.now() - t0) < budgetMs) {
      await new Promise((r) => setTimeout(r, 700));
      busy = await cpuBusy();
    }
    spent += Date.now() - t0;
    return { busy, waitedMs: Date.now() - t0 };
  };
}
