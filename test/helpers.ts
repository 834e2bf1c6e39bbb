// Shared by the tests: fixtures, leak checks, and collecting a container's output.
import { readFileSync, readdirSync } from 'node:fs';
import type { Readable } from 'node:stream';

export const ROOTFS = process.env.NSBOX_TEST_ROOTFS ?? '/tmp/nsbox-test-fixtures/busybox';
export const TARBALL = process.env.NSBOX_TEST_TARBALL ?? '/tmp/nsbox-test-fixtures/busybox.tar';

/** The host's mount table (mount points only), to compare before and after. */
export function hostMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n').map((l) => l.split(' ')[4]!).sort();
}

/** Overlay or aufs mounts on the host: there should never be any left by nsbox. */
export function unionMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => / - (overlay|aufs) /.test(l));
}

export function openFds(): string[] {
  return readdirSync('/proc/self/fd').sort((a, b) => Number(a) - Number(b));
}

/** Direct children of this process (containers are children until reaped). */
export function childPids(): number[] {
  const out: number[] = [];
  for (const task of readdirSync('/proc/self/task')) {
    let text = '';
    try {
      text = readFileSync(`/proc/self/task/${task}/children`, 'utf8');
    } catch {
      continue;
    }
    out.push(...text.trim().split(/\s+/).filter(Boolean).map(Number));
  }
  return out.sort((a, b) => a - b);
}

export function collect(stream: Readable | null): Promise<string> {
  if (!stream) return Promise.resolve('');
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', reject);
    stream.on('close', () => resolve(Buffer.concat(chunks).toString()));
  });
}
