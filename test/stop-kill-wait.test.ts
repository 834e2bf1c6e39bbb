// stop, kill and wait (issue 12, item 2), from the library and from the CLI, for a container
// of this process and for a detached one another process supervises.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Container } from '../src/container';
import { ROOTFS, until } from './helpers';

const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
let root: string;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-stop-'));
});
afterAll(() => {
  spawnSync(process.execPath, [MAIN, '--root', root, 'rm', '-f', 'trapper', 'sleeper', 'usr1', 'waited']);
  fs.rmSync(root, { recursive: true, force: true });
});

function nsbox(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, '--root', root, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('Container.stop', () => {
  it('SIGTERM ends a command without a handler at once', async () => {
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sleep', '60'], stdio: 'ignore' });
    const t0 = Date.now();
    expect(await c.stop()).toMatchObject({ signal: 'SIGTERM' });
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('a command that ignores SIGTERM is killed after the timeout', async () => {
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sh', '-c', "trap '' TERM; sleep 60"], stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    expect(await c.stop({ timeout: 300 })).toMatchObject({ signal: 'SIGKILL' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    expect(Date.now() - t0).toBeLessThan(1300);
  });
});

describe('nsbox stop, kill, wait on a detached container', () => {
  it('stop -t 1 of a container that ignores SIGTERM ends within the timeout and a second', () => {
    expect(nsbox('run', '-d', '--name', 'trapper', 'busybox', 'sh', '-c', "trap '' TERM; while :; do sleep 1; done").code).toBe(0);
    const t0 = Date.now();
    expect(nsbox('stop', '-t', '1', 'trapper')).toMatchObject({ code: 0, out: 'trapper\n' });
    expect(Date.now() - t0).toBeLessThan(2000 + 1000); // timeout + 1 s, and a CLI start
    expect(nsbox('wait', 'trapper')).toMatchObject({ code: 0, out: '137\n' });
  });

  it('stop of a plain sleep takes its SIGTERM (143), not the timeout', () => {
    expect(nsbox('run', '-d', '--name', 'sleeper', 'busybox', 'sleep', '60').code).toBe(0);
    const t0 = Date.now();
    expect(nsbox('stop', 'sleeper').code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(nsbox('wait', 'sleeper').out).toBe('143\n');
  });

  it('kill -s USR1 reaches the command; wait prints its exit code', async () => {
    const data = path.join(root, 'data');
    fs.mkdirSync(data);
    expect(
      nsbox(
        'run',
        '-d',
        '--name',
        'usr1',
        '-v',
        `${data}:/data`,
        'busybox',
        'sh',
        '-c',
        'trap "echo got > /data/usr1; exit 3" USR1; touch /data/ready; while :; do sleep 0.1; done',
      ).code,
    ).toBe(0);
    await until('the trap to be set', () => fs.existsSync(path.join(data, 'ready')));
    expect(nsbox('kill', '-s', 'USR1', 'usr1')).toMatchObject({ code: 0, out: 'usr1\n' });
    expect(nsbox('wait', 'usr1')).toMatchObject({ code: 0, out: '3\n' });
    expect(fs.readFileSync(path.join(data, 'usr1'), 'utf8')).toBe('got\n');
    // Not running any more: kill says so.
    expect(nsbox('kill', 'usr1')).toMatchObject({ code: 125, err: 'nsbox: container usr1: not running\n' });
    expect(nsbox('kill', '-s', 'NOPE', 'usr1').code).toBe(125);
  });
});
