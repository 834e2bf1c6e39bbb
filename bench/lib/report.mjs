// bench/REPORT.md and bench/start-latency.svg from a results file. Also a command:
//   node bench/lib/report.mjs bench/results/<date>.json
import * as fs from 'node:fs';
import * as path from 'node:path';

import { boxPlotSvg } from './chart.mjs';

const BENCH = path.dirname(path.dirname(new URL(import.meta.url).pathname));

const ms = (v) => (v === undefined || Number.isNaN(v) ? '–' : v >= 100 ? `${v.toFixed(0)} ms` : v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`);
const x = (v) => (v === undefined || !Number.isFinite(v) ? '–' : v >= 10 ? `${v.toFixed(0)}×` : `${v.toFixed(2)}×`);
const verdict = (ok) => (ok === undefined ? 'not measured' : ok ? '**met**' : '**missed**');

/** ' (CPU time: 5.2×)': the same ratio in CPU time, which load from elsewhere disturbs less. */
const cpuNote = (a, b) => (a?.cpuMs && b?.cpuMs ? ` (in CPU time per start: ${x(a.cpuMs / b.cpuMs)})` : '');

/** The targets of issue 6, each with its measured value, from a results object. */
export function targets(r) {
  const s = r.start;
  const out = [];
  const nsbox = s.nsbox?.median;
  const crunRatio = s.crun && nsbox ? s.crun.median / nsbox : undefined;
  out.push({
    what: 'In-process start vs crun (default config)',
    goal: 'nsbox median ≤ 1/5 of crun’s',
    value: crunRatio && `crun ${ms(s.crun.median)} / nsbox ${ms(nsbox)} = ${x(crunRatio)}${cpuNote(s.crun, s.nsbox)}`,
    met: crunRatio && crunRatio >= 5,
  });
  const bindRatio = s.crun && s['nsbox-bind'] ? s.crun.median / s['nsbox-bind'].median : undefined;
  out.push({
    what: '… like for like: nsbox run --read-only, no write layer, as crun’s read-only bundle (supplementary)',
    goal: 'the same, ≥ 5×',
    value: bindRatio && `crun ${ms(s.crun.median)} / nsbox ${ms(s['nsbox-bind'].median)} = ${x(bindRatio)}${cpuNote(s.crun, s['nsbox-bind'])}`,
    met: bindRatio && bindRatio >= 5,
  });
  const floorRatio = s.floor && nsbox ? nsbox / s.floor.median : undefined;
  out.push({
    what: 'In-process start vs the C floor',
    goal: 'nsbox median ≤ 1.5× the floor',
    value: floorRatio && `nsbox ${ms(nsbox)} / floor ${ms(s.floor.median)} = ${x(floorRatio)}${cpuNote(s.nsbox, s.floor)}`,
    met: floorRatio && floorRatio <= 1.5,
  });
  const sameRatio = s['floor-same'] && nsbox ? nsbox / s['floor-same'].median : undefined;
  out.push({
    what: 'In-process start vs the C floor doing the same steps, nsbox-init included (issue 14)',
    goal: 'nsbox median ≤ 1.2× floor -F',
    value: sameRatio && `nsbox ${ms(nsbox)} / floor -F ${ms(s['floor-same'].median)} = ${x(sameRatio)}${cpuNote(s.nsbox, s['floor-same'])}`,
    met: sameRatio && sameRatio <= 1.2,
  });
  for (const [lim, base, how] of [
    ['nsbox-limits', 'nsbox', 'back to back'],
    ['nsbox-limits-iso', 'nsbox-iso', '20 ms apart'],
  ]) {
    const add = s[lim] && s[base] ? s[lim].median - s[base].median : undefined;
    out.push({
      what: `Memory + pids + cpu limits, ${how} (issues 11, 14)`,
      goal: 'add ≤ 0.5 ms to a start',
      value: add !== undefined && `${ms(s[lim].median)} − ${ms(s[base].median)} = ${ms(add)}`,
      met: add === undefined ? undefined : add <= 0.5,
    });
  }
  const c = r.cli;
  const cliAdd = c.nsbox && c.node ? c.nsbox.median - c.node.median : undefined;
  out.push({
    what: 'CLI end to end',
    goal: 'nsbox adds ≤ 10 ms to `node -e 0`',
    value: cliAdd !== undefined && `${ms(c.nsbox.median)} − ${ms(c.node.median)} = ${ms(cliAdd)}`,
    met: cliAdd === undefined ? undefined : cliAdd <= 10,
  });
  for (const k of ['sequential', 'inflight10']) {
    const n = r.throughput[`nsbox.${k}`];
    const p = r.throughput[`crun.${k}`];
    const ratio = n && p ? n.perSecond / p.perSecond : undefined;
    out.push({
      what: `Throughput, ${k === 'sequential' ? 'one after another' : '10 in flight'}`,
      goal: '≥ 5× crun’s containers/s',
      value: ratio && `${n.perSecond.toFixed(0)}/s vs ${p.perSecond.toFixed(1)}/s = ${x(ratio)}`,
      met: ratio && ratio >= 5,
    });
  }
  // Issue 14: starts in flight use the cores, the loop is never held, the tail stays close.
  for (const where of ['disk', 'tmpfs']) {
    const seq = r.throughput[`nsbox.curve.${where}.1`];
    const best = Object.values(r.throughput)
      .filter((v) => v.where === where && v.inflight > 1)
      .sort((a, b) => b.perSecond - a.perSecond)[0];
    const ratio = seq && best ? best.perSecond / seq.perSecond : undefined;
    out.push({
      what: `Throughput across cores, state dir on ${where === 'disk' ? 'the disk' : 'a tmpfs'} (issue 14)`,
      goal: 'N in flight ≥ 1.7× one after another',
      value: ratio && `${best.perSecond.toFixed(0)}/s (${best.inflight} in flight) vs ${seq.perSecond.toFixed(0)}/s = ${x(ratio)}`,
      met: ratio && ratio >= 1.7,
    });
    const ten = r.throughput[`nsbox.curve.${where}.10`];
    const p99 = ten?.loopDelay?.length ? Math.max(...ten.loopDelay.map((d) => d.p99)) - 1 : undefined;
    out.push({
      what: `Event-loop delay, 10 in flight, state dir on ${where === 'disk' ? 'the disk' : 'a tmpfs'} (issue 14)`,
      goal: 'p99 < 1 ms',
      value: p99 !== undefined && `p99 ${ms(p99)} beyond the 1 ms timer (worst repetition)`,
      met: p99 === undefined ? undefined : p99 < 1,
    });
  }
  for (const [id, label] of [
    ['nsbox', 'write layer on the state dir'],
    ['nsbox-layer-tmpfs', 'write layer on a tmpfs'],
    ['nsbox-state-tmpfs', 'state dir on a tmpfs'],
  ]) {
    const t = s[id];
    out.push({
      what: `Start tail, --rm counted, ${label} (issue 14)`,
      goal: 'p99 ≤ 2× the median',
      value: t && `p99 ${ms(t.p99)} / median ${ms(t.median)} = ${x(t.p99 / t.median)}`,
      met: t && t.p99 / t.median <= 2,
    });
  }
  const sup = r.supervisor.nsbox;
  out.push({ what: 'Supervisor RSS per live container', goal: '≤ 64 KiB', value: sup && `${sup.rssKiBPer.toFixed(1)} KiB`, met: sup && sup.rssKiBPer <= 64 });
  out.push({ what: 'Supervisor fds per live container', goal: '≤ 2', value: sup && `${sup.fdsPer.toFixed(2)}`, met: sup && sup.fdsPer <= 2 });
  // Import (issue 10): at most tar's time, on fresh directories, on each file system.
  for (const [fsName, imgs] of Object.entries(r.imports ?? {})) {
    for (const [name, i] of Object.entries(imgs)) {
      out.push({
        what: `Import ${name}, ${fsName}`,
        goal: '≤ 1× GNU tar -xf',
        value: `${ms(i.import.median)} vs ${ms(i.tarExtract.median)} = ${x(i.ratio)}`,
        met: i.ratio <= 1,
      });
    }
  }
  for (const [name, img] of Object.entries(r.images)) {
    const rc = img.commit && img.tarCreate ? img.commit.median / img.tarCreate.median : undefined;
    out.push({
      what: `Commit ${name}`,
      goal: '≤ 1.5× GNU tar -cf',
      value: rc && `${ms(img.commit.median)} vs ${ms(img.tarCreate.median)} = ${x(rc)}`,
      met: rc && rc <= 1.5,
    });
  }
  // `a && a >= 5` is undefined when a was not measured: then the target is 'not measured'.
  return out.map((t) => ({ ...t, met: t.value ? !!t.met : undefined }));
}

function latencyTable(series, baseId, order, ratioHeader = 'ratio to nsbox') {
  const base = series[baseId];
  const withCpu = order.some((id) => series[id]?.cpuMs !== undefined);
  const head = withCpu
    ? [`| | n | median | p90 | p99 | ${ratioHeader} | CPU per run | CPU ratio |`, '|---|--:|--:|--:|--:|--:|--:|--:|']
    : [`| | n | median | p90 | p99 | ${ratioHeader} |`, '|---|--:|--:|--:|--:|--:|'];
  const rows = [...head];
  for (const id of order) {
    const s = series[id];
    if (!s) continue;
    const label = id === baseId ? `**${s.label}**` : s.label;
    let row = `| ${label} | ${s.n} | ${ms(s.median)} | ${ms(s.p90)} | ${ms(s.p99)} | ${id === baseId ? '1' : x(base && s.median / base.median)} |`;
    if (withCpu) row += ` ${ms(s.cpuMs)} | ${id === baseId ? '1' : x(base?.cpuMs && s.cpuMs / base.cpuMs)} |`;
    rows.push(row);
  }
  return rows.join('\n');
}

export function renderMarkdown(r, resultsPath) {
  const m = r.machine;
  const L = [];
  L.push('# nsbox benchmarks', '');
  L.push(
    `Generated by \`npm run bench\` (bench/run.mjs) on ${r.date}, from [${resultsPath}](${resultsPath}); the whole run took ${Math.round(r.durationSeconds / 60)} min. ` +
      'Latencies are medians, p90 and p99 over all runs; a ratio is the peer’s median over nsbox’s, so **above 1 means nsbox is faster**. ' +
      'This is a shared 2-core virtual machine: expect a few percent of noise in medians and much more in p99.' +
      (r.load
        ? ` Before each sample set the bench waited (up to 15 s) for the CPUs to be at most 35 % busy: ${r.load.sets - r.load.startedBusy} of ${r.load.sets} sets started on a quiet machine, ${r.load.startedBusy} on a busy one (median CPU use by others at their start ${Math.round(r.load.medianBusy * 100)} %).`
        : ''),
    '',
  );
  L.push('## Machine', '');
  L.push('| | |', '|---|---|');
  L.push(
    `| kernel | ${m.kernel} |`,
    `| cpus | ${m.cpus} × ${m.cpuModel} |`,
    `| memory | ${m.memoryGiB} GiB |`,
    `| virtualization | ${m.virtualization} |`,
    `| cgroups | ${m.cgroups} |`,
    `| filesystem of bench/.cache | ${m.storage} |`,
    `| node | ${m.node} |`,
    `| nsbox | ${m.nsbox}, API: ${r.api === 'runtime' ? 'Runtime.run' : 'Container.start (Runtime not built yet)'} |`,
  );
  for (const [k, v] of Object.entries(r.peers)) L.push(`| ${k} | ${v} |`);
  L.push('');

  L.push('## Targets (issue 6)', '');
  L.push('| target | goal | measured | |', '|---|---|---|---|');
  for (const t of targets(r)) L.push(`| ${t.what} | ${t.goal} | ${t.value || '–'} | ${verdict(t.met)} |`);
  L.push('');
  L.push('Where a target is missed, [Where the time goes](#where-the-time-goes) says why and what would close the gap.', '');

  L.push('## 1–2. Start latency: nsbox in process, and the same container by its peers', '');
  L.push(
    '`/bin/true` in the busybox image: a fresh overlay write layer on the shared image layer, new mount, pid, uts, ipc, cgroup and network namespaces, ' +
      'the container removed after. nsbox is timed inside the Node process (`await rt.run(...)` then `await c.wait()`); the peers are whole processes ' +
      'started by a small C harness (bench/spawnloop.c, posix_spawn, no shell), crun and runc inside a private mount namespace with an empty tmpfs over ' +
      '/sys/fs/cgroup/unified (crun 1.8 refuses hybrid cgroups), each run with its own container id. The C floor (bench/floor.c) makes the same container with the fewest system calls.',
    '',
  );
  L.push('![start latency](start-latency.svg)', '');
  L.push(
    latencyTable(r.start, 'nsbox', [
      'nsbox',
      'nsbox-hostnet',
      'nsbox-keep',
      'nsbox-bind',
      'nsbox-layer-tmpfs',
      'nsbox-state-tmpfs',
      'floor',
      'floor-hostnet',
      'floor-full',
      'floor-same',
      'floor-bind',
      'unshare',
      'bwrap',
      'crun-lean',
      'crun',
      'runc',
    ]),
    '',
  );
  const det = [];
  if (r.start['nsbox.started'])
    det.push(
      `- \`rt.run()\` resolves (the container has exec'd) after ${ms(r.start['nsbox.started'].median)} median (p99 ${ms(r.start['nsbox.started'].p99)}).`,
    );
  if (r.start['nsbox-remove'])
    det.push(`- \`c.remove()\` after exit, timed on its own: ${ms(r.start['nsbox-remove'].median)} median (p99 ${ms(r.start['nsbox-remove'].p99)}).`);
  if (r.start['floor-exit']) det.push(`- The floor's clone..exit alone (without mkdir and cleanup): ${ms(r.start['floor-exit'].median)} median.`);
  if (det.length) L.push(...det, '');

  if (r.start['nsbox-limits']) {
    L.push('### Limits', '');
    L.push(
      'The same start with `limits: { memory: 64 MiB, pids: 64, cpus: 1 }` (issue 11 item 8, issue 14 goal 5), measured in the same rounds: from a warm cgroup set (the default: ' +
        'directories made ahead in the background, renamed to the container, see src/cgroup-pool.ts), with warm sets off (each start makes and removes its own), and with 20 ms of idle ' +
        'before each start (not timed: a service between requests; an RCU grace period a start needs is then never already under way). crun gets the same limits in `linux.resources` of its config.json.',
      '',
    );
    L.push(latencyTable(r.start, 'nsbox', ['nsbox', 'nsbox-limits', 'nsbox-limits-cold', 'nsbox-iso', 'nsbox-limits-iso', 'crun', 'crun-limits']), '');
    const d = (a, b) => (r.start[a] && r.start[b] ? ms(r.start[a].median - r.start[b].median) : '–');
    const q = (a, b) => (r.start[a] && r.start[b] ? x(r.start[a].median / r.start[b].median) : '–');
    L.push(
      `Limits add ${d('nsbox-limits', 'nsbox')} back to back (${q('nsbox-limits', 'nsbox')}), ${d('nsbox-limits-iso', 'nsbox-iso')} 20 ms apart (${q('nsbox-limits-iso', 'nsbox-iso')}), ` +
        `${d('nsbox-limits-cold', 'nsbox')} without warm sets; to crun they add ${d('crun-limits', 'crun')} (${q('crun-limits', 'crun')}). crun with limits over nsbox with limits: ${q('crun-limits', 'nsbox-limits')}.`,
      '',
    );
  }

  L.push('## 3. CLI end to end', '');
  L.push('Whole processes, same harness. Starting Node itself is most of the CLI’s time, so the target is what nsbox adds to `node -e 0`.', '');
  L.push(latencyTable(r.cli, 'nsbox', ['nsbox', 'node', 'nsbox-help', 'crun'], 'ratio to nsbox CLI'), '');
  if (r.cli.nsbox && r.cli.node)
    L.push(
      `nsbox adds **${ms(r.cli.nsbox.median - r.cli.node.median)}** to \`node -e 0\` (median over median)${r.cli['nsbox-help'] ? `, of which loading the CLI (\`nsbox --help\`) is ${ms(r.cli['nsbox-help'].median - r.cli.node.median)}` : ''}.`,
      '',
    );
  if (r.cli.hyperfine) {
    L.push('hyperfine, as a cross-check (`hyperfine -N`, its own statistics):', '');
    L.push('| command | runs | mean ± σ | median |', '|---|--:|--:|--:|');
    for (const h of r.cli.hyperfine) L.push(`| ${h.command} | ${h.runs} | ${ms(h.mean)} ± ${ms(h.stddev)} | ${ms(h.median)} |`);
    L.push('');
  }

  L.push('## 4. Throughput', '');
  const t = r.throughput;
  const count = Object.values(t)[0]?.count;
  L.push(
    `${count ?? 100} containers of \`/bin/true\`, one after another and with 10 in flight; containers per second from the median wall time of the repetitions.`,
    '',
  );
  L.push('| | one after another | 10 in flight | nsbox’s rate over it (seq / 10) |', '|---|--:|--:|--:|');
  for (const who of ['nsbox', 'crun', 'bwrap']) {
    const s = t[`${who}.sequential`];
    const p = t[`${who}.inflight10`];
    if (!s && !p) continue;
    const rs = s && t['nsbox.sequential'] ? t['nsbox.sequential'].perSecond / s.perSecond : undefined;
    const rp = p && t['nsbox.inflight10'] ? t['nsbox.inflight10'].perSecond / p.perSecond : undefined;
    L.push(
      `| ${who === 'nsbox' ? '**nsbox (in process)**' : who} | ${s ? `${s.perSecond.toFixed(1)}/s` : '–'} | ${p ? `${p.perSecond.toFixed(1)}/s` : '–'} | ${who === 'nsbox' ? '1' : `${x(rs)} / ${x(rp)}`} |`,
    );
  }
  L.push('');

  const curve = Object.values(t).filter((v) => v.inflight !== undefined);
  if (curve.length) {
    const ns = [...new Set(curve.map((v) => v.inflight))].sort((a, b) => a - b);
    L.push(
      'nsbox with N starts in flight (issue 14): containers per second (× one after another), the state dir on the machine’s disk and on a tmpfs; and how long the event loop was held with 10 in flight (`monitorEventLoopDelay`, 1 ms timer; p99 and max beyond the timer, worst repetition).',
      '',
    );
    L.push(`| state dir | ${ns.join(' | ')} | loop p99 / max (10 in flight) |`, `|---|${ns.map(() => '--:').join('|')}|--:|`);
    for (const where of ['disk', 'tmpfs']) {
      const seq = t[`nsbox.curve.${where}.1`];
      if (!seq) continue;
      const cells = ns.map((n) => {
        const v = t[`nsbox.curve.${where}.${n}`];
        return v ? `${v.perSecond.toFixed(0)}/s (${x(v.perSecond / seq.perSecond)})` : '–';
      });
      const d = t[`nsbox.curve.${where}.10`]?.loopDelay ?? [];
      const worst = (k) => (d.length ? ms(Math.max(...d.map((e) => e[k])) - 1) : '–');
      L.push(`| ${where} | ${cells.join(' | ')} | ${worst('p99')} / ${worst('max')} |`);
    }
    L.push('');
  }

  L.push('## 5. Supervisor cost', '');
  L.push(
    'The Node process’s own RSS and open fds with that many live containers (`sleep 1000`, stdio ignored), minus the same before, per container (median of the repetitions, after a forced GC). `child_process.spawn` of the same command is the yardstick of what Node pays for any child.',
    '',
  );
  L.push('| | live | RSS per container | fds per container | JS heap per container | fds left after all exited |', '|---|--:|--:|--:|--:|--:|');
  for (const [who, s] of Object.entries(r.supervisor)) {
    L.push(
      `| ${who === 'nsbox' ? '**nsbox**' : 'child_process.spawn'} | ${s.count} | ${s.rssKiBPer.toFixed(1)} KiB | ${s.fdsPer.toFixed(2)} | ${s.heapKiBPer.toFixed(1)} KiB | ${s.leakedFds} |`,
    );
  }
  L.push('');

  L.push('## 6. Growth: a big supervisor, many containers', '');
  L.push(
    'Start latency (net ns, `--rm` counted) in a supervisor holding a large live heap, or with containers already running; fork-style clone (copies the page tables) against `CLONE_VM | CLONE_VFORK` with a dedicated stack (the default).',
    '',
  );
  L.push(latencyTable(r.growth, 'vfork', ['vfork', 'fork', 'vfork-1g', 'fork-1g', 'vfork-100'], 'ratio to default, small heap'), '');
  const g = r.growth;
  if (g['fork-1g'] && g['vfork-1g']) {
    const rss = g['fork-1g'].rssKiB ? ` (supervisor RSS ${(g['fork-1g'].rssKiB / 1024).toFixed(0)} MiB)` : '';
    L.push(
      `With the big heap${rss}, a fork-style start costs ${ms(g['fork-1g'].median)} against ${ms(g['vfork-1g'].median)} with CLONE_VM|CLONE_VFORK: ` +
        `${x(g['fork-1g'].median / g['vfork-1g'].median)}. **Choice: CLONE_VM | CLONE_VFORK** (nsbox's default): its cost does not grow with the supervisor's size; ` +
        'the price is that the calling thread waits while the child sets up and execs' +
        (g['vfork.started'] ? ` (\`run()\` resolves ${ms(g['vfork.started'].median)} after it is called, that wait included)` : '') +
        '.',
      '',
    );
  }

  L.push('## 7. Images', '');
  L.push(
    '`nsbox import` (Runtime.import: extract, digest, publish) against GNU `tar -xf` of the same tarball, per file system, every sample into a ' +
      'directory never used before and nothing deleted until all are taken, the two alternating (bench/import.mjs says why). Page cache warm for both.',
    '',
  );
  if (r.imports) {
    L.push('| file system | image | entries | tarball | nsbox import | tar -xf | ratio |', '|---|---|--:|--:|--:|--:|--:|');
    for (const [fsName, imgs] of Object.entries(r.imports)) {
      for (const [name, i] of Object.entries(imgs)) {
        L.push(
          `| ${fsName} | ${name} | ${i.entries} | ${(i.tarBytes / 2 ** 20).toFixed(1)} MiB | ${ms(i.import.median)} | ${ms(i.tarExtract.median)} | ${x(i.ratio)} |`,
        );
      }
    }
    L.push('');
  }
  L.push('`nsbox commit` (of a container of that image, with `output:` a tarball) against `tar -cf` of the image’s tree.', '');
  L.push('| image | tarball | entries | nsbox commit | tar -cf | ratio |', '|---|--:|--:|--:|--:|--:|');
  for (const [name, i] of Object.entries(r.images)) {
    L.push(
      `| ${name} | ${(i.tarBytes / 2 ** 20).toFixed(1)} MiB | ${i.entries} | ${ms(i.commit?.median)} | ${ms(i.tarCreate.median)} | ${x(i.commit && i.commit.median / i.tarCreate.median)} |`,
    );
  }
  L.push('');

  if (r.exec && Object.keys(r.exec).length) {
    L.push('## 8. exec into a running container', '');
    L.push(
      '`/bin/true` in a busybox container running `sleep` (bench/lib/exec.mjs): nsbox in process (`c.exec()` of its own container; `rt.exec()` of a `run -d` container, ' +
        'its record read and pid proven), the `nsbox exec` CLI, and `crun exec` into a running crun container, timed by the same harness as `crun run`.',
      '',
    );
    L.push(latencyTable(r.exec, 'nsbox-exec', ['nsbox-exec', 'nsbox-rt-exec', 'crun-exec', 'nsbox-exec-cli'], 'ratio to c.exec()'), '');
  }

  L.push('## Where the time goes', '');
  const analysis = path.join(BENCH, 'ANALYSIS.md');
  if (fs.existsSync(analysis)) {
    L.push(
      fs
        .readFileSync(analysis, 'utf8')
        .replace(/^# .*\n+/, '')
        .trim(),
      '',
    );
  } else {
    L.push('(bench/ANALYSIS.md, the hand-written profile notes, is missing.)', '');
  }

  L.push('## Skipped', '');
  L.push(r.skipped.length ? r.skipped.map((s) => `- ${s}`).join('\n') : 'Nothing: every peer was installed and every measurement ran.', '');

  L.push('## How to run', '');
  L.push(
    '```',
    'npm run build                        # dist/ and the addon (as root, as everything below)',
    'npm run bench                        # 4-5 min on a quiet 2-core machine; results/<date>.json, REPORT.md, start-latency.svg',
    'npm run bench -- --wait-quiet 20     # first wait up to 20 min for 10 quiet seconds (a shared machine)',
    'npm run bench -- --quick             # ~1 min smoke run; results and report under bench/.cache/quick',
    'npm run bench -- --only 1,2          # some measurements; results and report under bench/.cache/only-12',
    'node bench/profile.mjs               # one start, phase by phase; --ab NAME, --images TARBALL: see the file',
    'node bench/cli-startup.mjs           # the CLI over node -e 0, and what would cut it',
    'apt-get install crun runc bubblewrap hyperfine debootstrap   # the peers (each is skipped when missing)',
    '```',
    '',
  );
  return `${L.join('\n')}\n`;
}

