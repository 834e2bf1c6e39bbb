// A detached container's log (issue 12 item 4): written by nsbox-monitor, read by rt.logs()
// and `nsbox logs`. Attacked here: stdout and stderr kept apart, timestamps, --tail, --since,
// -f following and ending on exit, partial and long lines kept whole, rotation capping size.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Runtime, type LogEntry } from '../src/runtime';
import { until } from './helpers';

const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/;
let root: string;
let rt: Runtime;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-logs-'));
  rt = new Runtime({ root });
});
afterAll(() => {
  for (const c of rt.list({ all: true })) spawnSync(process.execPath, [MAIN, '--root', root, 'rm', '-f', c.id]);
  fs.rmSync(root, { recursive: true, force: true });
});

function nsbox(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, '--root', root, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

async function all(it: AsyncIterable<LogEntry>): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  for await (const e of it) out.push(e);
  return out;
}

async function ran(name: string, script: string, ...flags: string[]): Promise<string> {
  const r = nsbox('run', '-d', '--name', name, ...flags, 'busybox', 'sh', '-c', script);
  expect(r.code).toBe(0);
  await rt.wait(name);
  return r.out.trim();
}

describe('logs', () => {
  it('keeps stdout and stderr apart, in order, each line timestamped', async () => {
    await ran('both', 'echo out1; echo err1 >&2; echo out2; echo err2 >&2');
    const got = await all(rt.logs('both'));
    expect(got.filter((e) => e.stream === 'stdout').map((e) => e.line)).toEqual(['out1', 'out2']);
    expect(got.filter((e) => e.stream === 'stderr').map((e) => e.line)).toEqual(['err1', 'err2']);
    for (const e of got) expect(e.time).toMatch(TIME);
    const times = got.map((e) => e.time);
    expect([...times].sort()).toEqual(times);
    // The CLI: each stream to its own, -t with the time first.
    expect(nsbox('logs', 'both')).toMatchObject({ code: 0, out: 'out1\nout2\n', err: 'err1\nerr2\n' });
    const stamped = nsbox('logs', '-t', 'both');
    expect(stamped.out).toMatch(/^\d{4}-\d{2}-\d{2}T[\d:.]{18}Z out1\n\S+ out2\n$/);
    expect(stamped.err).toMatch(/^\S+Z err1\n\S+Z err2\n$/);
  });

  it('keeps a line without its newline, and a line longer than a record, whole', async () => {
    const long = 'x'.repeat(40_000);
    await ran('parts', `printf 'a'; sleep 0.1; printf 'b\\n'; printf '%s\\n' ${long}; printf 'no newline'`);
    const got = await all(rt.logs('parts'));
    expect(got.map((e) => [e.line.length > 100 ? e.line.length : e.line, !!e.partial])).toEqual([
      ['ab', false],
      [40_000, false],
      ['no newline', true],
    ]);
    expect(got[1]!.line).toBe(long);
    expect(nsbox('logs', 'parts').out).toBe(`ab\n${long}\nno newline`);
    // Split into records of at most 16 KiB on disk.
    const file = fs.readFileSync(path.join(root, 'containers', rt.inspect('parts').id, 'container.log'), 'utf8');
    expect(file.split('\n').filter((l) => / stdout P x/.test(l)).length).toBeGreaterThanOrEqual(2);
  });

  it('--tail N gives the last N lines; --since drops older ones', async () => {
    await ran('many', 'i=1; while [ $i -le 50 ]; do echo line $i; i=$((i+1)); done; sleep 1.1; echo late');
    expect(nsbox('logs', '--tail', '3', 'many').out).toBe('line 49\nline 50\nlate\n');
    expect(nsbox('logs', '--tail', '0', 'many').out).toBe('');
    expect(nsbox('logs', '--tail', 'all', 'many').out.split('\n').length).toBe(52);
    const got = await all(rt.logs('many'));
    const late = got.find((e) => e.line === 'late')!;
    const since = new Date(Date.parse(late.time) - 500);
    expect((await all(rt.logs('many', { since }))).map((e) => e.line)).toEqual(['late']);
    expect(nsbox('logs', '--since', since.toISOString(), 'many').out).toBe('late\n');
    expect(nsbox('logs', '--since', '1h', 'many').out.split('\n').length).toBe(52);
    expect(nsbox('logs', '--tail', 'x', 'many').code).toBe(125);
    expect(nsbox('logs', '--since', 'yesterday', 'many').code).toBe(125);
  });

  it('-f follows while the container runs and ends when it exits', async () => {
    const data = fs.mkdtempSync(path.join(root, 'data-'));
    expect(
      nsbox(
        'run',
        '-d',
        '--name',
        'follow',
        '-v',
        `${data}:/data`,
        'busybox',
        'sh',
        '-c',
        'echo first; while [ ! -e /data/go ]; do sleep 0.05; done; echo second; echo third >&2; sleep 0.3; echo last',
      ).code,
    ).toBe(0);
    const f = spawn(process.execPath, [MAIN, '--root', root, 'logs', '-f', 'follow'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    f.stdout.on('data', (d: Buffer) => (out += d));
    f.stderr.on('data', (d: Buffer) => (err += d));
    const exited = new Promise<number | null>((r) => f.on('exit', r));
    // It printed what was there, and is still waiting: the container has not gone on yet.
    await until('the first line', () => out === 'first\n');
    await new Promise((r) => setTimeout(r, 300));
    expect(f.exitCode).toBe(null);
    fs.writeFileSync(path.join(data, 'go'), '');
    expect(await exited).toBe(0);
    expect(out).toBe('first\nsecond\nlast\n');
    expect(err).toBe('third\n');
  });

  it('-f of an exited container prints what there is and ends', async () => {
    await ran('done', 'echo only');
    const t0 = Date.now();
    expect(nsbox('logs', '-f', 'done')).toMatchObject({ code: 0, out: 'only\n' });
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('-f follows across rotations without losing or repeating a line', async () => {
    const data = fs.mkdtempSync(path.join(root, 'data-'));
    expect(
      nsbox(
        'run',
        '-d',
        '--name',
        'rotf',
        '--log-opt',
        'max-size=4k',
        '--log-opt',
        'max-file=3',
        '-v',
        `${data}:/data`,
        'busybox',
        'sh',
        '-c',
        'while [ ! -e /data/go ]; do sleep 0.05; done; i=1; while [ $i -le 400 ]; do echo "line $i"; i=$((i+1)); [ $((i % 20)) = 0 ] && sleep 0.05; done',
      ).code,
    ).toBe(0);
    const entries = rt.logs('rotf', { follow: true });
    const lines: string[] = [];
    const reading = (async () => {
      for await (const e of entries) lines.push(e.line);
    })();
    fs.writeFileSync(path.join(data, 'go'), '');
    await reading;
    expect(lines).toEqual(Array.from({ length: 400 }, (_, i) => `line ${i + 1}`));
  });

  it('rotation caps the size: max-size per file, max-file files', async () => {
    const id = await ran('rot', 'i=0; while [ $i -lt 3000 ]; do echo "line number $i of the log"; i=$((i+1)); done', '--log-opt', 'max-size=8k,max-file=2');
    const dir = path.join(root, 'containers', id);
    const files = fs
      .readdirSync(dir)
      .filter((f) => f.startsWith('container.log'))
      .sort();
    expect(files).toEqual(['container.log', 'container.log.1']);
    for (const f of files) expect(fs.statSync(path.join(dir, f)).size).toBeLessThanOrEqual(8 * 1024);
    // What is kept is the end, whole and in order.
    const lines = nsbox('logs', 'rot').out.trim().split('\n');
    expect(lines[lines.length - 1]).toBe('line number 2999 of the log');
    const first = Number(/line number (\d+)/.exec(lines[0]!)![1]);
    expect(lines).toEqual(Array.from({ length: 3000 - first }, (_, i) => `line number ${first + i} of the log`));
    expect(lines.length).toBeGreaterThan(100);
    // One file only: the log starts over.
    const one = await ran('rot1', 'i=0; while [ $i -lt 1000 ]; do echo "line number $i"; i=$((i+1)); done', '--log-opt', 'max-file=1,max-size=2k');
    const files1 = fs.readdirSync(path.join(root, 'containers', one)).filter((f) => f.startsWith('container.log'));
    expect(files1).toEqual(['container.log']);
    expect(fs.statSync(path.join(root, 'containers', one, 'container.log')).size).toBeLessThanOrEqual(2048);
    expect(nsbox('run', '-d', '--log-opt', 'max-size=1k,colour=red', 'busybox', 'true').code).toBe(125);
    expect(nsbox('run', '--log-opt', 'max-size=1k', 'busybox', 'true').code).toBe(125);
  });

  it('a container of this process has no log; an unknown one is NOT_FOUND', async () => {
    const c = await rt.run({ image: 'busybox', command: ['echo', 'x'], stdio: 'ignore' });
    await c.wait();
    expect(await all(rt.logs(c.id!))).toEqual([]);
    expect(() => rt.logs('no-such-container')).toThrow(/no such container/);
    await expect(all(rt.logs(c.id!, { tail: -1 }))).rejects.toThrow(/tail/);
  });
});
