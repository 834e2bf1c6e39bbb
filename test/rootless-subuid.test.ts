// Rootless with the user's /etc/subuid and /etc/subgid range, mapped through newuidmap and
// newgidmap (src/subid.ts): as in rootless.test.ts every container is started by `nsboxuser`
// through runuser, from a copy of the package in a world-readable directory. Skipped where
// the user has no range or uidmap is not installed (.ci/run provides both).
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { subidMapOf } from '../src/subid';
import { USER, UserBox, userIds } from './user-box';

const ids = userIds();
const readOr = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : null);
const range = ids && subidMapOf(readOr('/etc/subuid'), readOr('/etc/subgid'), USER, ids.uid, ids.gid);
const skipReason = !ids
  ? `no user ${USER}`
  : !range
    ? `${USER} has no /etc/subuid and /etc/subgid range`
    : !existsSync('/usr/bin/newuidmap') || !existsSync('/usr/bin/newgidmap')
      ? 'newuidmap/newgidmap (uidmap) not installed'
      : undefined;

const box = new UserBox(ids ?? { uid: -1, gid: -1 }, { prefix: 'nsbox-subuid-', tmp: true });
const { base, pkg, home, state, asUser, nsbox, api, userProcesses, ourMounts } = box;
const lines = (s: string) =>
  s
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/).join(' '));

const dirOf = (sub: string) => (existsSync(path.join(state, sub)) ? readdirSync(path.join(state, sub)) : []);
/** Nothing of a container left: no directory (nor tombstone), no helper output, no mount, no process. */
function nothingLeft(): void {
  expect(dirOf('containers')).toEqual([]);
  expect(dirOf('tmp')).toEqual([]);
  expect(readdirSync(path.join(base, 'tmp'))).toEqual([]);
  expect(ourMounts()).toEqual([]);
  expect(userProcesses()).toEqual([]);
}
/** The host owner of a path of container `name`'s write layer. */
function upperStat(name: string, rel: string): { uid: number; gid: number } {
  const id = (JSON.parse(nsbox(['inspect', name]).stdout) as Array<{ id: string }>)[0]!.id;
  return statSync(path.join(state, 'containers', id, 'upper', rel));
}

