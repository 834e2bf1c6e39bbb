#!/usr/bin/env node
// The scale of one supervisor (issue 14, goal 7): start latency and the supervisor's RSS and
// fds as live containers pile up to N (default 1000) in one Node process; then how long
// listing takes (`rt.list({ all: true })` in process, and `nsbox ps -a` as a command) with M
// containers (default 10,000) in the state directory.
//
//   node bench/scale.mjs [N] [M]        # results: bench/results/scale-<date>.json
//
// The M records are copies of one real exited container's directory under fresh ids (making
// 10,000 real ones would measure starts, not listing); each copy is a valid record that ps
// reads, checks and shows like any other.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';

import { REPO } from './lib/setup.mjs';
import { median, summarize } from './lib/stats.mjs';

const N = Number(process.argv[2] ?? 1000);
const M = Number(process.argv[3] ?? 10_000);
const require = createRequire(import.meta.url);
const { Runtime } = require(path.join(REPO, 'dist', 'index.js'));
const now = () => Number(process.hrtime.bigint()) / 1e6;
const rssMiB = () => Math.round(process.memoryUsage().rss / 1024 / 102.4) / 10;
const fdCount = () => fs.readdirSync('/proc/self/fd').length;
const log = (s) => process.stderr.write(`${s}\n`);

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-scale-'));
const rt = new Runtime({ root: path.join(base, 'root') });
const result = { date: new Date().toISOString(), host: os.hostname(), cpus: os.cpus().length, live: {}, list: {} };

try {
  // --- live containers ----------------------------------------------------------------------
  const live = [];
  const marks = new Set([1, 100, 250, 500, 750, N]);
  const window = [];
  const startRss = rssMiB();
  log(`starting ${N} containers (busybox sleep) in one process; rss ${startRss} MiB`);
  for (let i = 1; i <= N; i++) {
    const t = now();
    const c = await rt.run({ image: 'busybox', command: ['sleep', '3600'], stdio: 'ignore', network: 'none', remove: true });
    window.push(now() - t);
    live.push(c);
    if (marks.has(i)) {
      const s = summarize(window.splice(0));
      result.live[i] = { startMs: { median: s.median, p90: s.p90, p99: s.p99 }, rssMiB: rssMiB(), fds: fdCount() };
      log(`${i} live: start median ${s.median.toFixed(2)} ms (p90 ${s.p90.toFixed(2)}), rss ${rssMiB()} MiB, ${fdCount()} fds`);
    }
  }
  result.live.rssPerContainerKiB = Math.round(((rssMiB() - startRss) * 1024) / N);
  let t = now();
  for (const c of live) c.kill('SIGKILL');
  await Promise.all(live.map((c) => c.wait()));
  result.live.teardownMs = Math.round(now() - t);
  log(`all ${N} killed and removed in ${result.live.teardownMs} ms`);

  // --- listing with M containers in the state directory ------------------------------------
  const one = await rt.run({ image: 'busybox', command: ['true'], stdio: 'ignore' });
  await one.wait();
  const containers = path.join(base, 'root', 'containers');
  const src = path.join(containers, one.id);
  const record = JSON.parse(fs.readFileSync(path.join(src, 'container.json'), 'utf8'));
  log(`making ${M} exited containers' records`);
  for (let i = 0; i < M; i++) {
    const id = (BigInt(0x100000000000) + BigInt(i)).toString(16).slice(-12);
    const dir = path.join(containers, id);
    fs.mkdirSync(dir, { mode: 0o700 });
    fs.writeFileSync(path.join(dir, 'container.json'), JSON.stringify({ ...record, id, name: null }), { mode: 0o600 });
  }
  const inproc = [];
  for (let i = 0; i < 5; i++) {
    t = now();
    const n = rt.list({ all: true }).length;
    inproc.push(now() - t);
    if (n !== M + 1) throw new Error(`list saw ${n} containers, not ${M + 1}`);
  }
  const cli = [];
  for (let i = 0; i < 5; i++) {
    t = now();
    execFileSync(process.execPath, [path.join(REPO, 'dist', 'cli', 'main.js'), '--root', path.join(base, 'root'), 'ps', '-a', '-q'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    cli.push(now() - t);
  }
  result.list = { containers: M + 1, inProcessMs: Math.round(median(inproc)), cliMs: Math.round(median(cli)) };
  log(`list of ${M + 1}: in process ${result.list.inProcessMs} ms, nsbox ps -a ${result.list.cliMs} ms (medians of 5)`);
} finally {
  fs.rmSync(base, { recursive: true, force: true });
}

const out = path.join(REPO, 'bench', 'results', `scale-${result.date.slice(0, 10)}.json`);
fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
log(`written: ${path.relative(REPO, out)}`);
