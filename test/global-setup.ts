// Builds the busybox root filesystem and tarball the tests use, once per run.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';

export default function setup(): void {
  const dir = process.env.NSBOX_TEST_FIXTURES ?? '/tmp/nsbox-test-fixtures';
  const rootfs = path.join(dir, 'busybox');
  const tarball = path.join(dir, 'busybox.tar');
  if (!existsSync(tarball) || !existsSync(path.join(rootfs, 'bin/busybox'))) {
    execFileSync('bash', [path.join(__dirname, '../scripts/make-busybox-rootfs.sh'), rootfs, tarball], { stdio: 'inherit' });
  }
  process.env.NSBOX_TEST_ROOTFS = rootfs;
  process.env.NSBOX_TEST_TARBALL = tarball;
}
