// Builds the busybox root filesystem and tarball the tests use. The fixture lives in a
// directory named after what made it (the script's hash and the host busybox's hash), so a
// changed script or a different busybox gets a fresh fixture instead of a stale one.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import * as path from 'node:path';

const SCRIPT = path.join(__dirname, '../scripts/make-busybox-rootfs.sh');

/** The static busybox the script would copy, or undefined when there is none yet. */
function hostBusybox(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir || '.', 'busybox');
    if (existsSync(p)) return p;
  }
  return undefined;
}

export function fixtureKey(): string {
  const h = createHash('sha256').update(readFileSync(SCRIPT));
  const bb = hostBusybox();
  if (bb) h.update(readFileSync(bb));
  return h.digest('hex').slice(0, 16);
}

export default function setup(): void {
  const base = process.env.NSBOX_TEST_FIXTURES ?? '/tmp/nsbox-test-fixtures';
  // The script installs busybox-static when it is missing (as root, with apt): hash after.
  if (!hostBusybox()) {
    const probe = path.join(base, `probe-${process.pid}`);
    execFileSync('bash', [SCRIPT, probe], { stdio: 'inherit' });
    rmSync(probe, { recursive: true, force: true });
  }
  const dir = path.join(base, fixtureKey());
  const rootfs = path.join(dir, 'busybox');
  const tarball = path.join(dir, 'busybox.tar');
  if (!existsSync(path.join(dir, 'complete'))) {
    // Made aside and renamed into place whole, so a run killed half-way never leaves a
    // fixture that looks complete.
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    execFileSync('bash', [SCRIPT, path.join(tmp, 'busybox'), path.join(tmp, 'busybox.tar')], { stdio: 'inherit' });
    execFileSync('touch', [path.join(tmp, 'complete')]);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }
  process.env.NSBOX_TEST_ROOTFS = rootfs;
  process.env.NSBOX_TEST_TARBALL = tarball;
}