export function renderSvg(r) {
  const order = ['nsbox', 'nsbox-hostnet', 'nsbox-bind', 'floor', 'floor-full', 'floor-same', 'floor-bind', 'unshare', 'bwrap', 'crun-lean', 'crun', 'runc'];
  const short = {
    nsbox: 'nsbox, in process',
    'nsbox-hostnet': 'nsbox, in process, no net ns',
    'nsbox-bind': 'nsbox run --read-only (as crun)',
    floor: 'C floor (fewest syscalls)',
    'floor-bind': 'C floor, no write layer',
    'floor-full': 'C floor + nsbox’s extra mounts',
    'floor-same': 'C floor, nsbox’s steps and nsbox-init',
    unshare: 'unshare --root --mount-proc',
    bwrap: 'bwrap --unshare-all',
    'crun-lean': 'crun, no cgroups, no net ns',
    crun: 'crun run (default)',
    runc: 'runc run (default)',
  };
  const rows = order.filter((id) => r.start[id]).map((id) => ({ label: short[id], pct: r.start[id].pct, highlight: id.startsWith('nsbox') }));
  const cliShort = { nsbox: 'nsbox run --rm busybox true', node: 'node -e 0', crun: 'crun run (default)' };
  const cliRows = ['nsbox', 'node', 'crun'].filter((id) => r.cli[id]).map((id) => ({ label: cliShort[id], pct: r.cli[id].pct, highlight: id === 'nsbox' }));
  const panels = [
    {
      title: 'Start to exit of /bin/true: nsbox in process vs whole-process peers',
      rows,
      marks: r.start.crun ? [{ at: r.start.crun.median / 5, label: 'goal: crun ÷ 5' }] : [],
    },
  ];
  if (cliRows.length) {
    panels.push({
      title: 'Whole process from a shell: the nsbox CLI, Node alone, crun',
      rows: cliRows,
      marks: r.cli.node ? [{ at: r.cli.node.median + 10, label: 'goal: node -e 0 + 10 ms' }] : [],
    });
  }
  return boxPlotSvg(panels, {
    title: `nsbox start latency, ${r.date}`,
    subtitle: `Linux ${r.machine.kernel}, ${r.machine.cpus} cpus, node ${r.machine.node}; busybox image, overlay root, new mount/pid/uts/ipc/cgroup/net namespaces, removed after`,
  });
}

export function writeReport(r, resultsPath, outDir = BENCH) {
  fs.writeFileSync(path.join(outDir, 'REPORT.md'), renderMarkdown(r, resultsPath));
  fs.writeFileSync(path.join(outDir, 'start-latency.svg'), renderSvg(r));
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node bench/lib/report.mjs bench/results/<date>.json [OUTDIR]');
    process.exit(2);
  }
  const outDir = process.argv[3] ?? BENCH;
  writeReport(JSON.parse(fs.readFileSync(file, 'utf8')), path.relative(outDir, path.resolve(file)), outDir);
  console.log(`wrote ${path.join(outDir, 'REPORT.md')} and start-latency.svg`);
}
