/**
 * limits.disk for a kept container: its write layer is an ext4 image (a sparse file in the
 * container's directory) on a loop device. The loop device is attached with autoclear just
 * before the start and mounted only inside the container's mount namespace, so the kernel
 * detaches it when the container is gone; commit reads it through a mount in no namespace
 * (an fd), so nothing is ever mounted on a host path and a killed process leaves nothing.
 */
import type * as ChildProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';

import { NsboxError, fromNative, fromSystemError, isNativeErrno } from './errors';
import { MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, native, type NativeErrno } from './native';

const isErrno = isNativeErrno;

function nativeError(what: string, e: NativeErrno, path?: string): NsboxError {
  return fromNative(what, e, path ? { path } : {});
}

/** Refuses a limit the host cannot hold: an image larger than the free space under it. */
export function checkImageRoom(dir: string, bytes: number): void {
  const st = fs.statfsSync(dir);
  const free = Number(st.bavail) * Number(st.bsize);
  if (bytes > free) {
    throw new NsboxError('ENOSPC', `limits.disk: ${bytes} bytes, but the filesystem of ${dir} has ${free} bytes free: the limit could not be held`, {
      path: dir,
    });
  }
}

/** Refuses a tmpfs write layer larger than the machine's memory: it could never be filled. */
export function checkTmpfsRoom(bytes: number): void {
  if (bytes > os.totalmem()) {
    throw new NsboxError(
      'INVALID_ARGUMENT',
      `limits.disk: ${bytes} bytes, more than this machine's memory (${os.totalmem()}): a --rm container's write layer is a tmpfs`,
    );
  }
}

/**
 * A sparse file of `bytes` made into ext4: no journal (a write layer needs no crash recovery,
 * and commit mounts it read-only), no reserved blocks (all of it is the container's), no
 * room kept for growing it. Inodes as mke2fs sizes them (one per 4 KiB below 512 MiB): fewer
 * would make mkfs faster, but a small layer would then run out of files before bytes.
 */
export async function makeExt4Image(file: string, bytes: number): Promise<void> {
  try {
    const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    try {
      fs.ftruncateSync(fd, bytes);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    throw fromSystemError('limits.disk: make the image', e);
  }
  const args = ['-q', '-F', '-t', 'ext4', '-O', '^has_journal,^resize_inode', '-m', '0', '-E', 'nodiscard,root_owner=0:0', file];
  // node:child_process is loaded only here: a start without limits.disk never needs it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { execFile } = require('node:child_process') as typeof ChildProcess;
  await new Promise<void>((resolve, reject) => {
    execFile('mkfs.ext4', args, { env: { PATH: '/usr/sbin:/sbin:/usr/bin:/bin' } }, (err, _out, stderr) => {
      if (!err) return resolve();
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      reject(
        new NsboxError(
          missing ? 'UNSUPPORTED' : 'EIO',
          missing ? 'limits.disk: mkfs.ext4 was not found (install e2fsprogs)' : `limits.disk: mkfs.ext4 failed: ${String(stderr).trim() || err.message}`,
          { path: file },
        ),
      );
    });
  });
}

function attachImage(file: string, readonly: boolean): { fd: number; device: string } {
  const r = native().attachLoop(file, readonly);
  if (isErrno(r)) throw nativeError(`limits.disk: attach ${file} to a loop device`, r, file);
  return r;
}

/**
 * The image on a free loop device (autoclear), mounted in no namespace (nosuid, nodev): the
 * mount's fd, which the container's first process attaches in its own mount namespace. The
 * caller closes it after the start: the mount then holds the device, and when the container's
 * namespace ends (or nothing attached it), the device is detached by the kernel.
 */
export function mountImageForContainer(file: string): number {
  const loop = attachImage(file, false);
  try {
    const fd = native().mountDetached('ext4', loop.device, false, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    if (isErrno(fd)) throw nativeError(`limits.disk: mount ${file}`, fd, file);
    return fd;
  } finally {
    fs.closeSync(loop.fd);
  }
}

function backingFile(device: string): string | undefined {
  try {
    return fs.readFileSync(`/sys/block/${device.replace(/^\/dev\//, '')}/loop/backing_file`, 'utf8').replace(/\n$/, '');
  } catch {
    return undefined; // not attached
  }
}

/** The loop device `file` is attached to now (a running container's), if any. */
function attachedLoop(file: string): string | undefined {
  let names: string[];
  try {
    names = fs.readdirSync('/sys/block').filter((n) => /^loop\d+$/.test(n));
  } catch {
    return undefined;
  }
  return names.map((n) => `/dev/${n}`).find((d) => backingFile(d) === file);
}

/**
 * The image's filesystem mounted read-only in no namespace: returns the mount's fd (its root
 * reachable as /proc/self/fd/N) for the caller to close. A running container's image is
 * mounted through its own loop device (the same superblock: what it wrote is what is read);
 * a stopped one's through a read-only loop device of its own.
 */
export function mountImageReadOnly(file: string): number {
  const attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
  const live = attachedLoop(file);
  if (live) {
    // Read-only unless the container's own read-write superblock is there to share (EBUSY):
    // a device whose container is gone (and that is about to detach) is never written.
    let fd = native().mountDetached('ext4', live, true, attrs);
    if (isErrno(fd) && fd.code === 'EBUSY') fd = native().mountDetached('ext4', live, false, attrs);
    // Held by this mount now, the device cannot be detached and reused: check it is still ours.
    if (!isErrno(fd)) {
      if (backingFile(live) === file) return fd;
      fs.closeSync(fd);
    }
  }
  const loop = attachImage(file, true);
  try {
    const fd = native().mountDetached('ext4', loop.device, true, attrs);
    if (isErrno(fd)) throw nativeError(`limits.disk: mount ${file}`, fd, file);
    return fd;
  } finally {
    fs.closeSync(loop.fd);
  }
}
