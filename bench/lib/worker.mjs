// The in-process side of the bench: one scenario per Node process, so that a 1 GB heap or
// 100 live containers never leak into the next measurement. Run by bench/run.mjs as
//   node [--expose-gc] worker.mjs '<json config>'
// and answers with one JSON line on stdout. Latencies are in milliseconds.
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import * as childProcess from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const cfg = JSON.parse(process.argv[2]);
// Before nsbox is loaded: NSBOX_WARM_CGROUPS=0 and friends, per scenario.
for (const [k, v] of Object.entries(cfg.env ?? {})) process.env[k] = v;
const require = createRequire(import.meta.url);
const nsbox = require(cfg.dist);
const now = () => Number(process.hrtime.bigint()) / 1e6;

// Runtime from the package's index, or from dist/runtime.js while the index does not export
// it yet; the lower-level Container.start with bench-made overlay dirs when neither exists.
let Runtime = nsbox.Runtime;
if (!Runtime) {
  try {
    Runtime = require(path.join(cfg.dist, 'runtime.js')).Runtime;
  } catch {
    Runtime = undefined;
  }
}
const api = Runtime && !cfg.forceContainerApi ? 'runtime' : 'container';

/** A starter: start(options) -> a Container whose wait() resolves after its removal when asked. */
function makeStarter() {
  if (cfg.bindRoot) {
    // The same work as crun's default OCI bundle (readonly root): `run --read-only` binds the
    // image layer as a read-only root, with no write layer to make or remove.
    const rt = new Runtime({ root: cfg.stateRoot });
    return {
      rt,
      async start({ command = ['/bin/true'], network = 'none', remove = true }) {
        return rt.run({ image: 'busybox', command, stdio: 'ignore', network, remove, readOnly: true, ...(cfg.limits ? { limits: cfg.limits } : {}) });
      },
      async remove(c) {
        await c.remove();
      },
    };
  }
  if (api === 'runtime') {
    const rt = new Runtime({ root: cfg.stateRoot });
    return {
      rt,
      async start({ command = ['/bin/true'], network = 'none', remove = true }) {
        const limits = { ...(cfg.limits ?? {}), ...(cfg.disk ? { disk: cfg.disk } : {}) };
        const c = await rt.run({ image: 'busybox', command, stdio: 'ignore', network, remove, ...(Object.keys(limits).length ? { limits } : {}) });
        return c;
      },
      async remove(c) {
        await c.remove();
      },
    };
  }
  let n = 0;
  const base = path.join(cfg.stateRoot, 'bench-containers');
  fs.mkdirSync(base, { recursive: true });
  const dirs = new WeakMap();
  return {
    async start({ command = ['/bin/true'], network = 'none', remove = true }) {
      const dir = path.join(base, `${process.pid}-${n++}`);
      const [upper, work, target] = ['upper', 'work', 'merged'].map((d) => path.join(dir, d));
      fs.mkdirSync(dir);
      for (const d of [upper, work, target]) fs.mkdirSync(d);
      const c = nsbox.Container.start({
        root: { type: 'overlay', lower: [cfg.rootfs], upper, work, target },
        command,
        stdio: 'ignore',
        network,
      });
      dirs.set(c, dir);
      if (remove) {
        const wait = c.wait.bind(c);
        c.wait = async () => {
          const s = await wait();
          fs.rmSync(dir, { recursive: true, force: true });
          return s;
        };
      }
      return c;
    },
    async remove(c) {
      fs.rmSync(dirs.get(c), { recursive: true, force: true });
    },
  };
}

/** CPU ms of this process (all threads) and of the children it reaped (the containers). */
function cpuMs() {
  const u = process.cpuUsage();
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // cutime, cstime: fields 16 and 17 of stat, 14 and 15 after the command name; clock ticks.
  const ticks = Number(f[13]) + Number(f[14]);
  return (u.user + u.system) / 1000 + ticks * 10;
}

function gc() {
  if (global.gc) for (let i = 0; i < 3; i++) global.gc();
}

function memory() {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return {
    rssKiB: kb('VmRSS'),
    fds: fs.readdirSync('/proc/self/fd').length,
    heapUsedKiB: Math.round(process.memoryUsage().heapUsed / 1024),
    threads: kb('Threads'),
  };
}

/** Holds about `mb` MB of live V8 heap: arrays of unboxed doubles, 8 KiB each. */
function holdHeap(mb) {
  const chunks = [];
  for (let i = 0; i < mb * 128; i++) chunks.push(new Array(1024).fill(i + 0.5));
  return chunks;
}

async function startSleepers(starter, count) {
  const live = [];
  for (let i = 0; i < count; i++) live.push(await starter.start({ command: ['/bin/sleep', '1000'], remove: true }));
  return live;
}

async function stopSleepers(live) {
  for (const c of live) c.kill('SIGKILL');
  await Promise.all(live.map((c) => c.wait()));
}

async function checkExit(c, status) {
  if (status.exitCode !== 0) throw new Error(`container exited with ${JSON.stringify(status)}`);
}

// --- scenarios -------------------------------------------------------------------------

/**
 * Start latency: run() -> exit of /bin/true. `remove`: 'counted' (remove: true, wait()
 * resolves after the removal), 'separate' (remove: false, then remove() timed on its own).
 * `gapMs`: an idle pause before each start (not timed), as a service sees between requests:
 * kernel state a start leaves warm (an RCU grace period just passed, caches) has gone cold.
 */
