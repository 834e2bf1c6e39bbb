/**
 * A container's root as one directory fd, for cp: every path of a copy is resolved beneath it
 * (openat2 RESOLVE_IN_ROOT) and walked from it by fd (src/copy.ts).
 *
 * - Running: the root its processes see, with their volumes, tmpfs and /proc, opened as
 *   /proc/<pid>/root of its nsbox-init once the record proves that pid is the container's
 *   (start time and pid namespace, not ours), and proven again after the open: a pid reused
 *   between the two checks would have another start time.
 * - Stopped, overlay: its layers mounted as an overlay that is attached nowhere (fsopen +
 *   fsmount, never move_mount): no other process can reach it, nothing is left mounted if this
 *   process dies, and closing the fd takes it down. nosuid, nodev, noexec.
 * - Stopped, vfs: its own copy of the image, a plain directory. --read-only: the image layer,
 *   for reading only.
 */
import * as fs from 'node:fs';

import { NsboxError } from './errors';
import { mountOverlayFd, openDir } from './fsat';
import { processAlive, processPidNamespace } from './proc';
import { isRootless } from './rootless';
import type { IdRange } from './userns';
import type { ContainerRecord } from './record';
import type { Workspace } from './workspace';

export interface ContainerRoot {
  fd: number;
  running: boolean;
  /** False for a --read-only container stopped: its root is the shared image layer. */
  writable: boolean;
  /** Volume targets of a stopped container: not mounted here, so not copied to or from. */
  unmountedVolumes: string[];
  /** userns 'auto': the host ids its user namespace maps; what is copied out gets the ids it has inside. */
  idRange?: IdRange;
  close(): void;
  /**
   * close() on libuv's thread pool, settled once the fd is closed. A stopped container's root
   * is the one reference to a detached overlay mount, which its close unmounts (syncing the
   * write layer: 45-150 ms here after a big copy in), and that work is the closing thread's.
   */
  closeAsync(): Promise<void>;
}

const { O_RDONLY, O_DIRECTORY } = fs.constants;

function root(fd: number, running: boolean, writable: boolean, unmountedVolumes: string[]): ContainerRoot {
  let open = true;
  return {
    fd,
    running,
    writable,
    unmountedVolumes,
    close() {
      if (open) fs.closeSync(fd);
      open = false;
    },
    closeAsync() {
      if (!open) return Promise.resolve();
      open = false;
      return new Promise<void>((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
    },
  };
}

/** The root of a running container started by any process, its pid proven by the record. */
export function openRunningRoot(rec: ContainerRecord, label: string): ContainerRoot {
  const pid = rec.pid ?? undefined;
  const start = rec.pidStart ?? undefined;
  const proven = (): boolean =>
    pid !== undefined &&
    rec.pidNamespace !== null &&
    processPidNamespace(pid) === rec.pidNamespace &&
    rec.pidNamespace !== processPidNamespace('self') &&
    processAlive(pid, start);
  const gone = () =>
    new NsboxError('BAD_STATE', `${label}: container ${rec.name ?? rec.id} is not running any more, or its record does not prove pid ${pid} is its own`);
  if (!proven()) throw gone();
  let fd: number;
  try {
    fd = fs.openSync(`/proc/${pid}/root`, O_RDONLY | O_DIRECTORY);
  } catch {
    throw gone();
  }
  if (!proven()) {
    fs.closeSync(fd);
    throw gone();
  }
  return root(fd, true, true, []);
}

/** The root of a stopped container, from its layers (the caller holds its lock). */
export function openStoppedRoot(rec: ContainerRecord, ws: Workspace, volumeTargets: string[], label: string): ContainerRoot {
  if (!fs.existsSync(rec.imageLayer)) {
    throw new NsboxError('NOT_FOUND', `${label}: the image ${rec.image} of container ${rec.name ?? rec.id} was removed (rmi -f): its root is gone`);
  }
  if (ws.readOnly) return root(openDir(ws.imageLayer), false, false, volumeTargets);
  switch (ws.driver) {
    case 'vfs':
      return root(openDir(ws.upper), false, true, volumeTargets);
    case 'overlay':
      if (isRootless()) {
        // An overlay mounted in no namespace is the host's mount: only root may make it.
        throw new NsboxError(
          'UNSUPPORTED',
          `${label}: copying to or from a stopped container needs root (its layers are mounted on the host); rootless, only a running container's root can be reached`,
          {
            hint: `nsbox start it first (or commit it and run the image)`,
          },
        );
      }
      return root(mountOverlayFd([ws.imageLayer], ws.upper, ws.work), false, true, volumeTargets);
    case 'aufs':
      throw new NsboxError('UNSUPPORTED', `${label}: copying to or from a stopped aufs container is not built: start it, or copy while it runs`);
  }
}