describe.skipIf(!!skipReason)(`rootless with a subordinate range, as ${USER}${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const r = range!;
  beforeAll(() => box.setup());

  afterAll(() => {
    if (!existsSync(base)) return;
    nsbox(['rm', '-f', 'keep', 'det', 'restart']);
    // Files of the range: root removes them (the user could not without the helper).
    box.dispose();
  });

  it('maps the user as 0 and the range as 1.. (uid and gid, setgroups allowed); inspect says subuid and shows the maps', () => {
    const run = nsbox(['run', '--rm', 'busybox', 'sh', '-c', 'id -u; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups']);
    expect(run.stderr).toBe('');
    expect(lines(run.stdout)).toEqual(['0', `0 ${ids!.uid} 1`, `1 ${r.subuid} ${r.count}`, `0 ${ids!.gid} 1`, `1 ${r.subgid} ${r.count}`, 'allow']);
    const out = api(`
      const rt = new nsbox.Runtime();
      const c = await rt.run({ image: 'busybox', command: ['sleep', '30'], name: 'keep', stdio: 'ignore' });
      const info = await rt.inspect('keep');
      const single = await rt.run({ image: 'busybox', command: ['cat', '/proc/self/uid_map'], idMap: 'single', remove: true });
      let text = '';
      single.stdout.on('data', (d) => (text += d));
      await single.wait();
      c.kill('SIGKILL');
      await c.wait();
      console.log(JSON.stringify({ idMap: info.idMap, userns: info.userns, single: text.trim().split(/\\s+/).join(' ') }));
    `);
    expect(JSON.parse(out.stdout.trim().split('\n').pop()!)).toEqual({
      idMap: 'subuid',
      userns: { uidMap: `0 ${ids!.uid} 1\n1 ${r.subuid} ${r.count}`, gidMap: `0 ${ids!.gid} 1\n1 ${r.subgid} ${r.count}` },
      single: `0 ${ids!.uid} 1`,
    });
    expect(nsbox(['rm', 'keep']).status).toBe(0);
    nothingLeft();
  });

  it('chown and --user work: a file given to 1000 is SUBUID+999 on the host (write layer and a volume of the user)', () => {
    const vol = path.join(base, 'vol');
    mkdirSync(vol);
    chownSync(vol, ids!.uid, ids!.gid);
    const run = nsbox([
      'run',
      '--name',
      'keep',
      '-v',
      `${vol}:/data`,
      'busybox',
      'sh',
      '-c',
      'touch /f /data/f && chown 1000:1000 /f /data/f && stat -c %u:%g /f /data/f',
    ]);
    expect(run.stderr).toBe('');
    expect(lines(run.stdout)).toEqual(['1000:1000', '1000:1000']);
    expect(upperStat('keep', 'f')).toMatchObject({ uid: r.subuid + 999, gid: r.subgid + 999 });
    expect(statSync(path.join(vol, 'f'))).toMatchObject({ uid: r.subuid + 999, gid: r.subgid + 999 });
    const u = nsbox(['run', '--rm', '-u', '1000:1000', 'busybox', 'sh', '-c', 'id -u; id -g; touch /tmp/x; stat -c %u /tmp/x']);
    expect(u.stderr).toBe('');
    expect(lines(u.stdout)).toEqual(['1000', '1000', '1000']);
    expect(nsbox(['rm', 'keep']).status).toBe(0);
    // The volume's data is never removed with the container, the range's files included.
    expect(statSync(path.join(vol, 'f')).uid).toBe(r.subuid + 999);
    nothingLeft();
  });

  it('--rm of a container that left files of 1000 in directories of mode 0700 leaves nothing; a volume it wrote the same way stays whole', () => {
    const vol = path.join(base, 'vol2');
    mkdirSync(vol);
    chownSync(vol, ids!.uid, ids!.gid);
    const make =
      'for d in /a /a/b /data/k; do mkdir -p $d; echo x > $d/f; done; chown -R 1000:1000 /a /data/k; chmod -R go-rwx /a /data/k; chmod 700 /a /a/b /data/k';
    const run = nsbox(['run', '--rm', '-v', `${vol}:/data`, 'busybox', 'sh', '-c', make]);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    nothingLeft();
    // The user cannot even list it; root can: still there, still 1000's.
    expect(statSync(path.join(vol, 'k', 'f')).uid).toBe(r.subuid + 999);
    expect(asUser(['ls', path.join(vol, 'k')]).status).not.toBe(0);
  });

  it('rm of a kept container, and rm -f of a running one, with such files leave nothing; the user alone could not delete them', () => {
    expect(nsbox(['run', '--name', 'keep', 'busybox', 'sh', '-c', 'mkdir -m 700 /a; echo x > /a/f; chown -R 1000 /a']).status).toBe(0);
    // The attack the helper answers: as the user, the write layer's 0700 directory of 1000 is closed.
    const id = (JSON.parse(nsbox(['inspect', 'keep']).stdout) as Array<{ id: string }>)[0]!.id;
    expect(asUser(['rm', '-rf', path.join(state, 'containers', id, 'upper', 'a')]).status).not.toBe(0);
    expect(nsbox(['rm', 'keep']).status).toBe(0);
    expect(nsbox(['run', '-d', '--name', 'det', 'busybox', 'sh', '-c', 'mkdir -m 700 /a; echo x > /a/f; chown -R 1000 /a; sleep 60']).status).toBe(0);
    // exec enters the same map; its --user too.
    const e = nsbox(['exec', 'det', 'sh', '-c', 'id -u; cat /proc/self/uid_map']);
    expect(lines(e.stdout)).toEqual(['0', `0 ${ids!.uid} 1`, `1 ${r.subuid} ${r.count}`]);
    expect(lines(nsbox(['exec', '-u', '1000', 'det', 'sh', '-c', 'id -u; cat /a/f']).stdout)).toEqual(['1000', 'x']);
    // cp runs as the user: root's paths inside copy, a directory of 1000 of mode 0700 is refused with what to do.
    const out = path.join(base, 'cp-out');
    mkdirSync(out);
    chownSync(out, ids!.uid, ids!.gid);
    expect(nsbox(['cp', 'det:/etc/passwd', `${out}/passwd`]).status).toBe(0);
    const closed = nsbox(['cp', 'det:/a/f', `${out}/f`]);
    expect(closed.status).toBe(125);
    expect(closed.stderr).toMatch(/EACCES[\s\S]*hint: .*subordinate range/);
    expect(nsbox(['rm', '-f', 'det']).status).toBe(0);
    expect(nsbox(['prune']).status).toBe(0);
    nothingLeft();
  });

  it('a restarted container maps the same range', () => {
    const cmd = 'test -e /f && stat -c %u /f; touch /f; chown 1000 /f; cat /proc/self/uid_map';
    const first = nsbox(['run', '--name', 'restart', 'busybox', 'sh', '-c', cmd]);
    expect(lines(first.stdout)).toEqual([`0 ${ids!.uid} 1`, `1 ${r.subuid} ${r.count}`]);
    // Started again (attached): its own earlier file is 1000's, the map the same.
    const again = nsbox(['start', '-a', 'restart']);
    expect(again.stderr).toBe('');
    expect(lines(again.stdout)).toEqual(['1000', `0 ${ids!.uid} 1`, `1 ${r.subuid} ${r.count}`]);
    const info = JSON.parse(nsbox(['inspect', 'restart']).stdout) as Array<{ idMap: string }>;
    expect(info[0]!.idMap).toBe('subuid');
    expect(nsbox(['rm', 'restart']).status).toBe(0);
    nothingLeft();
  });

  it('commit keeps owner 1000 (the image holds SUBUID+999), a rerun sees 1000; rmi leaves nothing', () => {
    expect(nsbox(['run', '--name', 'keep', 'busybox', 'sh', '-c', 'mkdir -m 700 /d; echo hi > /d/x; chown -R 1000:1000 /d']).status).toBe(0);
    const c = nsbox(['commit', 'keep', 'owned']);
    expect(c.stderr).toBe('');
    expect(c.status).toBe(0);
    expect(statSync(path.join(state, 'images', 'owned', 'rootfs', 'd')).uid).toBe(r.subuid + 999);
    const run = nsbox(['run', '--rm', 'owned', 'sh', '-c', 'stat -c "%u:%g %a" /d /d/x; cat /d/x']);
    expect(lines(run.stdout)).toEqual(['1000:1000 700', '1000:1000 644', 'hi']);
    expect(nsbox(['rm', 'keep']).status).toBe(0);
    expect(nsbox(['rmi', 'owned']).status).toBe(0);
    expect(dirOf('images')).toEqual(['busybox']);
    nothingLeft();
  });

  it("commit of a write layer whose symlinks name the user's secret file and home: the image and the tarball hold the links, never the file", () => {
    const secret = path.join(home, 'commit-secret');
    writeFileSync(secret, 'SECRET-COMMIT\n', { mode: 0o600 });
    chownSync(secret, ids!.uid, ids!.gid);
    const make = `mkdir -m 700 /a; ln -s ${secret} /a/link; ln -s ${home} /a/home; echo x > /a/f; chown -R -h 1000 /a`;
    expect(nsbox(['run', '--name', 'keep', 'busybox', 'sh', '-c', make]).status).toBe(0);
    const tarOut = path.join(home, 'commit.tar');
    const c = nsbox(['commit', '--output', tarOut, 'keep', 'links']);
    expect(c.stderr).toBe('');
    expect(readFileSync(tarOut).includes('SECRET-COMMIT')).toBe(false);
    expect(execFileSync('tar', ['-tvf', tarOut], { encoding: 'utf8' })).toMatch(/a\/link -> /);
    const root = path.join(state, 'images', 'links', 'rootfs');
    expect(readlinkSync(path.join(root, 'a', 'link'))).toBe(secret);
    expect(readlinkSync(path.join(root, 'a', 'home'))).toBe(home);
    expect(readFileSync(secret, 'utf8')).toBe('SECRET-COMMIT\n');
    rmSync(tarOut);
    rmSync(secret);
    expect(nsbox(['rm', 'keep']).status).toBe(0);
    expect(nsbox(['rmi', 'links']).status).toBe(0);
    nothingLeft();
  });

  it("import keeps a tarball's owners 0, 1000 and 65534; an owner beyond the range is a clear error and leaves nothing", () => {
    const src = path.join(base, 'owners');
    mkdirSync(path.join(src, 'bin'), { recursive: true });
    cpSync(path.join(state, 'images', 'busybox', 'rootfs', 'bin', 'busybox'), path.join(src, 'bin', 'busybox'));
    for (const o of [0, 1000, 65534]) {
      writeFileSync(path.join(src, `f${o}`), String(o));
      chownSync(path.join(src, `f${o}`), o, o);
    }
    const tar = path.join(base, 'owners.tar');
    execFileSync('tar', ['--numeric-owner', '-C', src, '-cf', tar, '.']);
    chmodSync(tar, 0o644);
    const imp = nsbox(['import', tar, 'owners']);
    expect(imp.stderr).toBe('');
    expect(imp.status).toBe(0);
    expect(statSync(path.join(state, 'images', 'owners', 'rootfs', 'f1000')).uid).toBe(r.subuid + 999);
    const ls = nsbox(['run', '--rm', 'owners', '/bin/busybox', 'stat', '-c', '%u:%g', '/f0', '/f1000', '/f65534']);
    expect(lines(ls.stdout)).toEqual(['0:0', '1000:1000', '65534:65534']);
    expect(nsbox(['rmi', 'owners']).status).toBe(0);
    const beyond = r.count + 1;
    writeFileSync(path.join(src, 'far'), 'x');
    chownSync(path.join(src, 'far'), beyond, 0);
    execFileSync('tar', ['--numeric-owner', '-C', src, '-cf', tar, '.']);
    const bad = nsbox(['import', tar, 'far']);
    expect(bad.status).toBe(125);
    expect(bad.stderr).toMatch(/EINVAL \(fchown\)/);
    expect(bad.stderr).toMatch(/beyond the user's range/);
    expect(dirOf('images')).toEqual(['busybox']);
    nothingLeft();
  });

  it('import at the edges: owner 65536 (the last of the range), a setuid file of 1000 stays SUBUID+999 (never the user), a device is skipped; a symlink planted to the home is not written through', () => {
    const src = path.join(base, 'edges');
    mkdirSync(src);
    writeFileSync(path.join(src, 'last'), 'x');
    chownSync(path.join(src, 'last'), r.count, r.count);
    writeFileSync(path.join(src, 'suid'), 'x');
    chownSync(path.join(src, 'suid'), 1000, 1000);
    chmodSync(path.join(src, 'suid'), 0o4755);
    execFileSync('mknod', [path.join(src, 'null'), 'c', '1', '3']);
    const tar = path.join(base, 'edges.tar');
    execFileSync('tar', ['--numeric-owner', '-C', src, '-cf', tar, '.']);
    chmodSync(tar, 0o644);
    const imp = nsbox(['import', tar, 'edges']);
    expect(imp.stderr).toBe('');
    const root = path.join(state, 'images', 'edges', 'rootfs');
    expect(statSync(path.join(root, 'last'))).toMatchObject({ uid: r.subuid + r.count - 1, gid: r.subgid + r.count - 1 });
    const suid = statSync(path.join(root, 'suid'));
    expect(suid).toMatchObject({ uid: r.subuid + 999, gid: r.subgid + 999 });
    expect(suid.mode & 0o7777).toBe(0o4755);
    expect(existsSync(path.join(root, 'null'))).toBe(false);
    expect(nsbox(['rmi', 'edges']).status).toBe(0);
    // An entry under a symlink the tarball planted (l -> the home) is refused, nothing written there.
    const evil = path.join(base, 'evil-src');
    mkdirSync(path.join(evil, 'l'), { recursive: true });
    writeFileSync(path.join(evil, 'l', 'pwned'), 'x');
    const evilTar = path.join(base, 'evil.tar');
    execFileSync('tar', ['-C', evil, '-cf', evilTar, 'l/pwned']);
    rmSync(path.join(evil, 'l'), { recursive: true });
    symlinkSync(home, path.join(evil, 'l'));
    execFileSync('tar', ['-C', evil, '-cf', path.join(base, 'link.tar'), 'l']);
    // The symlink first, then the file through it: one archive of both.
    execFileSync('tar', ['-A', '-f', path.join(base, 'link.tar'), evilTar]);
    chmodSync(path.join(base, 'link.tar'), 0o644);
    const bad = nsbox(['import', path.join(base, 'link.tar'), 'evil']);
    expect(bad.status).toBe(125);
    expect(bad.stderr).toMatch(/its parent "l" is a symlink/);
    expect(existsSync(path.join(home, 'pwned'))).toBe(false);
    expect(dirOf('images').filter((n) => n !== 'busybox')).toEqual([]);
    nothingLeft();
  });

  it("a root-owned host file through a volume stays unwritable and shows as nobody; host root's files are nobody's inside", () => {
    const rootFile = path.join(base, 'root-file');
    writeFileSync(rootFile, 'root\n', { mode: 0o644 });
    const run = nsbox([
      'run',
      '--rm',
      '-v',
      `${rootFile}:/rf`,
      'busybox',
      'sh',
      '-c',
      'echo x >> /rf; echo "rf=$?"; chown 0 /rf; echo "chown=$?"; stat -c %u:%g /rf',
    ]);
    expect(run.stdout).toMatch(/^rf=1$/m);
    expect(run.stdout).toMatch(/^chown=1$/m);
    expect(run.stdout).toMatch(/^65534:65534$/m);
    expect(readFileSync(rootFile, 'utf8')).toBe('root\n');
    expect(statSync(rootFile).uid).toBe(0);
    nothingLeft();
  });

  it('starts at once in one process each get the range (each child dumpable on its own until newuidmap ran), and leave nothing', () => {
    const out = api(`
      const rt = new nsbox.Runtime();
      const one = async () => {
        const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'cat /proc/self/uid_map; touch /f; chown 1000 /f'], remove: true });
        let text = '';
        c.stdout.on('data', (d) => (text += d));
        const s = await c.wait();
        return s.exitCode + ' ' + text.trim().split(/\\s+/).join(' ');
      };
      console.log(JSON.stringify(await Promise.all(Array.from({ length: 8 }, one))));
    `);
    expect(out.stderr).toBe('');
    const got = JSON.parse(out.stdout.trim().split('\n').pop()!) as string[];
    expect(got).toEqual(Array.from({ length: 8 }, () => `0 0 ${ids!.uid} 1 1 ${r.subuid} ${r.count}`));
    nothingLeft();
  });

  it('eight --rm starts at once whose removals all go through the mapped helper, with execs into another container meanwhile: all done, nothing left', () => {
    // Each exec's CLONE_VM children make Node's address space non-dumpable for a moment; a
    // helper cloned then gets that flag in its copy, and newuidmap would refuse it.
    const out = api(`
      const rt = new nsbox.Runtime();
      const bg = await rt.run({ image: 'busybox', command: ['sleep', '60'], stdio: 'ignore', remove: true });
      let stop = false;
      let execs = 0;
      const execLoop = async () => { while (!stop) { const p = rt.exec(bg.id, { command: ['true'], stdio: 'ignore' }); if ((await p.wait()).exitCode === 0) execs++; } };
      const loops = [execLoop(), execLoop()];
      const make = ['sh', '-c', 'mkdir -m 700 /a; echo x > /a/f; chown -R 1000 /a'];
      const one = async () => { const c = await rt.run({ image: 'busybox', command: make, remove: true, stdio: 'ignore' }); return (await c.wait()).exitCode; };
      const codes = await Promise.all(Array.from({ length: 8 }, one));
      stop = true;
      await Promise.all(loops);
      bg.kill('SIGKILL');
      await bg.wait();
      console.log(JSON.stringify({ codes, execs: execs > 0 }));
    `);
    expect(out.stderr).toBe('');
    expect(JSON.parse(out.stdout.trim().split('\n').pop()!)).toEqual({ codes: Array.from({ length: 8 }, () => 0), execs: true });
    nothingLeft();
  });

  it("the library leaks no fd: a --rm through the mapped helper, a kept one's removal, a refused newuidmap", () => {
    const fake = path.join(base, 'subid-fake-api');
    writeFileSync(fake, `${USER}:300000:65536\n`, { mode: 0o644 });
    const out = api(`
      const fs = require('fs');
      const rt = new nsbox.Runtime();
      const fds = () => fs.readdirSync('/proc/self/fd').length;
      const make = ['sh', '-c', 'mkdir -m 700 /a; echo x > /a/f; chown -R 1000 /a'];
      const once = async () => { const c = await rt.run({ image: 'busybox', command: make, remove: true, stdio: 'ignore' }); await c.wait(); };
      await once();
      const before = fds();
      await once();
      const k = await rt.run({ image: 'busybox', command: make, name: 'keep', stdio: 'ignore' });
      await k.wait();
      await rt.remove('keep');
      process.env.NSBOX_SUBUID = ${JSON.stringify(fake)};
      process.env.NSBOX_SUBGID = ${JSON.stringify(fake)};
      let err = '';
      try { await rt.run({ image: 'busybox', command: ['true'], remove: true, stdio: 'ignore' }); } catch (e) { err = e.message; }
      console.log(JSON.stringify({ before, after: fds(), err }));
    `);
    const res = JSON.parse(out.stdout.trim().split('\n').pop()!) as { before: number; after: number; err: string };
    expect(res.err).toMatch(/^start container: newuidmap PID .* 300000 65536 failed/);
    expect(res.after).toBe(res.before);
    nothingLeft();
  });

  it("a removal's helper refused by newuidmap (the range taken away) fails at once naming it, leaves no process; with the range back rm finishes", () => {
    expect(nsbox(['run', '--name', 'keep', 'busybox', 'sh', '-c', 'mkdir -m 700 /a; echo x > /a/f; chown -R 1000 /a']).status).toBe(0);
    const fake = path.join(base, 'subid-fake-rm');
    writeFileSync(fake, `${USER}:300000:65536\n`, { mode: 0o644 });
    // The helper's child once held its own copy of the pipe's write end: on a refused map it
    // waited for a byte that could never come, and rm hung for good.
    const bad = asUser(['node', path.join(pkg, 'dist/cli/main.js'), 'rm', 'keep'], { NSBOX_SUBUID: fake, NSBOX_SUBGID: fake }, { timeout: 20_000 });
    expect(bad.status).toBe(125);
    expect(bad.stderr).toMatch(/^nsbox: remove .*: newuidmap PID 0 \d+ 1 1 300000 65536 failed \(exit status 1\): the range was refused/);
    expect(userProcesses()).toEqual([]);
    // The first map written, the second refused: the same, naming newgidmap.
    const half = asUser(['node', path.join(pkg, 'dist/cli/main.js'), 'rm', 'keep'], { NSBOX_SUBGID: fake }, { timeout: 20_000 });
    expect(half.status).toBe(125);
    expect(half.stderr).toMatch(/^nsbox: remove .*: newgidmap PID 0 \d+ 1 1 300000 65536 failed \(exit status 1\)/);
    expect(userProcesses()).toEqual([]);
    const again = nsbox(['rm', 'keep']);
    expect(again.stderr).toBe('');
    expect(nsbox(['prune']).status).toBe(0);
    nothingLeft();
  });

  it('the removal helper killed (SIGKILL) midway: a clear error, the rest left for prune, which finishes it; the user file a symlink names stays', () => {
    const secret = path.join(home, 'secret');
    writeFileSync(secret, 'SECRET\n', { mode: 0o600 });
    chownSync(secret, ids!.uid, ids!.gid);
    // 10000 files in directories of 1000 (mode 0700): the helper takes a while to remove them.
    const make = `mkdir -m 700 /a; cd /a; for i in $(seq 100); do mkdir d$i; for j in $(seq 100); do echo x > d$i/f$j; done; done; ln -s ${secret} /a/link; ln -s ${home} /a/home; chown -R -h 1000 /a`;
    expect(nsbox(['run', '--name', 'keep', 'busybox', 'sh', '-c', make]).status).toBe(0);
    const file = path.join(base, 'kill-helper.sh');
    writeFileSync(
      file,
      `node ${path.join(pkg, 'dist/cli/main.js')} rm keep 2>${home}/rm.err & rm=$!
       for i in $(seq 400); do h=$(pgrep -u ${ids!.uid} -f 'ns-helper.js rm' | head -1); [ -n "$h" ] && break; sleep 0.02; done
       [ -n "$h" ] && kill -KILL $h; wait $rm; echo "rm=$? helper=$h"`,
      { mode: 0o644 },
    );
    const run = asUser(['sh', file]);
    const err = readFileSync(path.join(home, 'rm.err'), 'utf8');
    rmSync(path.join(home, 'rm.err'));
    expect(run.stdout).toMatch(/^rm=125 helper=\d+$/m);
    expect(err).toMatch(/^nsbox: remove .*: the helper in the user namespace was killed by SIGKILL/);
    expect(err).toMatch(/hint: .*nsbox prune/);
    expect(nsbox(['prune']).status).toBe(0);
    expect(readFileSync(secret, 'utf8')).toBe('SECRET\n');
    expect(statSync(home).isDirectory()).toBe(true);
    rmSync(secret);
    nothingLeft();
  });

  it("the mapped helper gets no environment (a caller's NODE_OPTIONS loads nothing into it) and no fd but its stdio", () => {
    const marker = path.join(base, 'tmp-marker');
    const evil = path.join(base, 'evil.js');
    writeFileSync(evil, `require('fs').writeFileSync(${JSON.stringify(marker)}, 'loaded');\n`, { mode: 0o644 });
    const body = `
      const fs = require('fs');
      const { native } = require(${JSON.stringify(path.join(pkg, 'dist/native.js'))});
      const rt = new nsbox.Runtime();
      const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'mkdir -m 700 /a; echo x > /a/f; chown -R 1000 /a'], name: 'keep', stdio: 'ignore' });
      await c.wait();
      // Set after this process started: only a child that takes the environment would load it.
      process.env.NODE_OPTIONS = '--require ${evil}';
      await rt.remove('keep');
      const out = fs.openSync(${JSON.stringify(path.join(base, 'tmp', 'fds'))}, 'w+');
      fs.unlinkSync(${JSON.stringify(path.join(base, 'tmp', 'fds'))});
      const a = ['0', String(process.getuid()), '1', '1', '${r.subuid}', '${r.count}'];
      const g = ['0', String(process.getgid()), '1', '1', '${r.subgid}', '${r.count}'];
      const res = native().runInUserns({ file: '/bin/sh', argv: ['/bin/sh', '-c', 'ls /proc/$$/fd; echo env; env'], env: [], out,
        newuidmap: '/usr/bin/newuidmap', uidArgs: a, newgidmap: '/usr/bin/newgidmap', gidArgs: g });
      const text = fs.readFileSync('/proc/self/fd/' + out, 'utf8');
      console.log(JSON.stringify({ res, text }));
    `;
    const file = box.apiScript(body, 'api-env.js');
    // fd 200: one the caller's own parent left open, not close-on-exec.
    const run = asUser(['bash', '-c', `exec 200</etc/hostname; exec node ${file}`]);
    const got = JSON.parse(run.stdout.trim().split('\n').pop()!) as { res: { status: number }; text: string };
    expect(got.res).toEqual({ status: 0 });
    const [fds, env] = got.text.split('env\n');
    expect(fds!.trim().split(/\s+/).sort()).toEqual(['0', '1', '2']);
    expect(env!.split('\n').filter((l) => l !== '' && !/^(PWD|SHLVL|_|OLDPWD)=/.test(l))).toEqual([]);
    expect(existsSync(marker)).toBe(false);
    nothingLeft();
  });

  it("an entry holding host id 0 or the user's own uid is never used (a container's id 1 would be the host's root): the next entry is, else a clear error", () => {
    const fake = path.join(base, 'subid-zero');
    writeFileSync(fake, `${USER}:0:65536\n${ids!.uid}:${ids!.uid}:10\n${USER}:${r.subuid}:${r.count}\n`, { mode: 0o644 });
    const env = { NSBOX_SUBUID: fake, NSBOX_SUBGID: fake, NSBOX_ID_MAP: 'subuid' };
    const out = nsbox(['run', '--rm', 'busybox', 'sh', '-c', 'cat /proc/self/uid_map /proc/self/gid_map'], env);
    expect(out.stderr).toBe('');
    expect(lines(out.stdout)).toEqual([`0 ${ids!.uid} 1`, `1 ${r.subuid} ${r.count}`, `0 ${ids!.gid} 1`, `1 ${r.subuid} ${r.count}`]);
    writeFileSync(fake, `${USER}:0:65536\n${USER}:1:${ids!.uid}\n`, { mode: 0o644 });
    const none = nsbox(['run', '--rm', 'busybox', 'true'], env);
    expect(none.status).toBe(125);
    expect(none.stderr).toMatch(/^nsbox: idMap subuid: uid \d+ has no range .*host id 0/);
    nothingLeft();
  });

  it('a range of 10 ids (smaller than 65536): ids up to 10 work, --user 1000 is refused naming the range (not the one-id map), chown to 1000 inside fails', () => {
    const small = path.join(base, 'subid-small');
    writeFileSync(small, `${USER}:${r.subuid}:10\n`, { mode: 0o644 });
    const env = { NSBOX_SUBUID: small, NSBOX_SUBGID: small };
    const ok = nsbox(['run', '--rm', '--user', '10:10', 'busybox', 'sh', '-c', 'id -u; cat /proc/self/uid_map'], env);
    expect(ok.stderr).toBe('');
    expect(lines(ok.stdout)).toEqual(['10', `0 ${ids!.uid} 1`, `1 ${r.subuid} 10`]);
    const big = nsbox(['run', '--rm', '--user', '1000', 'busybox', 'id'], env);
    expect(big.status).toBe(125);
    expect(big.stderr).toMatch(/^nsbox: user: 1000:1000: rootless with the \/etc\/subuid range, only ids 0 to 10 exist inside the container/);
    const chown = nsbox(['run', '--rm', 'busybox', 'sh', '-c', 'touch /f; chown 1000 /f 2>/dev/null; echo $?; chown 10 /f; stat -c %u /f'], env);
    expect(lines(chown.stdout)).toEqual(['1', '10']);
    nothingLeft();
  });

  it('a range the user does not own: newuidmap refuses, a clear error naming it, and nothing is left', () => {
    const fake = path.join(base, 'subid-fake');
    writeFileSync(fake, `${USER}:300000:65536\n`, { mode: 0o644 });
    const env = { NSBOX_SUBUID: fake, NSBOX_SUBGID: fake };
    const bad = nsbox(['run', '--rm', 'busybox', 'true'], env);
    expect(bad.status).toBe(125);
    expect(bad.stderr).toMatch(/^nsbox: start container: newuidmap PID 0 \d+ 1 1 300000 65536 failed \(exit status 1\)/);
    expect(
      bad.stderr
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('nsbox:')),
    ).toHaveLength(1);
    const kept = nsbox(['run', '--name', 'keep', 'busybox', 'true'], env);
    expect(kept.status).toBe(125);
    const det = nsbox(['run', '-d', '--name', 'det', 'busybox', 'sleep', '30'], env);
    expect(det.status).toBe(125);
    expect(det.stderr).toMatch(/newuidmap/);
    expect(nsbox(['ps', '-a']).stdout.trim().split('\n')).toHaveLength(1);
    // NSBOX_ID_MAP=single still starts with the one-id map; subuid asked for without a range is refused.
    expect(lines(nsbox(['run', '--rm', 'busybox', 'cat', '/proc/self/uid_map'], { NSBOX_ID_MAP: 'single' }).stdout)).toEqual([`0 ${ids!.uid} 1`]);
    const none = nsbox(['run', '--rm', 'busybox', 'true'], { NSBOX_ID_MAP: 'subuid', NSBOX_SUBUID: '/nonexistent' });
    expect(none.status).toBe(125);
    expect(none.stderr).toMatch(/idMap subuid: uid \d+ has no range/);
    nothingLeft();
  });
});
