/**
 * Rootless mode: nsbox run by a user that is not root. The container gets a user namespace of
 * its own in which that user's uid and gid are 0 (src/plan.ts rootlessUserNs); everything
 * else it does, it does with the privileges the kernel gives the owner of that namespace.
 * Chosen by the effective uid alone: there is nothing to configure.
 */
import { NsboxError } from './errors';
import { ContainerCgroup } from './cgroup';
import { v2Use } from './cgroup-v2';
import type { CgroupLimits } from './limits';
import { mapsId, rootlessUserNs } from './plan';
import type { NativeSecurity, NativeUserNs } from './native';
import { subidUserNs, type SubidMap } from './subid';

/** Whether this process runs nsbox rootless (its effective uid is not 0). */
export function isRootless(): boolean {
  return (process.geteuid?.() ?? 0) !== 0;
}

/**
 * The container's user namespace when rootless, else undefined (root runs without one): the
 * subordinate range when `subid` is given (src/subid.ts), else the one-id map.
 */
export function startUserNs(subid?: SubidMap): NativeUserNs | undefined {
  if (!isRootless()) return undefined;
  if (subid) return subidUserNs(subid);
  return rootlessUserNs(process.geteuid!(), process.getegid!());
}

/** Whether any limit needs a cgroup (rlimits go to nsbox-init and need none). */
export function needsCgroup(limits: CgroupLimits): boolean {
  return Object.values(limits).some((v) => v !== undefined);
}

/**
 * A rootless container's cgroups: none without limits (the device cgroup is root's: in a user
 * namespace mknod is refused and /dev holds only the host nodes bound in, so device access is
 * confined without it). With limits, a cgroup v2 directory this user may write (a delegated
 * subtree: `NSBOX_CGROUP_V2_PARENT`, or the user's own cgroup on a unified host), else an
 * error naming what is missing: never a silently unlimited container.
 */
export function rootlessCgroup(id: string, limits: CgroupLimits): ContainerCgroup | null {
  if (!needsCgroup(limits)) return null;
  const uid = process.geteuid!();
  const hint =
    'run nsbox inside a cgroup v2 subtree delegated to this user (e.g. `systemd-run --user --scope -p Delegate=yes nsbox ...` on a unified host, then NSBOX_CGROUP_V2_PARENT=<an empty child of it>), run as root, or leave the limits out';
  if (v2Use() !== 'limits') {
    throw new NsboxError(
      'UNSUPPORTED',
      `limits: rootless (uid ${uid}): limits need a cgroup v2 subtree delegated to this user, and this host keeps its limit controllers in cgroup v1, which is root's`,
      { hint },
    );
  }
  try {
    return ContainerCgroup.forStart(id, 'all', limits);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      throw new NsboxError(
        code,
        `limits: rootless (uid ${uid}): the cgroup v2 directory is not writable by this user (not delegated): ${(e as Error).message}`,
        { hint, cause: e },
      );
    }
    throw e;
  }
}

/**
 * With a one-id map only uid and gid 0 exist inside: any other user (`--user 1000`) would be
 * EINVAL at nsbox-init's setresuid. Said before the start, with what to do.
 */
export function checkRootlessIds(security: NativeSecurity | undefined, userns: NativeUserNs): void {
  const uid = security?.uid ?? 0;
  const gid = security?.gid ?? 0;
  if ((uid !== 0 && !mapsId(userns.uidMap, uid)) || (gid !== 0 && !mapsId(userns.gidMap, gid))) {
    const top = Math.min(highestInside(userns.uidMap), highestInside(userns.gidMap));
    if (top > 0) {
      // A subordinate range smaller than the id asked for: the one-id wording would be wrong.
      throw new NsboxError(
        'UNSUPPORTED',
        `user: ${uid}:${gid}: rootless with the /etc/subuid range, only ids 0 to ${top} exist inside the container (your uid ${process.geteuid!()} as 0, the range's ${top} ids as 1 to ${top})`,
        { hint: `use ids up to ${top}, give the user a larger range (usermod --add-subuids/--add-subgids), or run as root` },
      );
    }
    throw new NsboxError(
      'UNSUPPORTED',
      `user: ${uid}:${gid}: rootless with a one-id map, only root (0:0) exists inside the container (your uid ${process.geteuid!()} as 0)`,
      {
        hint: 'leave --user out, or run as root',
      },
    );
  }
}

/** The highest id inside a user namespace's map ("inside outside count" lines), -1 for none. */
function highestInside(map: string): number {
  let top = -1;
  for (const line of map.split('\n')) {
    const [inside, , count] = line.trim().split(/\s+/).map(Number);
    if (inside !== undefined && count !== undefined && count > 0) top = Math.max(top, inside + count - 1);
  }
  return top;
}

/** The id inside a user namespace that `hostId` is, by its map ("inside outside count" lines). */
export function insideId(map: string, hostId: number): number {
  for (const line of map.split('\n')) {
    const [inside, outside, count] = line.trim().split(/\s+/).map(Number);
    if (inside !== undefined && outside !== undefined && count !== undefined && hostId >= outside && hostId < outside + count)
      return inside + (hostId - outside);
  }
  throw new NsboxError('EINVAL', `id ${hostId} is not mapped in the container's user namespace`);
}