async function start() {
  const starter = makeStarter();
  const ballast = cfg.heapMB ? holdHeap(cfg.heapMB) : null;
  const sleepers = cfg.background ? await startSleepers(starter, cfg.background) : [];
  gc();
  const mem = memory();
  const total = [];
  const started = [];
  const removal = [];
  const opts = { network: cfg.network ?? 'none' };
  let cpu0 = 0;
  for (let i = 0; i < cfg.warmup + cfg.runs; i++) {
    if (cfg.gapMs) await new Promise((r) => setTimeout(r, cfg.gapMs));
    if (i === cfg.warmup) cpu0 = cpuMs();
    const t0 = now();
    const c = await starter.start({ ...opts, remove: cfg.remove !== 'separate' });
    const t1 = now();
    const status = await c.wait();
    const t2 = now();
    let t3 = t2;
    if (cfg.remove === 'separate') {
      await starter.remove(c);
      t3 = now();
    }
    await checkExit(c, status);
    if (i < cfg.warmup) continue;
    started.push(t1 - t0);
    total.push(t2 - t0);
    if (cfg.remove === 'separate') removal.push(t3 - t2);
  }
  const cpuPerRun = (cpuMs() - cpu0) / cfg.runs;
  await stopSleepers(sleepers);
  void ballast?.length;
  return { api: cfg.bindRoot ? 'runtime --read-only' : api, samples: total, started, removal, memory: mem, cpuPerRun };
}

/** `count` containers, `inflight` at a time; wall time per repetition. */
async function throughput() {
  const starter = makeStarter();
  const one = async () => {
    const c = await starter.start({ network: 'none', remove: true });
    await checkExit(c, await c.wait());
  };
  for (let i = 0; i < cfg.warmup; i++) await one();
  const walls = [];
  // How long the event loop was kept from running (issue 14 goal 1): sampled every ms while
  // the containers start, in ms; p99 and max per repetition.
  const loopDelay = [];
  for (let r = 0; r < cfg.repeat; r++) {
    let next = 0;
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    const t0 = now();
    const lane = async () => {
      while (next < cfg.count) {
        next++;
        await one();
      }
    };
    await Promise.all(Array.from({ length: cfg.inflight }, lane));
    walls.push(now() - t0);
    h.disable();
    loopDelay.push({ p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6 });
  }
  return { api, walls, loopDelay };
}

/** RSS and fds of this process with `count` live containers (or child processes). */
async function supervisor() {
  const starter = makeStarter();
  const spawnChild = () => {
    const p = childProcess.spawn('/bin/sleep', ['1000'], { stdio: 'ignore' });
    return { kill: (s) => p.kill(s), wait: () => new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', r))) };
  };
  const startOne = cfg.kind === 'child_process' ? async () => spawnChild() : () => starter.start({ command: ['/bin/sleep', '1000'], remove: true });
  // Warm up both paths (and let the heap settle) before the baseline.
  for (let i = 0; i < 10; i++) {
    const c = await startOne();
    c.kill('SIGKILL');
    await c.wait();
  }
  await new Promise((r) => setTimeout(r, 50));
  gc();
  const before = memory();
  const live = [];
  for (let i = 0; i < cfg.count; i++) live.push(await startOne());
  await new Promise((r) => setTimeout(r, 50));
  gc();
  const during = memory();
  for (const c of live) c.kill('SIGKILL');
  await Promise.all(live.map((c) => c.wait()));
  await new Promise((r) => setTimeout(r, 50));
  gc();
  const after = memory();
  return { api, before, during, after };
}

/**
 * Import a tarball as an image, and commit a container of it, with the Runtime's API. A first
 * round is not timed: as for the start latency, a long-running supervisor's cost is measured,
 * not that of code V8 has not compiled yet.
 */
async function images() {
  if (api !== 'runtime') return { skipped: 'Runtime (import/commit) is not in dist yet' };
  const rt = new Runtime({ root: cfg.stateRoot });
  const importMs = [];
  const commitMs = [];
  // Dirty pages of earlier work (and the discards of deleted files) are written back first,
  // so that each timed step starts from the same clean page cache; tar gets the same.
  const sync = () => cfg.sync !== false && childProcess.execFileSync('sync');
  for (let r = -1; r < cfg.repeat; r++) {
    const name = `bench-${process.pid}-${r + 1}`;
    sync();
    const t0 = now();
    await rt.import(cfg.tarball, name);
    if (r >= 0) importMs.push(now() - t0);
    if (cfg.commit) {
      const c = await rt.run({ image: name, command: ['/bin/true'], stdio: 'ignore', remove: false });
      await c.wait();
      const out = path.join(cfg.scratch, `${name}-commit.tar`);
      sync();
      const t1 = now();
      await c.commit(`${name}-c`, { output: out });
      if (r >= 0) commitMs.push(now() - t1);
      fs.rmSync(out, { force: true });
      await c.remove();
      await rt.removeImage(`${name}-c`);
    }
    await rt.removeImage(name);
  }
  return { api, importMs, commitMs };
}

/** The event-loop delay of a Node process doing nothing, on this machine now: the floor under the throughput scenario's. */
async function idle() {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  await new Promise((r) => setTimeout(r, cfg.ms ?? 2000));
  h.disable();
  return { loopDelay: [{ p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6 }] };
}

const scenarios = { start, throughput, supervisor, images, idle };
try {
  const result = await scenarios[cfg.scenario]();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (e) {
  process.stdout.write(`${JSON.stringify({ error: String(e?.stack ?? e) })}\n`);
  process.exit(1);
}
