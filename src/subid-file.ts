/**
 * /etc/subuid and /etc/subgid text, read as shadow-utils reads it. A module of its own with
 * no imports: src/subid.ts needs it, and src/fsat.ts needs src/subid.ts, so taking it from
 * src/userns.ts (which imports layout and record) made an import cycle in which record.ts
 * could run before layout.ts had defined what it uses (every record then failed to validate).
 */

/** The highest id a map may name is 2^32 - 2 (-1 is "no id"). */
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
