/**
 * The helper that src/subid.ts runs as root of a user namespace with the user's subordinate
 * map (`node ns-helper.js OP JSON`): there the files the user's containers gave to other ids
 * are its to read, write and delete, and ids inside are what it sees and sets. One line of
 * JSON on stdout says how it went ({ ok, result } or { ok: false, code, message }).
 *   rm      { path }: removes the tree with the addon's walk (never follows a symlink, never
 *           enters a mount), as removal does; a path that is not there is done.
 *   tree    { source, dest[, output] }: a commit's walk of the layers (src/image/merged-tree.ts)
 *           into `dest` (and the tarball `output`), owners kept as the container saw them.
 *   import  { tarball, dest }: an import's extraction (src/image/extract.ts), the tarball's
 *           owners kept (an owner the map does not hold fails: EINVAL from fchown).
 * Paths are absolute and the caller's own (its state directory); nothing here chooses one.
 */
import * as path from 'node:path';

import { native } from './native';

type Reply = { ok: true; result?: unknown } | { ok: false; code: string; message: string };

function abs(v: unknown, what: string): string {
  if (typeof v !== 'string' || !path.isAbsolute(v)) throw Object.assign(new Error(`ns-helper: ${what} must be an absolute path`), { code: 'EINVAL' });
  return v;
}

async function main(argv: string[]): Promise<Reply> {
  const [op, json] = argv;
  const a = JSON.parse(json ?? '{}') as Record<string, unknown>;
  switch (op) {
    case 'rm': {
      const target = abs(a.path, 'path');
      const r = native().removeTree(target);
      if (!r || (r.code === 'ENOENT' && r.path.length === 0)) return { ok: true };
      return { ok: false, code: r.code, message: `${r.syscall} ${target}/${r.path.toString('utf8')}: ${r.code}` };
    }
    case 'tree': {
      const { writeMergedTree, writeMergedTarAndTree } = await import('./image/merged-tree');
      const source = a.source as Parameters<typeof writeMergedTree>[0];
      for (const l of source.layers) abs(l, 'a layer');
      const dest = abs(a.dest, 'dest');
      const result = a.output === undefined ? await writeMergedTree(source, dest) : await writeMergedTarAndTree(source, abs(a.output, 'output'), dest);
      return { ok: true, result };
    }
    case 'import': {
      const { extractTarball } = await import('./image/extract');
      const result = await extractTarball(abs(a.tarball, 'tarball'), abs(a.dest, 'dest'));
      return { ok: true, result };
    }
    default:
      return { ok: false, code: 'EINVAL', message: `ns-helper: unknown request ${JSON.stringify(op)}` };
  }
}

main(process.argv.slice(2))
  .catch((e: unknown): Reply => ({ ok: false, code: String((e as { code?: unknown }).code ?? 'EIO'), message: (e as Error).message }))
  .then((reply) => {
    process.stdout.write(`${JSON.stringify(reply)}\n`);
    process.exitCode = reply.ok ? 0 : 1;
  });
