// A volume's host path never goes through a symlink (issue 9, "Partial"): a container that had
// a directory as its volume plants a link in it, and a later `-v DIR/sub:...` must not follow
// it to a host path of the container's choosing, not even when the link is swapped in while
// the container starts (the child resolves the path again with RESOLVE_NO_SYMLINKS).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { Runtime } from '../src/runtime';
import { TARBALL, collect, hostMounts } from './helpers';

let work: string;
let rt: Runtime;
let secret: string;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'nsbox-vol-links-'));
  rt = new Runtime({ root: path.join(work, 'state') });
  await rt.import(TARBALL, 'bb');
  secret = path.join(work, 'secret');
  mkdirSync(secret, { mode: 0o700 });
  writeFileSync(path.join(secret, 'key'), 'host secret\n');
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

async function output(options: Parameters<Runtime['run']>[0]): Promise<string> {
  const c = await rt.run({ ...options, remove: true });
  const out = collect(c.stdout);
  await c.wait();
  return out;
}

describe('volume host paths', () => {
  it('a link a container planted in its volume is not followed by a later volume', async () => {
    const shared = path.join(work, 'shared');
    mkdirSync(shared);
    await output({ image: 'bb', command: ['ln', '-s', secret, '/data/sub'], volumes: [`${shared}:/data`] });
    const mounts = hostMounts();
    await expect(rt.run({ image: 'bb', command: ['cat', '/x/key'], volumes: [`${shared}/sub:/x`] })).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
      message: expect.stringMatching(/sub is a symlink/),
    });
    // A link higher up the path is refused the same way.
    await expect(rt.run({ image: 'bb', command: ['true'], volumes: [`${shared}/sub/deeper:/x`] })).rejects.toBeInstanceOf(NsboxError);
    expect(hostMounts()).toEqual(mounts);
  });

  it('a link swapped in while containers start is never followed', async () => {
    const racy = path.join(work, 'racy');
    mkdirSync(racy);
    const target = path.join(racy, 'sub');
    // Exchange a real directory and a link to the secret directory at `target`, as fast as a
    // shell can, while containers start with `target` as a volume.
    const swapper = spawn('sh', [
      '-c',
      `cd ${racy}; mkdir -p real; while :; do rm -rf sub; ln -s ${secret} sub; rm -f sub; ln -s real sub 2>/dev/null; rm -f sub; mkdir sub; done`,
    ]);
    try {
      let leaked = 0;
      let started = 0;
      for (let i = 0; i < 150; i++) {
        try {
          const out = await output({ image: 'bb', command: ['sh', '-c', 'cat /x/key 2>/dev/null; true'], volumes: [`${target}:/x`] });
          started++;
          if (out.includes('host secret')) leaked++;
        } catch (e) {
          expect(e).toBeInstanceOf(NsboxError); // refused: a link at that moment, or gone
        }
      }
      expect(leaked).toBe(0);
      expect(started).toBeGreaterThan(0); // the race was run, not always refused up front
    } finally {
      swapper.kill('SIGKILL');
    }
  });
});
