/**
 * /etc/subuid and /etc/subgid lines, read the way shadow-utils reads them. A module of its own
 * with no imports: userns.ts (root's ranges) and subid.ts (a rootless user's range, reached from
 * the file system helpers that layout.ts loads) both use it, and subid.ts importing userns.ts
 * closed a cycle layout -> fsat -> subid -> userns -> record -> layout in which record.ts read
 * layout's ID_RE before it was set.
 */

/** The highest id a map may name is 2^32 - 2 (-1 is "no id"): a range ends at or below this. */
const ID_LIMIT = 2 ** 32 - 1;

/**
 * The ranges /etc/subuid (or subgid) gives `user` ("name:start:count" lines; `uid` also
 * matches a numeric first field, as shadow-utils reads them). Malformed lines are skipped, as
 * shadow-utils skips them.
 */
export function parseSubid(text: string, user: string, uid?: number): Array<{ start: number; count: number }> {
  const out: Array<{ start: number; count: number }> = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const parts = line.split(':');
    if (parts.length !== 3) continue;
    const [who, s, c] = parts as [string, string, string];
    if (who !== user && (uid === undefined || who !== String(uid))) continue;
    if (!/^\d{1,10}$/.test(s) || !/^\d{1,10}$/.test(c)) continue;
    const start = Number(s);
    const count = Number(c);
    if (count === 0 || start + count > ID_LIMIT) continue;
    out.push({ start, count });
  }
  return out;
}
