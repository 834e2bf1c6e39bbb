// Run by test/workers.test.ts in a node process of its own: N workers each start an nsbox
// operation and are terminated in the middle of it (or end by an uncaught exception), at
// several timings; then this main thread reports what the workers left in it and on the host.
// Env: NSBOX_DIST (dist/), ROOT (state dir), ATTACK, N, TAG (4 hex digits), TARBALL, TRACK_FDS.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { Worker } = require('node:worker_threads');

const { NSBOX_DIST: DIST, ROOT, ATTACK, TAG, TARBALL } = process.env;
const N = Number(process.env.N);
const trackUnmanagedFds = process.env.TRACK_FDS !== '0';
const HOST = path.join(path.dirname(ROOT), 'host-src');

const fds = () =>
  fs
    .readdirSync('/proc/self/fd')
    .map((f) => {
      try {
        return `${f} -> ${fs.readlinkSync(`/proc/self/fd/${f}`)}`;
      } catch {
        return null; // readdir's own
      }
    })
    .filter(Boolean)
    .sort();

// In the worker: container ids made by this worker are `<TAG><worker, 2 hex><n, 2 hex>beef`, so
// that the host can be searched for whatever is left of them, and nothing else.
const WORKER = `
const { parentPort, workerData: d } = require('node:worker_threads');
const layout = require(d.dist + '/layout.js');
let n = 0;
layout.newId = () => d.tag + (n++ & 0xff).toString(16).padStart(2, '0') + 'beef';
const { Runtime } = require(d.dist + '/index.js');
const rt = new Runtime({ root: d.root });
const marker = 'nsbox-wk-' + d.tag;
const run = (o = {}) => rt.run({ image: 'busybox', command: ['sh', '-c', 'echo ready; exec sleep 1000', marker], stdio: ['ignore', 'pipe', 'ignore'], ...o });
const ready = async (c) => { for await (const chunk of c.stdout) if (String(chunk).includes('ready')) return; };
const go = () => parentPort.postMessage('go');
const forever = async (f) => { for (;;) await f(); };
(async () => {
  switch (d.attack) {
    case 'run': {
      go();
      const opts = [{}, { remove: true }, { limits: { pids: 50, memory: 64 * 1024 * 1024 } }, { remove: true, limits: { pids: 40 } }][d.i % 4];
      await forever(async () => { await run(opts); });
      break;
    }
    case 'leave': {
      // One container run to its end, as a pool's task; the worker is terminated after.
      const c = await rt.run({ image: 'busybox', command: ['true'], stdio: 'ignore', remove: true });
      await c.wait();
      go();
      break;
    }
    case 'attached': {
      const cs = [await run(), await run({ remove: true }), await run({ limits: { pids: 50, memory: 64 * 1024 * 1024 } })];
      for (const c of cs) await ready(c);
      go();
      break;
    }
    case 'exec': {
      const c = await run({ remove: d.i % 2 === 0 });
      await ready(c);
      go();
      await forever(async () => {
        const p = c.exec({ command: ['sh', '-c', 'echo hi; sleep 0.002'], stdio: ['ignore', 'pipe', 'ignore'] });
        for await (const _ of p.stdout) void _;
        await p.wait();
      });
      break;
    }
    case 'cp': {
      const c = await run({ remove: d.i % 2 === 0 });
      await ready(c);
      go();
      await forever(async () => {
        await rt.copyIn(c.id, d.host, '/tmp');
        const s = await rt.copyOut(c.id, '/bin');
        for await (const _ of s) void _;
      });
      break;
    }
    case 'import': {
      go();
      let k = 0;
      await forever(async () => { await rt.import(d.tarball, 'wk-' + d.tag + '-' + k++); });
      break;
    }
    case 'commit': {
      const c = await run({ command: ['sh', '-c', 'mkdir /d; i=0; while [ $i -lt 300 ]; do echo $i > /d/f$i; i=$((i+1)); done; echo ready; exec sleep 1000', marker] });
      await ready(c);
      go();
      await forever(async () => { await rt.commit(c.id, 'wk-commit-' + d.tag); });
      break;
    }
    case 'commit-frozen':
    case 'commit-detached': {
      // Held at its freeze (the walk's start): terminated while the container is frozen.
      const cg = require(d.dist + '/cgroup.js');
      const freeze = cg.freezeContainer;
      cg.freezeContainer = async (...a) => {
        const thaw = await freeze(...a);
        parentPort.postMessage({ frozen: a[0] });
        await new Promise(() => {});
        return thaw;
      };
      const c = d.attack === 'commit-detached' ? await rt.run({ image: 'busybox', command: ['sh', '-c', 'exec sleep 1000', marker + '-detached'], detach: true }) : await run();
      if (c.stdout) await ready(c);
      await rt.commit(c.id, 'wk-commit-' + d.tag);
      break;
    }
    case 'throw': {
      const c = await run();
      await ready(c);
      go();
      setImmediate(() => { throw new Error('worker dies'); });
      await forever(async () => { await run({ remove: true }); });
      break;
    }
  }
})().catch((e) => parentPort.postMessage('error ' + (e && e.stack)));
`;

