// The package as a user installs it: scripts/consumer-test.sh packs the tree, installs the
// tarball into an empty project on a PATH without a compiler, runs a container from ESM and
// CommonJS, type-checks a strict TypeScript consumer and proves the prebuild loaded.
// (`scripts/consumer-test.sh --fallback` also checks the compile-from-source path; it costs
// a second compile, so it is run by hand, not here.)
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { expect, it } from 'vitest';

const SCRIPT = path.join(__dirname, '..', 'scripts', 'consumer-test.sh');
const TIMEOUT = 5 * 60_000;

function consumerTest(): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    // Asynchronous, so that this worker stays responsive while the script packs and installs.
    execFile('bash', [SCRIPT], { timeout: TIMEOUT - 10_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

it(
  'installs from the packed tarball without a compiler and runs a container from ESM, CommonJS and TypeScript',
  async () => {
    const { code, output } = await consumerTest();
    expect(code, output).toBe(0);
    const addon = `\\S+/node_modules/nsbox/prebuilds/linux-${process.arch}/nsbox\\.glibc\\.node`;
    expect(output).toMatch(new RegExp(`ESM import: ran echo hi; addon ${addon}`));
    expect(output).toMatch(new RegExp(`CommonJS require: ran echo hi; addon ${addon}`));
    expect(output).toContain('consumer-test: typescript ok');
    expect(output).toContain('consumer-test: all ok');
  },
  TIMEOUT,
);
