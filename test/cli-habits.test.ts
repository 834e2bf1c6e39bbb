// Docker habits on the CLI (issue 12, item 7, in part): "did you mean" for a mistyped command
// or flag, and `inspect` as JSON.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-habits-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function nsbox(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, '--root', root, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('the CLI', () => {
  it('suggests the command or flag meant', () => {
    expect(nsbox('runn', 'busybox')).toMatchObject({ code: 125, err: expect.stringMatching(/^nsbox: unknown command "runn" \(did you mean run\?\)\n/) });
    expect(nsbox('run', '--nmae', 'x', 'busybox', 'true')).toMatchObject({ code: 125, err: expect.stringMatching(/unknown flag --nmae \(did you mean --name\?\)/) });
  });

  it('inspect prints the record as JSON, with why it was killed', () => {
    nsbox('run', '--name', 'hog', '-m', '16m', 'busybox', 'sh', '-c', 'x=a; while :; do x="$x$x"; done');
    const r = nsbox('inspect', 'hog');
    expect(r.code).toBe(0);
    const [info] = JSON.parse(r.out) as Array<Record<string, unknown>>;
    expect(info).toMatchObject({ name: 'hog', image: 'busybox', status: 'exited', signal: 'SIGKILL', killedFor: 'oom' });
    expect(nsbox('inspect', 'no-such')).toMatchObject({ code: 125, out: '[]\n' });
    nsbox('rm', 'hog');
  });
});
