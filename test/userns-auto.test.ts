// userns: 'auto' (root's containers in a user namespace of their own, 65536 host ids each):
// the maps seen inside, what root inside is on the host (volumes, a setuid binary, a host file
// of root's), what stays refused, commit giving the ids back, exec, ranges per container and
// freed by rm, and nothing left behind after a start or a failed one.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Container } from '../src/container';
import { NsboxError } from '../src/errors';
import { Runtime } from '../src/runtime';
import { Layout } from '../src/layout';
import { ClaimsLock, DEFAULT_BASE, RANGE_SIZE, claimTarget, pruneStaleRanges, releaseRange } from '../src/userns';
import { childPids, claimsOf, collect, hostMounts, openFds } from './helpers';

let root: string;
let host: string;
let rt: Runtime;
let claims: string;
const sharedClaims = process.env.NSBOX_IDRANGES_DIR;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-userns-'));
  // Host-wide claims of this file's own: the other test files' containers would take the
  // ranges these tests expect to get again (test/userns-hostwide.test.ts shares one).
  claims = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-userns-claims-'));
  process.env.NSBOX_IDRANGES_DIR = claims;
  host = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-userns-host-'));
  // Reachable by anyone: the setuid test runs a file in it as nobody.
  fs.chmodSync(host, 0o755);
  rt = new Runtime({ root });
});
afterAll(() => {
  if (sharedClaims === undefined) delete process.env.NSBOX_IDRANGES_DIR;
  else process.env.NSBOX_IDRANGES_DIR = sharedClaims;
  fs.rmSync(claims, { recursive: true, force: true });
  fs.rmSync(root, { recursive: true, force: true });
  fs.rmSync(host, { recursive: true, force: true });
});

async function sh(script: string, extra: { volumes?: string[]; limits?: { memory?: string; pids?: number } } = {}) {
  const c = await rt.run({ image: 'busybox', userns: 'auto', command: ['sh', '-c', script], ...extra });
  const [out, err] = [collect(c.stdout), collect(c.stderr)];
  const status = await c.wait();
  return { c, status, out: await out, err: await err, range: rt.inspect(c.id!).userns };
}

/** A directory the container's root may write: owned by the range's root on the host. */
function volumeFor(name: string, uid: number): string {
  const d = path.join(host, name);
  fs.mkdirSync(d);
  fs.chownSync(d, uid, uid);
  return d;
}

const nsboxCgroupDirs = (id: string): string[] => {
  const out: string[] = [];
  for (const c of fs.readdirSync('/sys/fs/cgroup')) {
    const walk = (d: string, depth: number) => {
      if (depth > 4) return;
      let names: string[];
      try {
        names = fs.readdirSync(d);
      } catch {
        return;
      }
      for (const n of names) {
        const p = path.join(d, n);
        if (n === id) out.push(p);
        else if (n === 'nsbox' || depth < 2) {
          try {
            if (fs.lstatSync(p).isDirectory()) walk(p, depth + 1);
          } catch {
            // gone
          }
        }
      }
    };
    walk(path.join('/sys/fs/cgroup', c), 0);
  }
  return out;
};

