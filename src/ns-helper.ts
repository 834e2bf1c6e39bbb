/**
 * The helper that src/subid.ts runs as root of a user namespace with the user's subordinate
 * map (`node ns-helper.js OP ARGS...`): there the files the user's containers gave to other
 * ids are its to read and delete. One line of JSON on stdout says how it went.
 *   rm PATH   removes the tree at PATH with the addon's walk (never follows a symlink, never
 *             enters a mount), as removal does: a path that is not there is done.
 */
import { native } from './native';

function main(argv: string[]): { ok: boolean; code?: string; message?: string } {
  const [op, target] = argv;
  if (op === 'rm' && target !== undefined && target.startsWith('/') && argv.length === 2) {
    const r = native().removeTree(target);
    if (!r || (r.code === 'ENOENT' && r.path.length === 0)) return { ok: true };
    return { ok: false, code: r.code, message: `${r.syscall} ${target}/${r.path.toString('utf8')}: ${r.code}` };
  }
  return { ok: false, code: 'EINVAL', message: `ns-helper: unknown request ${JSON.stringify(argv)}` };
}

let reply: { ok: boolean; code?: string; message?: string };
try {
  reply = main(process.argv.slice(2));
} catch (e) {
  reply = { ok: false, code: 'EIO', message: (e as Error).message };
}
process.stdout.write(`${JSON.stringify(reply)}\n`);
process.exitCode = reply.ok ? 0 : 1;