/** Processes whose command line carries `marker` (the containers' sh, named so), and the children of this process. */
function leftProcesses(marker) {
  const out = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(marker)) out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  for (const t of fs.readdirSync('/proc/self/task')) {
    try {
      for (const c of fs.readFileSync(`/proc/self/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) out.push(Number(c));
    } catch {
      // the thread ended meanwhile
    }
  }
  return [...new Set(out)];
}

/** Cgroup directories on the host named after this run's containers, or a commit freezer of this process. */
function leftCgroups() {
  const out = [];
  const idRe = new RegExp(`^${TAG}[0-9a-f]{4}beef$`);
  const walk = (dir, depth) => {
    let entries;
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = path.join(dir, e.name);
      if (idRe.test(e.name) || e.name.startsWith(`freeze-${process.pid}-`) || e.name.startsWith(`warm-${process.pid}-`)) out.push(p);
      else if (depth > 0 && (e.name === 'nsbox' || e.name === 'std' || depth > 1)) walk(p, depth - 1);
    }
  };
  for (const h of fs.readdirSync('/sys/fs/cgroup')) walk(path.join('/sys/fs/cgroup', h), 3);
  return out;
}

function stateOf(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return null;
  }
}
const processGone = (pid) => [null, 'Z', 'X'].includes(stateOf(pid));
function freezerOf(pid) {
  try {
    const line = fs
      .readFileSync(`/proc/${pid}/cgroup`, 'utf8')
      .split('\n')
      .find((l) => /^\d+:freezer:/.test(l));
    const dir = path.join('/sys/fs/cgroup/freezer', line.split(':')[2]);
    return { dir, state: fs.readFileSync(path.join(dir, 'freezer.state'), 'utf8').trim() };
  } catch {
    return null;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, ms) {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(20);
}

(async () => {
  fs.mkdirSync(HOST, { recursive: true });
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(HOST, `f${i}`), 'x'.repeat(4096 * i));
  // A first worker makes the image (the built-in busybox, minutes of work under load) and runs
  // a container to its end, then ends by itself: what it leaves in this thread counts too.
  await new Promise((resolve, reject) => {
    const w = new Worker(
      `const { Runtime } = require(${JSON.stringify(path.join(DIST, 'index.js'))});
       const rt = new Runtime({ root: ${JSON.stringify(ROOT)} });
       rt.run({ image: 'busybox', command: ['true'], stdio: 'ignore', remove: true }).then((c) => c.wait());`,
      { eval: true, trackUnmanagedFds },
    );
    w.on('error', reject);
    w.on('exit', resolve);
  });
  const before = fds();
  const timings = [];
  const errors = [];
  const frozen = [];
  for (let i = 0; i < N; i++) {
    const tag = TAG + (i & 0xff).toString(16).padStart(2, '0');
    const w = new Worker(WORKER, {
      eval: true,
      trackUnmanagedFds,
      workerData: { dist: DIST, root: ROOT, attack: ATTACK, tag, i, host: HOST, tarball: TARBALL },
      stdout: true,
      stderr: true,
    });
    // Terminated on setImmediate, or 1-80 ms after the operation began (each attack loops, so
    // later ones land in a later round of it).
    const when = [0, 1, 2, 3, 5, 10, 20, 40, 80][i % 9];
    timings.push(when);
    const exited = new Promise((r) => w.on('exit', r));
    w.on('error', (e) => {
      if (ATTACK !== 'throw') errors.push(String(e));
    });
    w.on('message', (m) => {
      if (m && m.frozen) {
        frozen.push(m.frozen);
        m = 'go';
      }
      if (m !== 'go') {
        errors.push(m);
        w.terminate();
        return;
      }
      if (ATTACK === 'throw') return;
      if (when === 0) setImmediate(() => w.terminate());
      else setTimeout(() => w.terminate(), when);
    });
    await exited;
  }
  // Containers a worker froze for a commit: its own die with it; a detached one runs on, thawed.
  const detached = ATTACK === 'commit-detached';
  await until(() => frozen.every((p) => processGone(p) !== detached), 5000);
  const frozenAfter = frozen.map((p) => ({ pid: p, gone: processGone(p), freezer: freezerOf(p), state: stateOf(p) }));
  const marker = `nsbox-wk-${TAG}`;
  if (detached) for (const p of frozen) if (!processGone(p)) process.kill(p, 'SIGKILL');
  await until(() => leftProcesses(marker).length === 0, 5000);
  const processes = leftProcesses(marker);
  const after = fds();
  const mounts = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(ROOT));
  const cgroupsBeforePrune = leftCgroups();
  // A Runtime in this (live) process on the same state directory: it works, nothing is locked.
  const { Runtime } = require(path.join(DIST, 'index.js'));
  const rt = new Runtime({ root: ROOT });
  const listed = rt.list({ all: true });
  const locks = fs.existsSync(path.join(ROOT, 'locks')) ? fs.readdirSync(path.join(ROOT, 'locks')) : [];
  const running = listed.filter((c) => c.status === 'running').map((c) => c.id);
  await rt.prune();
  for (const c of rt.list({ all: true })) await rt.remove(c.id, { force: true });
  const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'echo fine'], stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  for await (const chunk of c.stdout) out += chunk;
  await c.wait();
  const ps = rt.list({ all: true }).map((x) => x.id);
  await rt.remove(c.id);
  await rt.prune();
  console.log(
    JSON.stringify({
      before,
      after,
      processes,
      mounts,
      cgroupsBeforePrune,
      cgroups: leftCgroups(),
      listed: listed.length,
      running,
      locks,
      errors,
      frozen: frozenAfter,
      out,
      ps,
      psAfterRm: rt.list({ all: true }).length,
      timings,
    }),
  );
})().catch((e) => {
  console.error(e);
  process.exit(2);
});