describe("userns: 'auto'", () => {
  it('maps 0 BASE 65536 inside, root is 0 there, and inspect shows the map', async () => {
    const r = await sh('cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; ls -ln /bin/busybox');
    expect(r.status.exitCode).toBe(0);
    const info = rt.inspect(r.c.id!);
    expect(info.idMap).toBe('auto');
    const base = Number(/^0 (\d+) 65536$/.exec(info.userns!.uidMap)![1]);
    expect(base).toBeGreaterThanOrEqual(DEFAULT_BASE);
    const lines = r.out.trim().split('\n');
    expect(lines[0]!.trim().split(/\s+/)).toEqual(['0', String(base), String(RANGE_SIZE)]);
    expect(lines[1]!.trim().split(/\s+/)).toEqual(['0', String(base), String(RANGE_SIZE)]);
    expect(lines[2]).toBe('0');
    expect(lines[3]).toBe('0');
    // The image layer, owned by host root, is root's inside (idmapped), not nobody's.
    expect(lines[4]).toMatch(/^-r[-w]xr-xr-x\s+\d+\s+0\s+0\s/);
    // On the host the container's processes ran as BASE, not 0: its write layer says so.
    expect(fs.statSync(path.join(root, 'containers', r.c.id!, 'upper')).uid).toBe(base);
    await r.c.remove();
  });

  it("makes what root creates in a volume the range's root on the host, and refuses host root's files", async () => {
    const probe = await sh('true');
    const base = Number(/^0 (\d+)/.exec(probe.range!.uidMap)![1]);
    await probe.c.remove();
    const v = volumeFor('vol', base);
    const secret = path.join(v, 'secret');
    fs.writeFileSync(secret, 'host root only\n', { mode: 0o600 });
    fs.chownSync(secret, 0, 0);
    const r = await sh('echo made > /v/made; chown 1000:1000 /v/made && echo chowned; cat /v/secret 2>&1; echo rc=$?; ls -ln /v/secret', {
      volumes: [`${v}:/v`],
    });
    expect(r.range!.uidMap).toBe(`0 ${base} 65536`); // the same range again: the first was freed
    expect(r.out).toMatch(/^chowned\n/);
    expect(r.out).toMatch(/Permission denied\nrc=1\n/);
    // Host root's file is nobody's inside: its owner is not mapped.
    expect(r.out).toMatch(/-rw-------\s+\d+\s+65534\s+65534\s/);
    const st = fs.statSync(path.join(v, 'made'));
    expect([st.uid, st.gid]).toEqual([base + 1000, base + 1000]);
    await r.c.remove();
  });

  it('gives a setuid-root binary made inside nothing on the host: it belongs to BASE, not 0', async () => {
    const probe = await sh('true');
    const base = Number(/^0 (\d+)/.exec(probe.range!.uidMap)![1]);
    await probe.c.remove();
    const v = volumeFor('suid', base);
    const src = path.join(host, 'euid.c');
    fs.writeFileSync(src, '#include <stdio.h>\n#include <unistd.h>\nint main(void) { printf("%u\\n", (unsigned)geteuid()); return 0; }\n');
    execFileSync('cc', ['-o', path.join(v, 'euid'), src]);
    const r = await sh('cp /v/euid /v/suid && chmod 4755 /v/suid && ls -ln /v/suid', { volumes: [`${v}:/v`] });
    expect(r.status.exitCode).toBe(0);
    expect(r.out).toMatch(/^-rwsr-xr-x\s+\d+\s+0\s+0\s/); // setuid root, as the container sees it
    const st = fs.statSync(path.join(v, 'suid'));
    expect(st.uid).toBe(base);
    expect(st.mode & 0o4000).toBe(0o4000);
    // Run from the host by nobody: the set-user-id makes it BASE, never 0.
    const ran = spawnSync(path.join(v, 'suid'), [], { uid: 65534, gid: 65534, encoding: 'utf8' });
    expect(ran.status).toBe(0);
    expect(ran.stdout.trim()).toBe(String(base));
    await r.c.remove();
  });

  it('cannot steer commit with overlay metadata of its own, nor own a file as an id outside its range', async () => {
    // Its overlay keeps its metadata in user.overlay.* (userxattr): set from inside, the kernel
    // stores them escaped, and commit takes none of them; /etc stays merged with the image's.
    const probe = await sh('true');
    const base = Number(/^0 (\d+)/.exec(probe.range!.uidMap)![1]);
    await probe.c.remove();
    const v = volumeFor('xattr', base);
    const src = path.join(host, 'ovl.c');
    fs.writeFileSync(
      src,
      [
        '#include <stdio.h>',
        '#include <sys/xattr.h>',
        'int main(int argc, char** argv) {',
        '  const char* n[] = {"user.overlay.opaque", "user.overlay.redirect", "user.overlay.whiteout", "trusted.overlay.opaque"};',
        '  for (int i = 0; i < 4; i++) printf("%s=%d\\n", n[i], setxattr(argv[1], n[i], "y", 1, 0));',
        '  return 0;',
        '}',
      ].join('\n'),
    );
    execFileSync('gcc', ['-static', '-O2', '-o', path.join(v, 'ovl'), src]);
    const r = await sh('/v/ovl /etc; touch /etc/mine /v/mine; chown 70000 /v/mine 2>/dev/null && echo chown-ok; chown 65535:65535 /v/mine && echo last-ok', {
      volumes: [`${v}:/v`],
    });
    expect(r.out).toContain('trusted.overlay.opaque=-1');
    expect(r.out).not.toContain('chown-ok');
    expect(r.out).toContain('last-ok');
    // Outside the range it cannot name; its last id is BASE + 65535.
    expect(fs.statSync(path.join(v, 'mine')).uid).toBe(base + 65535);
    const upper = path.join(root, 'containers', r.c.id!, 'upper', 'etc');
    const names = execFileSync('python3', ['-c', `import os,sys; print("\\n".join(os.listxattr(sys.argv[1])))`, upper], { encoding: 'utf8' });
    expect(names).not.toMatch(/^user\.overlay\.(opaque|redirect|whiteout)$/m);
    await rt.commit(r.c.id!, 'userns-xattr');
    const plain = await rt.run({ image: 'userns-xattr', command: ['sh', '-c', 'ls /etc'] });
    const listing = await collect(plain.stdout);
    expect((await plain.wait()).exitCode).toBe(0);
    expect(listing.split('\n')).toEqual(expect.arrayContaining(['mine', 'passwd', 'group']));
    await plain.remove();
    await r.c.remove();
    await rt.removeImage('userns-xattr');
  });

  it('still refuses mknod, mounts and a nested user namespace', async () => {
    const r = await sh(
      'mknod /tmp/null c 1 3 2>/dev/null && echo mknod-ok; mount -t tmpfs none /mnt 2>/dev/null && echo mount-ok; mount --bind /bin /mnt 2>/dev/null && echo bind-ok; unshare -U true 2>/dev/null && echo userns-ok; echo done',
    );
    expect(r.out).toBe('done\n');
    await r.c.remove();
  });

  it('gives two live containers different ranges, and joins cgroups with limits', async () => {
    const a = await rt.run({ image: 'busybox', userns: 'auto', command: ['sleep', '30'] });
    const b = await rt.run({ image: 'busybox', userns: 'auto', command: ['sh', '-c', 'cat /proc/self/uid_map'], limits: { memory: '64m', pids: 50 } });
    const out = await collect(b.stdout);
    expect((await b.wait()).exitCode).toBe(0);
    const ra = rt.inspect(a.id!).userns!.uidMap;
    const rb = rt.inspect(b.id!).userns!.uidMap;
    expect(ra).not.toBe(rb);
    expect(out.trim().split(/\s+/).join(' ')).toBe(rb);
    // exec enters its user namespace too, as its root.
    const e = a.exec({ command: ['sh', '-c', 'id -u; cat /proc/self/uid_map'] });
    const eout = await collect(e.stdout);
    expect((await e.wait()).exitCode).toBe(0);
    expect(eout.split('\n')[0]).toBe('0');
    expect(eout.split('\n')[1]!.trim().split(/\s+/).join(' ')).toBe(ra);
    // Through the Runtime too (as nsbox exec does).
    const e2 = rt.exec(a.id!, { command: ['id', '-u'] });
    expect((await collect(e2.stdout)).trim()).toBe('0');
    await e2.wait();
    await a.remove({ force: true });
    await b.remove();
    expect(claimsOf(root)).toEqual([]);
  });

  it('commits an image whose files are owned as inside (0, 1000), and it runs in a plain container', async () => {
    const c = await rt.run({
      image: 'busybox',
      userns: 'auto',
      command: ['sh', '-c', 'echo x > /made && mkdir /d && echo y > /d/u && chown -R 1000:1000 /d && rm /bin/true && mkdir -p /etc/o && touch /etc/o/f'],
    });
    expect((await c.wait()).exitCode).toBe(0);
    const img = await rt.commit(c.id!, 'userns-commit');
    const layer = img.rootfs;
    expect([fs.statSync(path.join(layer, 'made')).uid, fs.statSync(path.join(layer, 'made')).gid]).toEqual([0, 0]);
    expect(fs.statSync(path.join(layer, 'd/u')).uid).toBe(1000);
    expect(fs.existsSync(path.join(layer, 'bin/true'))).toBe(false); // the whiteout took
    await c.remove();
    const plain = await rt.run({ image: 'userns-commit', command: ['sh', '-c', 'ls -ln /made /d/u; cat /proc/self/uid_map'] });
    const out = await collect(plain.stdout);
    expect((await plain.wait()).exitCode).toBe(0);
    expect(out).toMatch(/\s0\s+0\s.*\/made/);
    expect(out).toMatch(/\s1000\s+1000\s.*\/d\/u/);
    expect(out).toMatch(/^\s*0\s+0\s+4294967295\s*$/m); // no user namespace of its own
    await plain.remove();
    // And again under userns auto: the committed layer is idmapped like any image.
    const again = await rt.run({ image: 'userns-commit', userns: 'auto', command: ['ls', '-ln', '/made'] });
    const againOut = await collect(again.stdout);
    await again.wait();
    expect(againOut).toMatch(/\s0\s+0\s/);
    await again.remove();
    await rt.images.remove('userns-commit');
  });

  it('leaves nothing behind, after a start and after a failed one', async () => {
    const before = { fds: openFds(), children: childPids(), mounts: hostMounts() };
    const ok = await sh('true', { limits: { memory: '32m' } });
    const okId = ok.c.id!;
    await ok.c.remove();
    let err: unknown;
    try {
      await rt.run({ image: 'busybox', userns: 'auto', command: ['/no/such/command'], limits: { memory: '32m' } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NsboxError);
    expect((err as NsboxError).message).toMatch(/no\/such\/command/);
    expect(openFds()).toEqual(before.fds);
    expect(childPids()).toEqual(before.children);
    expect(hostMounts()).toEqual(before.mounts);
    expect(nsboxCgroupDirs(okId)).toEqual([]);
    expect(fs.readdirSync(path.join(root, 'containers')).filter((n) => !n.startsWith('.'))).toEqual([]);
    expect(claimsOf(root)).toEqual([]);
  });

  it('copies out and in with the ids the container sees; refuses a stopped one', async () => {
    const c = await rt.run({ image: 'busybox', userns: 'auto', command: ['sh', '-c', 'echo in > /made && chown 7:8 /made && echo ready && sleep 30'] });
    const ready = new Promise<void>((resolve) => c.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve()));
    await ready;
    const stream = await rt.copyOut(c.id!, '/made');
    const chunks: Buffer[] = [];
    for await (const d of stream) chunks.push(d as Buffer);
    const listing = execFileSync('tar', ['-tv', '--numeric-owner'], { input: Buffer.concat(chunks), encoding: 'utf8' });
    expect(listing).toMatch(/^-rw-r--r-- 7\/8 /);
    const bin = await rt.copyOut(c.id!, '/bin/busybox');
    const binChunks: Buffer[] = [];
    for await (const d of bin) binChunks.push(d as Buffer);
    // The image's file, idmapped inside: root's, as the image has it.
    expect(execFileSync('tar', ['-tv', '--numeric-owner'], { input: Buffer.concat(binChunks), encoding: 'utf8' })).toMatch(/ 0\/0 /);
    const f = path.join(host, 'cp-in');
    fs.writeFileSync(f, 'x');
    // In: created as the range's root (its overlay refuses an unmapped creator), owned as asked.
    await rt.copyIn(c.id!, f, '/tmp/');
    await rt.copyIn(c.id!, f, '/tmp/as1000', { owner: { uid: 1000, gid: 1000 } });
    const ls = rt.exec(c.id!, { command: ['ls', '-ln', '/tmp/cp-in', '/tmp/as1000'] });
    const lsOut = await collect(ls.stdout);
    await ls.wait();
    expect(lsOut).toMatch(/^-\S+\s+\d+\s+0\s+0\s.*\/tmp\/as1000$|\s1000\s+1000\s.*\/tmp\/as1000/m);
    expect(lsOut).toMatch(/\s0\s+0\s.*\/tmp\/cp-in$/m);
    const base = Number(/^0 (\d+)/.exec(rt.inspect(c.id!).userns!.uidMap)![1]);
    expect(fs.statSync(path.join(root, 'containers', c.id!, 'upper', 'tmp', 'cp-in')).uid).toBe(base);
    expect(fs.statSync(path.join(root, 'containers', c.id!, 'upper', 'tmp', 'as1000')).uid).toBe(base + 1000);
    // An owner the container's namespace does not map is refused, not squashed.
    await expect(rt.copyIn(c.id!, f, '/tmp/big', { owner: { uid: 70000, gid: 0 } })).rejects.toThrow(/uid 70000 does not exist in the container/);
    // This process creates as root again afterwards.
    const after = path.join(host, 'after');
    fs.writeFileSync(after, '');
    expect(fs.statSync(after).uid).toBe(0);
    c.kill('SIGKILL');
    await c.wait();
    await expect(rt.copyOut(c.id!, '/made')).rejects.toThrow(/not running: copies go through its running root only/);
    await c.remove();
  });

  it('takes its ranges from /etc/subuid and /etc/subgid entries of nsbox when there are some', async () => {
    const subuid = path.join(host, 'subuid');
    const subgid = path.join(host, 'subgid');
    fs.writeFileSync(subuid, 'someone:100000:65536\nnsbox:300000:131072\n');
    fs.writeFileSync(subgid, 'nsbox:500000:65536\n');
    process.env.NSBOX_SUBUID = subuid;
    process.env.NSBOX_SUBGID = subgid;
    try {
      const a = await rt.run({ image: 'busybox', userns: 'auto', command: ['sh', '-c', 'cat /proc/self/uid_map /proc/self/gid_map'] });
      const out = await collect(a.stdout);
      await a.wait();
      expect(
        out
          .trim()
          .split('\n')
          .map((l) => l.trim().split(/\s+/).join(' ')),
      ).toEqual(['0 300000 65536', '0 500000 65536']);
      // The one gid slice is taken: a second live container finds no range, and says so.
      const b = await rt.run({ image: 'busybox', userns: 'auto', command: ['sleep', '10'] }).catch((e: unknown) => e);
      expect(b).toBeInstanceOf(NsboxError);
      expect((b as NsboxError).message).toMatch(/every host id range is in use/);
      await a.remove();
    } finally {
      delete process.env.NSBOX_SUBUID;
      delete process.env.NSBOX_SUBGID;
    }
    expect(fs.readdirSync(path.join(root, 'containers')).filter((n) => !n.startsWith('.'))).toEqual([]);
  });

  it('copies in with a range above 2^31 (ids are unsigned: /etc/subuid may give such ranges)', async () => {
    const high = 3_000_000_000;
    const subuid = path.join(host, 'subuid-high');
    fs.writeFileSync(subuid, `nsbox:${high}:65536\n`);
    process.env.NSBOX_SUBUID = subuid;
    process.env.NSBOX_SUBGID = subuid;
    let c: Container | undefined;
    try {
      c = await rt.run({ image: 'busybox', userns: 'auto', command: ['sh', '-c', 'echo ready; exec sleep 30'] });
      const ready = c;
      await new Promise<void>((resolve) => ready.stdout!.once('data', () => resolve()));
      const f = path.join(host, 'high-in');
      fs.writeFileSync(f, 'x');
      await rt.copyIn(ready.id!, f, '/tmp/', { owner: { uid: 7, gid: 8 } });
      const st = fs.statSync(path.join(root, 'containers', ready.id!, 'upper', 'tmp', 'high-in'));
      expect([st.uid, st.gid]).toEqual([high + 7, high + 8]);
      const ls = rt.exec(ready.id!, { command: ['stat', '-c', '%u %g', '/tmp/high-in'] });
      expect((await collect(ls.stdout)).trim()).toBe('7 8');
      await ls.wait();
      const chunks: Buffer[] = [];
      for await (const d of await rt.copyOut(ready.id!, '/tmp/high-in')) chunks.push(d as Buffer);
      expect(execFileSync('tar', ['-tv', '--numeric-owner'], { input: Buffer.concat(chunks), encoding: 'utf8' })).toMatch(/^-\S+ 7\/8 /);
      // Created as the range's root, then as root again.
      const after = path.join(host, 'high-after');
      fs.writeFileSync(after, '');
      expect(fs.statSync(after).uid).toBe(0);
    } finally {
      await c?.remove({ force: true });
      delete process.env.NSBOX_SUBUID;
      delete process.env.NSBOX_SUBGID;
    }
  });

  it('gives this thread its own ids back when a creation as the range fails midway (EROFS)', async () => {
    const ro = fs.mkdtempSync(path.join(host, 'ro-'));
    fs.chmodSync(ro, 0o755);
    const c = await rt.run({ image: 'busybox', userns: 'auto', volumes: [`${ro}:/ro:ro`], command: ['sh', '-c', 'echo ready; exec sleep 30'] });
    try {
      await new Promise<void>((resolve) => c.stdout!.once('data', () => resolve()));
      const f = path.join(host, 'to-ro');
      fs.writeFileSync(f, 'x');
      // The open that creates it, made as BASE, fails: the error leaves setfsuid's scope.
      await expect(rt.copyIn(c.id!, f, '/ro/')).rejects.toMatchObject({ code: 'EROFS' });
      const ids = (line: string) =>
        /^\S+:\s+(.*)$/m
          .exec(
            fs
              .readFileSync('/proc/thread-self/status', 'utf8')
              .split('\n')
              .find((l) => l.startsWith(line))!,
          )![1]!
          .split(/\s+/);
      expect(ids('Uid:')).toEqual(['0', '0', '0', '0']);
      expect(ids('Gid:')).toEqual(['0', '0', '0', '0']);
      expect(fs.readdirSync(ro)).toEqual([]);
    } finally {
      await c.remove({ force: true });
    }
  });

  it('runs detached (-d): the monitor writes the maps; exec, stop, rm free the range; a failed start leaves nothing', async () => {
    const before = { fds: openFds(), children: childPids(), mounts: hostMounts() };
    const d = await rt.run({
      image: 'busybox',
      userns: 'auto',
      detach: true,
      command: ['sh', '-c', 'cat /proc/self/uid_map; id -u; echo made > /made; exec sleep 30'],
    });
    const map = rt.inspect(d.id).userns!.uidMap;
    // Its output is in its log once the monitor has read it.
    let lines: string[] = [];
    for (let i = 0; i < 200 && lines.length < 2; i++) {
      lines = [];
      for await (const e of rt.logs(d.id)) lines.push(e.line);
      if (lines.length < 2) await new Promise((r) => setTimeout(r, 25));
    }
    expect(lines[0]!.trim().split(/\s+/).join(' ')).toBe(map);
    expect(lines[1]).toBe('0');
    const e = rt.exec(d.id, { command: ['sh', '-c', 'id -u; cat /made'] });
    expect(await collect(e.stdout)).toBe('0\nmade\n');
    await e.wait();
    const base = Number(/^0 (\d+)/.exec(map)![1]);
    expect(fs.statSync(path.join(root, 'containers', d.id, 'upper', 'made')).uid).toBe(base);
    await rt.stop(d.id, { timeout: 1 });
    await rt.remove(d.id);
    expect(claimsOf(root)).toEqual([]);
    const bad = await rt.run({ image: 'busybox', userns: 'auto', detach: true, command: ['/no/such/command'] }).catch((x: unknown) => x);
    expect(bad).toBeInstanceOf(NsboxError);
    expect(openFds()).toEqual(before.fds);
    expect(childPids()).toEqual(before.children);
    expect(hostMounts()).toEqual(before.mounts);
    expect(fs.readdirSync(path.join(root, 'containers')).filter((n) => !n.startsWith('.'))).toEqual([]);
    expect(claimsOf(root)).toEqual([]);
  });

  it('starts a stopped container again in its range, with its files', async () => {
    const c = await rt.run({ image: 'busybox', userns: 'auto', command: ['sh', '-c', 'echo $(cat /n 2>/dev/null)x > /n; cat /n; cat /proc/self/uid_map'] });
    const first = await collect(c.stdout);
    await c.wait();
    const map = rt.inspect(c.id!).userns!.uidMap;
    const again = (await rt.start(c.id!, { attach: true })) as Container;
    const second = await collect(again.stdout);
    await again.wait();
    expect(first.split('\n')[0]).toBe('x');
    expect(second.split('\n')[0]).toBe('xx');
    expect(second.split('\n')[1]!.trim().split(/\s+/).join(' ')).toBe(map);
    expect(rt.inspect(c.id!).userns!.uidMap).toBe(map);
    await c.remove();
    expect(claimsOf(root)).toEqual([]);
  });

  it('frees the range of a --rm container once wait() resolves', async () => {
    const c = await rt.run({ image: 'busybox', userns: 'auto', remove: true, command: ['true'] });
    expect(claimsOf(root)).toHaveLength(1);
    expect((await c.wait()).exitCode).toBe(0);
    expect(claimsOf(root)).toEqual([]);
    expect(fs.readdirSync(path.join(root, 'containers')).filter((n) => !n.startsWith('.'))).toEqual([]);
  });

  it('frees and prunes claims only under the host-wide lock: never one an allocation is giving to a new container', () => {
    // An allocation takes back a claim whose container is gone and may give its base to a new
    // container at once; a removal that read the old claim and deleted the new one would free
    // a live range, and the next allocation would hand it out twice.
    const layout = new Layout(path.join(os.tmpdir(), `nsbox-idlock-${process.pid}`));
    layout.ensure();
    const me = fs.realpathSync(layout.root);
    try {
      const range = { uidBase: DEFAULT_BASE, gidBase: DEFAULT_BASE, size: RANGE_SIZE };
      const claim = path.join(claims, String(DEFAULT_BASE));
      const owner = (id: string) => claimTarget({ ...range, id, stateDir: me });
      fs.symlinkSync(owner('aaaaaaaaaaaa'), claim); // its container directory is gone
      const held = ClaimsLock.tryTake(claims)!;
      expect(held).toBeDefined();
      // The flock is the open file's: a second one, even in this process, waits.
      expect(ClaimsLock.tryTake(claims)).toBeUndefined();
      releaseRange(layout, 'aaaaaaaaaaaa', range, 50);
      pruneStaleRanges(layout, 50);
      // Left for the holder (the next allocation takes a stale claim back itself).
      expect(fs.readlinkSync(claim)).toBe(owner('aaaaaaaaaaaa'));
      held.release();
      releaseRange(layout, 'aaaaaaaaaaaa', range);
      expect(fs.existsSync(claim)).toBe(false);
      fs.symlinkSync(owner('bbbbbbbbbbbb'), claim);
      pruneStaleRanges(layout);
      expect(fs.existsSync(claim)).toBe(false);
      // A live container's claim stays, and the lock is not left taken.
      fs.mkdirSync(layout.containerDir('cccccccccccc'));
      fs.symlinkSync(owner('cccccccccccc'), claim);
      pruneStaleRanges(layout);
      releaseRange(layout, 'aaaaaaaaaaaa', range);
      expect(fs.readlinkSync(claim)).toBe(owner('cccccccccccc'));
      const again = ClaimsLock.tryTake(claims);
      expect(again).toBeDefined();
      again!.release();
      fs.rmSync(claim);
    } finally {
      fs.rmSync(layout.root, { recursive: true, force: true });
    }
  });

  it('is refused where it is not built, naming why', async () => {
    await expect(rt.run({ image: 'busybox', userns: 'auto', command: ['true'], limits: { disk: '10m' } })).rejects.toThrow(/userns auto: not with limits.disk/);
    await expect(rt.run({ image: 'busybox', userns: 'bogus' as 'auto', command: ['true'] })).rejects.toThrow(/userns/);
    expect(fs.readdirSync(path.join(root, 'containers')).filter((n) => !n.startsWith('.'))).toEqual([]);
  });

  it('works from the CLI: nsbox run --userns auto', () => {
    const cli = path.resolve(__dirname, '../dist/cli/start.js');
    const out = execFileSync(process.execPath, [cli, '--root', root, 'run', '--rm', '--userns', 'auto', 'busybox', 'cat', '/proc/self/uid_map'], {
      encoding: 'utf8',
    });
    expect(out.trim().split(/\s+/)).toEqual(['0', expect.stringMatching(/^\d+$/), '65536']);
    expect(Number(out.trim().split(/\s+/)[1])).toBeGreaterThanOrEqual(DEFAULT_BASE);
    const bad = spawnSync(process.execPath, [cli, '--root', root, 'run', '--rm', '--userns', 'maybe', 'busybox', 'true'], { encoding: 'utf8' });
    expect(bad.status).toBe(125);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  });
});
