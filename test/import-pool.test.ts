// An import holds a thread of libuv's pool for its whole length (src-cc/binding/tar.cc). The
// same pool serves fs.promises and a start's and a removal's file steps, so imports never take
// more than half of it: with as many imports as threads at once, everything else would wait
// for one of them to end.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';

import { MAX_RUNNING_IMPORTS, extractTarball } from '../src/image/extract';
import { TARBALL, runNode } from './helpers';

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

it('a worker terminated mid-import neither crashes the process nor leaks an fd or a thread, and extractTarball refuses a FIFO', async () => {
  // 96 MiB of one file: the import is still running when the worker is terminated.
  const tar = path.join(work, 'big.tar');
  const header = Buffer.alloc(512);
  header.write('big', 0);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${(96 << 20).toString(8).padStart(11, '0')}\0`, 124);
  header.write('00000000000\0', 136);
  header.write('0', 156);
  header.write('ustar\x0000', 257, 'latin1');
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  fs.writeFileSync(tar, header);
  fs.appendFileSync(tar, Buffer.alloc((96 << 20) + 1024));
  const extract = path.resolve(__dirname, '../dist/image/extract.js');
  const script = `
    const fs = require('fs');
    const { Worker } = require('worker_threads');
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    const threads = () => fs.readdirSync('/proc/self/task').filter((t) => fs.readFileSync('/proc/self/task/' + t + '/comm', 'utf8').startsWith('nsbox-tar'));
    const worker = \`
      const { parentPort, workerData } = require('worker_threads');
      const { extractTarball } = require(workerData.extract);
      let told = false;
      extractTarball(workerData.tar, workerData.dest, { onProgress: (done) => { if (done > 0 && !told) { told = true; parentPort.postMessage('running'); } } });
    \`;
    (async () => {
      await new Promise((r) => new Worker('1', { eval: true }).on('exit', r));
      const before = fds();
      const results = [];
      for (let i = 0; i < 3; i++) {
        const dest = ${JSON.stringify(work)} + '/w' + i;
        fs.mkdirSync(dest);
        const w = new Worker(worker, { eval: true, workerData: { extract: ${JSON.stringify(extract)}, tar: ${JSON.stringify(tar)}, dest } });
        await new Promise((r) => w.once('message', r));
        await w.terminate();
      }
      const fifo = ${JSON.stringify(path.join(work, 'fifo'))};
      require('child_process').execFileSync('mkfifo', [fifo]);
      const refused = await require(${JSON.stringify(extract)}).extractTarball(fifo, ${JSON.stringify(work)}).then(() => 'imported', (e) => e.code);
      console.log(JSON.stringify({ before, after: fds(), threads: threads().length, refused }));
    })();
  `;
  const r = await runNode(script, { timeoutMs: 60_000 });
  expect(r.stderr).toBe('');
  expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null });
  const res = JSON.parse(r.stdout) as { before: number; after: number; threads: number; refused: string };
  expect(res.after).toBe(res.before);
  expect(res.threads).toBe(0);
  expect(res.refused).toBe('INVALID_ARGUMENT');
}, 90_000);
