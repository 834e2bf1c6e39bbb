// An import holds a thread of libuv's pool for its whole length (src-cc/binding/tar.cc). The
// same pool serves fs.promises and a start's and a removal's file steps, so imports never take
// more than half of it: with as many imports as threads at once, everything else would wait
// for one of them to end.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';

import { MAX_RUNNING_IMPORTS, extractTarball } from '../src/image/extract';
import { TARBALL } from './helpers';

let work: string;
beforeEach(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-import-pool-'));
});
afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

it('leaves half the pool to other work while as many imports as its threads run', async () => {
  expect(process.env.UV_THREADPOOL_SIZE ?? '4').toBe('4');
  expect(MAX_RUNNING_IMPORTS).toBe(2);
  const order: string[] = [];
  const imports = [0, 1, 2, 3].map((i) => {
    const dest = path.join(work, `i${i}`);
    fs.mkdirSync(dest);
    return extractTarball(TARBALL, dest).then((r) => {
      order.push(`import ${i}`);
      return r;
    });
  });
  // Asked for once all four have been handed to the addon (their pool jobs queued before it):
  // it must not wait for an import to end.
  await new Promise((resolve) => setImmediate(resolve));
  const stat = fs.promises.stat(work).then(() => order.push('stat'));
  const results = await Promise.all(imports);
  await stat;
  expect(order[0]).toBe('stat');
  // Every import ran whole, the queued ones too.
  expect(new Set(results.map((r) => r.digest)).size).toBe(1);
  for (const r of results) expect(r.entries).toBe(results[0]!.entries);
  for (let i = 0; i < 4; i++) expect(fs.existsSync(path.join(work, `i${i}`, 'bin', 'busybox'))).toBe(true);
});
