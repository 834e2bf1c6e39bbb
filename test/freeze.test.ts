// A Runtime's container has a freezer of its own (src/cgroup.ts, freezeContainer): a commit
// of a running container can hold every one of its processes still while it reads the
// layers. Frozen means frozen: a busy loop makes no progress until it is thawed.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { freezeContainer } from '../src/cgroup';
import { Container } from '../src/container';
import { Runtime } from '../src/runtime';
import { ROOTFS, TARBALL, until } from './helpers';

let work: string;
let rt: Runtime;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'nsbox-freeze-'));
  rt = new Runtime({ root: path.join(work, 'state') });
  await rt.import(TARBALL, 'bb');
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('freezeContainer', () => {
  it('holds every process of a running container still until thawed', async () => {
    const data = path.join(work, 'data');
    const c = await rt.run({
      image: 'bb', volumes: [`${data}:/data`], stdio: 'ignore', remove: true,
      // Two processes counting: the command and a child of it.
      command: ['sh', '-c', '(while :; do echo x >> /data/b; done) & while :; do echo x >> /data/a; done'],
    });
    // Progress is each file's size (appends: a reader never sees a half-written counter).
    const read = () => ['a', 'b'].map((f) => {
      try {
        return statSync(path.join(data, f)).size;
      } catch {
        return 0;
      }
    });
    await until('both counters to run', () => read().every((n) => n > 10));
    const thaw = await freezeContainer(c.pid);
    expect(thaw).not.toBeNull();
    const frozen = read();
    await new Promise((r) => setTimeout(r, 300));
    expect(read()).toEqual(frozen);
    thaw!();
    await until('both counters to move again', () => read().every((n, i) => n > frozen[i]!));
    c.kill('SIGKILL');
    await c.wait();
  });

  it('a container without a freezer of its own (Container.start) is left alone', async () => {
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sleep', '10'], stdio: 'ignore' });
    expect(await freezeContainer(c.pid)).toBeNull();
    c.kill('SIGKILL');
    await c.wait();
  });
});
