// Rootless: nsbox run by an unprivileged user. The tests run as root (vitest), so every
// container here is started by `nsboxuser` through runuser (test/user-box.ts).
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { USER, UserBox, userIds } from './user-box';

/** The user, made when missing (as .ci/run does); a reason when it cannot be. */
function ensureUser(): string | undefined {
  if (spawnSync('id', ['-u', USER]).status === 0) return undefined;
  const r = spawnSync('useradd', ['-m', USER], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `cannot create user ${USER}: ${r.stderr || r.error?.message}`;
}
const skipReason = ensureUser();
const ids = (skipReason ? undefined : userIds()) ?? { uid: -1, gid: -1 };
// The one-id map, whatever /etc/subuid gives the user (the range: rootless-subuid.test.ts).
const box = new UserBox(ids, { prefix: 'nsbox-rootless-', env: { NSBOX_ID_MAP: 'single' } });
const { base, pkg, home, state, asUser, nsbox, api, userProcesses, ourMounts } = box;

/** Container directories left in the state (not records of kept containers). */
const leftContainers = () => (existsSync(path.join(state, 'containers')) ? readdirSync(path.join(state, 'containers')) : []);

describe.skipIf(!!skipReason)(`rootless, as ${USER}${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  beforeAll(() => box.setup());

  afterAll(() => {
    if (!existsSync(base)) return;
    nsbox(['rm', '-f', 'keep', 'det', 'c1']);
    box.dispose();
  });

  it('runs a container whose root is the user, mapped one id to one', () => {
    const r = nsbox([
      'run',
      '--rm',
      'busybox',
      'sh',
      '-c',
      'id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; cat /proc/self/setgroups; grep -E "^(Seccomp|NoNewPrivs|CapBnd):" /proc/self/status',
    ]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/).join(' '));
    expect(lines.slice(0, 5)).toEqual(['0', '0', `0 ${ids.uid} 1`, `0 ${ids.gid} 1`, 'deny']);
    expect(lines).toContain('Seccomp: 2');
    expect(lines).toContain('NoNewPrivs: 1');
    // The built-in image was made by the user (no chroot) under the state directory.
    expect(statSync(path.join(state, 'images', 'busybox', 'rootfs', 'bin', 'busybox')).uid).toBe(ids.uid);
    expect(leftContainers()).toEqual([]);
  });

  it('the container runs as the user on the host, in a user namespace of its own; inspect says so', () => {
    const r = api(`
      const rt = new nsbox.Runtime();
      const c = await rt.run({ image: 'busybox', command: ['sleep', '30'], name: 'keep', stdio: 'ignore' });
      const fs = require('fs');
      const status = fs.readFileSync('/proc/' + c.pid + '/status', 'utf8');
      const uid = /^Uid:\\s+(\\d+)/m.exec(status)[1];
      const userns = fs.readlinkSync('/proc/' + c.pid + '/ns/user') !== fs.readlinkSync('/proc/self/ns/user');
      const info = await rt.inspect('keep');
      c.kill('SIGKILL');
      await c.wait();
      console.log(JSON.stringify({ uid, userns, idMap: info.idMap }));
    `);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out).toMatchObject({ uid: String(ids.uid), userns: true, idMap: 'single' });
    expect(nsbox(['rm', 'keep']).status).toBe(0);
  });

  // The setup below the loop (test/setup-cgroup.test.ts) is root's: a rootless child could not
  // write itself back into the caller's cpu cgroup. Its processes stay where the caller is.
  it("a container's processes run in the caller's cpu cgroup at the caller's nice (here 3); no thread of the user's in a setup cgroup", () => {
    const script = box.apiScript(`
      const fs = require('fs');
      const line = (p) => fs.readFileSync('/proc/' + p + '/cgroup', 'utf8').split('\\n').find((l) => /^\\d+:([a-z]+,)*cpu(,[a-z]+)*:/.test(l));
      const nice = (p) => Number(fs.readFileSync('/proc/' + p + '/stat', 'utf8').split(') ')[1].split(' ')[16]);
      const rt = new nsbox.Runtime();
      const c = await rt.run({ image: 'busybox', command: ['sleep', '30'], stdio: 'ignore', remove: true });
      let kids = [];
      for (let i = 0; i < 200 && !kids.length; i++) {
        kids = fs.readFileSync('/proc/' + c.pid + '/task/' + c.pid + '/children', 'utf8').trim().split(/\\s+/).filter(Boolean);
        if (!kids.length) await new Promise((r) => setTimeout(r, 10));
      }
      const procs = [c.pid, ...kids].map((p) => ({ cgroup: line(p), nice: nice(p) }));
      const inSetup = fs.readdirSync('/proc/self/task').filter((t) => line('self/task/' + t).endsWith('/nsbox-setup'));
      c.kill('SIGKILL');
      await c.wait();
      console.log(JSON.stringify({ self: line('self'), procs, inSetup }));
    `);
    const r = asUser(['nice', '-n', '3', 'node', script]);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.self).toMatch(/^\d+:([a-z]+,)*cpu(,[a-z]+)*:\//);
    expect(out.procs).toEqual([
      { cgroup: out.self, nice: 3 },
      { cgroup: out.self, nice: 3 },
    ]);
    expect(out.inSetup).toEqual([]);
  });

  // Each child writes its own maps through /proc/self, which is the user's only while its
  // address space is dumpable; a child sharing Node's (CLONE_VM) found it cleared by another
  // start's or exec's child in setup, and most of these starts failed with EACCES.
  it('many starts at once, with execs into another container meanwhile, all get their maps', () => {
    const r = api(`
      const rt = new nsbox.Runtime();
      const keep = await rt.run({ image: 'busybox', command: ['sleep', '60'], stdio: 'ignore' });
      const failures = [];
      let ok = 0;
      for (let round = 0; round < 3; round++) {
        const starts = Array.from({ length: 15 }, () =>
          rt.run({ image: 'busybox', command: ['true'], remove: true, stdio: 'ignore' }).then((c) => c.wait()),
        );
        const execs = Array.from({ length: 5 }, () => Promise.resolve(rt.exec(keep.id, { command: ["true"], stdio: "ignore" })).then((e) => e.wait()));
        for (const s of await Promise.allSettled([...starts, ...execs])) {
          if (s.status === 'fulfilled' && s.value.exitCode === 0) ok++;
          else failures.push(s.status === 'rejected' ? s.reason.message : JSON.stringify(s.value));
        }
      }
      keep.kill('SIGKILL');
      await keep.wait();
      await rt.remove(keep.id);
      console.log(JSON.stringify({ ok, failures: [...new Set(failures)] }));
    `);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toEqual({ ok: 60, failures: [] });
  });

  it("env, workdir, hostname, --net none, and the host network with the host's /sys read-only", () => {
    const r = nsbox([
      'run',
      '--rm',
      '-e',
      'GREETING=hi',
      '-w',
      '/root',
      '--hostname',
      'box',
      '--net',
      'none',
      'busybox',
      'sh',
      '-c',
      'echo $GREETING; pwd; hostname; ls /sys/class/net',
    ]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual(['hi', '/root', 'box', 'lo']);
    const h = nsbox(['run', '--rm', '--net', 'host', 'busybox', 'sh', '-c', 'ls /sys/class/net | grep -c . ; touch /sys/x 2>&1; echo $?']);
    expect(h.status).toBe(0);
    const [count, ...rest] = h.stdout.trim().split('\n');
    expect(Number(count)).toBeGreaterThan(1);
    expect(rest.pop()).not.toBe('0');
  });

  it("a volume: new files are the user's on the host; a root-owned host file stays unwritable", () => {
    const vol = path.join(base, 'vol');
    mkdirSync(vol);
    chownSync(vol, ids.uid, ids.gid);
    const rootFile = path.join(base, 'root-file');
    writeFileSync(rootFile, 'root\n', { mode: 0o644 });
    const r = nsbox([
      'run',
      '--rm',
      '-v',
      `${vol}:/data`,
      '-v',
      `${rootFile}:/rf`,
      'busybox',
      'sh',
      '-c',
      'echo new > /data/new; mkdir /data/d; echo x >> /rf; echo "rf=$?"; chown 0:0 /data/new; echo "chown=$?"; ls -n /rf',
    ]);
    expect(r.stdout).toContain('rf=1');
    expect(r.stdout).toContain('chown=0');
    // Unmapped on the host: root's file shows as the overflow id inside.
    expect(r.stdout).toMatch(/ 65534 +65534 /);
    expect(readFileSync(rootFile, 'utf8')).toBe('root\n');
    for (const f of ['new', 'd']) expect(statSync(path.join(vol, f))).toMatchObject({ uid: ids.uid, gid: ids.gid });
  });

  it('commit keeps changes, deletions (whiteouts) and replaced directories (user.overlay.opaque); the new image runs', () => {
    const r = nsbox(['run', '--name', 'c1', 'busybox', 'sh', '-c', 'echo data > /root/f; rm /bin/ls; rm -rf /usr; mkdir -p /usr/bin; echo x > /usr/bin/new']);
    expect(r.status).toBe(0);
    expect(nsbox(['commit', 'c1', 'rl-img']).status).toBe(0);
    const run = nsbox(['run', '--rm', 'rl-img', 'sh', '-c', 'cat /root/f; test -e /bin/ls; echo "ls=$?"; ls /usr/bin']);
    expect(run.stderr).toBe('');
    expect(run.stdout.trim().split('\n')).toEqual(['data', 'ls=1', 'new']);
    // overlay's own metadata never becomes part of an image.
    const xattrs = spawnSync('python3', ['-c', 'import os,sys; print(os.listxattr(sys.argv[1]))', path.join(state, 'images', 'rl-img', 'rootfs', 'usr')], {
      encoding: 'utf8',
    });
    if (xattrs.status === 0) expect(xattrs.stdout.trim()).toBe('[]');
    expect(nsbox(['rm', 'c1']).status).toBe(0);
    expect(nsbox(['rmi', 'rl-img']).status).toBe(0);
  });

  it('import of a tarball with several owners: all become the user (root inside), and it says so', () => {
    const src = path.join(base, 'owners');
    mkdirSync(path.join(src, 'bin'), { recursive: true });
    cpSync(path.join(state, 'images', 'busybox', 'rootfs', 'bin', 'busybox'), path.join(src, 'bin', 'busybox'));
    writeFileSync(path.join(src, 'a'), 'a');
    writeFileSync(path.join(src, 'b'), 'b');
    chownSync(path.join(src, 'a'), 1000, 1000);
    chownSync(path.join(src, 'b'), 0, 5);
    const tar = path.join(base, 'owners.tar');
    execFileSync('tar', ['--numeric-owner', '-C', src, '-cf', tar, '.']);
    chmodSync(tar, 0o644);
    const r = nsbox(['import', tar, 'owners']);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/NSBOX_ROOTLESS_OWNERS.*2 entries owned by other users than root/);
    for (const f of ['a', 'b']) expect(statSync(path.join(state, 'images', 'owners', 'rootfs', f)).uid).toBe(ids.uid);
    const ls = nsbox(['run', '--rm', 'owners', '/bin/busybox', 'stat', '-c', '%u:%g', '/a', '/b']);
    expect(ls.stdout.trim().split('\n')).toEqual(['0:0', '0:0']);
    expect(nsbox(['rmi', 'owners']).status).toBe(0);
  });

  it('an image cannot plant overlay metadata (user.overlay.*): import drops it, other user xattrs stay', () => {
    const tar = path.join(base, 'xattrs.tar');
    const py = [
      'import tarfile, io, sys',
      't = tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT)',
      'def add(name, kind, pax):',
      '    i = tarfile.TarInfo(name); i.type = kind; i.mode = 0o755; i.pax_headers = pax',
      '    t.addfile(i, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)',
      'add("d", tarfile.DIRTYPE, {"SCHILY.xattr.user.overlay.opaque": "y"})',
      'add("d/f", tarfile.REGTYPE, {"SCHILY.xattr.user.overlay.redirect": "/etc", "SCHILY.xattr.user.overlay.metacopy": "", "SCHILY.xattr.user.keep": "1"})',
      't.close()',
    ].join('\n');
    const made = spawnSync('python3', ['-c', py, tar], { encoding: 'utf8' });
    if (made.status !== 0) return; // no python3: nothing to build the tarball with
    chmodSync(tar, 0o644);
    expect(nsbox(['import', tar, 'xattrs']).status).toBe(0);
    const list = (f: string) => spawnSync('python3', ['-c', 'import os,sys; print(sorted(os.listxattr(sys.argv[1])))', f], { encoding: 'utf8' }).stdout.trim();
    const rootfs = path.join(state, 'images', 'xattrs', 'rootfs');
    expect(list(path.join(rootfs, 'd'))).toBe('[]');
    expect(list(path.join(rootfs, 'd', 'f'))).toBe("['user.keep']");
    expect(nsbox(['rmi', 'xattrs']).status).toBe(0);
  });

  it('-d, exec, ps, rm -f, prune, images: the rest of the CLI', () => {
    const d = nsbox(['run', '-d', '--name', 'det', 'busybox', 'sleep', '60']);
    expect(d.status).toBe(0);
    expect(nsbox(['ps']).stdout).toMatch(/det\s/);
    expect(nsbox(['images']).stdout).toMatch(/^busybox\s/m);
    // exec joins its user namespace too: the same root inside, the same filter.
    const e = nsbox([
      'exec',
      'det',
      'sh',
      '-c',
      'id -u; cat /proc/self/uid_map; grep "^Seccomp:" /proc/self/status; unshare -U true 2>/dev/null; echo "userns=$?"',
    ]);
    expect(e.stderr).toBe('');
    expect(
      e.stdout
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/).join(' ')),
    ).toEqual(['0', `0 ${ids.uid} 1`, 'Seccomp: 2', 'userns=1']);
    expect(nsbox(['rm', '-f', 'det']).status).toBe(0);
    expect(nsbox(['prune']).status).toBe(0);
    expect(nsbox(['ps', '-a']).stdout.trim().split('\n')).toHaveLength(1);
  });

  it('cp into and out of a running container (owned by the user, root inside); a stopped one and a kept disk limit say what they need', () => {
    expect(nsbox(['run', '-d', '--name', 'cpc', 'busybox', 'sleep', '60']).status).toBe(0);
    const file = path.join(base, 'cp-in');
    writeFileSync(file, 'in\n', { mode: 0o644 });
    expect(nsbox(['cp', file, 'cpc:/root/']).stderr).toBe('');
    expect(nsbox(['exec', 'cpc', 'stat', '-c', '%u:%g %s', '/root/cp-in']).stdout.trim()).toBe('0:0 3');
    const out = path.join(base, 'out');
    mkdirSync(out);
    chownSync(out, ids.uid, ids.gid);
    expect(nsbox(['cp', 'cpc:/etc/passwd', `${out}/passwd`]).status).toBe(0);
    expect(statSync(path.join(out, 'passwd')).uid).toBe(ids.uid);
    expect(nsbox(['rm', '-f', 'cpc']).status).toBe(0);
    expect(nsbox(['run', '--name', 'stopped', 'busybox', 'true']).status).toBe(0);
    const stopped = nsbox(['cp', 'stopped:/etc/passwd', `${out}/p2`]);
    expect(stopped.status).toBe(125);
    expect(stopped.stderr).toMatch(/stopped container needs root/);
    expect(nsbox(['rm', 'stopped']).status).toBe(0);
    const disk = nsbox(['run', '--name', 'dk', '--disk', '1m', 'busybox', 'true']);
    expect(disk.status).toBe(125);
    expect(disk.stderr).toMatch(/only a --rm container's write layer can be bounded/);
    // --read-only and --tmpfs; then with --rm the write layer is a tmpfs of --disk's size.
    const rm = nsbox([
      'run',
      '--rm',
      '--tmpfs',
      '/tmp:size=1m',
      '--read-only',
      'busybox',
      'sh',
      '-c',
      'touch /x 2>/dev/null; echo "ro=$?"; df -k /tmp | tail -1',
    ]);
    expect(rm.stdout).toMatch(/ro=1/);
    expect(rm.stdout).toMatch(/ 1024 /);
    const full = nsbox(['run', '--rm', '--disk', '1m', 'busybox', 'sh', '-c', 'dd if=/dev/zero of=/f bs=1k count=4096 2>/dev/null; echo "dd=$?"']);
    expect(full.stdout.trim()).toBe('dd=1');
    expect(leftContainers()).toEqual([]);
  });

  it('a hostile container: no mknod, no mount of host things, no nested user namespace, no setuid escape', () => {
    const r = nsbox([
      'run',
      '--rm',
      'busybox',
      'sh',
      '-c',
      [
        'mknod /tmp/null c 1 3 2>/dev/null; echo "mknod=$?"',
        'mount -t proc proc /mnt 2>/dev/null; echo "proc=$?"',
        'mount --bind / /mnt 2>/dev/null; echo "bind=$?"',
        'unshare -U true 2>/dev/null; echo "userns=$?"',
        'unshare -r true 2>/dev/null; echo "userns-r=$?"',
        'echo 1 > /proc/sys/kernel/sysrq 2>/dev/null; echo "sysctl=$?"',
        'ls /dev | tr "\\n" " "; echo',
      ].join('; '),
    ]);
    const out = r.stdout;
    for (const k of ['mknod', 'proc', 'bind', 'userns', 'userns-r', 'sysctl']) expect(out).toMatch(new RegExp(`^${k}=[1-9]`, 'm'));
    expect(out.trim().split('\n').pop()!.trim().split(' ').sort()).toEqual(
      ['fd', 'full', 'mqueue', 'null', 'ptmx', 'pts', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero'].filter((n) => n !== 'mqueue'),
    );
  });

  it("-ti gives a terminal of the container's own devpts", () => {
    if (spawnSync('tmux', ['-V']).status !== 0) return;
    const sock = `nsbox-rl-${process.pid}`;
    const tmux = (...a: string[]) => execFileSync('tmux', ['-L', sock, ...a]).toString();
    try {
      const cmd = `runuser -u ${USER} -- env -i PATH=${process.env.PATH} HOME=${home} NSBOX_ROOT=${state} NSBOX_ID_MAP=single node ${pkg}/dist/cli/main.js run --rm -ti busybox sh`;
      tmux('new-session', '-d', '-s', 'rl', '-x', '100', '-y', '20', cmd);
      const screen = () => tmux('capture-pane', '-p', '-t', 'rl');
      const until = (re: RegExp) => {
        for (let i = 0; i < 100 && !re.test(screen()); i++) spawnSync('sleep', ['0.1']);
        return screen();
      };
      until(/# $/m);
      tmux('send-keys', '-t', 'rl', 'echo "T=$(tty) U=$(id -u) S=$((6*7))"', 'Enter');
      expect(until(/T=\/dev\/pts\/0 U=0 S=42/)).toMatch(/T=\/dev\/pts\/0 U=0 S=42/);
      tmux('send-keys', '-t', 'rl', 'exit', 'Enter');
    } finally {
      spawnSync('tmux', ['-L', sock, 'kill-server']);
    }
  });

  it('limits without a delegated cgroup fail naming what is missing, --user other than root fails; nothing is left', () => {
    const m = nsbox(['run', '--rm', '-m', '64m', 'busybox', 'true']);
    expect(m.status).toBe(125);
    expect(m.stderr).toMatch(/limits: rootless .*cgroup v2 subtree delegated to this user/);
    const u = nsbox(['run', '--rm', '--user', '1000', 'busybox', 'true']);
    expect(u.status).toBe(125);
    expect(u.stderr).toMatch(/only root \(0:0\) exists inside/);
    expect(leftContainers()).toEqual([]);
  });

  it('limits in a cgroup v2 subtree delegated to the user: the container is born in it, cpuTime holds, the directory goes', () => {
    // The host's cgroup2 mount (hybrid here: no controllers, but cpu.stat and cgroup.kill).
    const mount = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .find((l) => / - cgroup2 /.test(l))
      ?.split(' ')[4];
    if (!mount || !existsSync(path.join(mount, 'cgroup.kill'))) return;
    const deleg = path.join(mount, `nsbox-rootless-${process.pid}`);
    const [sup, ctrs] = [path.join(deleg, 'sup'), path.join(deleg, 'ctrs')];
    try {
      for (const d of [deleg, sup, ctrs]) mkdirSync(d);
      // What a service manager does to delegate: the directories and their files are the user's.
      execFileSync('chown', ['-R', `${ids.uid}:${ids.gid}`, deleg]);
      const script = path.join(base, 'cputime.js');
      writeFileSync(
        script,
        `const { Runtime } = require(${JSON.stringify(path.join(pkg, 'dist/index.js'))});
(async () => {
  const c = await new Runtime().run({ image: 'busybox', command: ['sh', '-c', 'while :; do :; done'], limits: { cpuTime: 0.3 }, remove: true, stdio: 'ignore' });
  const s = await c.wait();
  console.log(JSON.stringify({ cpuTimeExceeded: s.cpuTimeExceeded, signal: s.signal }));
})().catch((e) => console.log(JSON.stringify({ error: e.message })));
`,
        { mode: 0o644 },
      );
      // The supervisor in the subtree (root moves it there, as a service manager would), then the user.
      const env = `NSBOX_CGROUP_V2=limits NSBOX_CGROUP_V2_PARENT=${ctrs} NSBOX_ROOT=${state} HOME=${home} PATH=${process.env.PATH} NSBOX_ID_MAP=single`;
      const inSubtree = (argv: string) =>
        spawnSync('sh', ['-c', `echo $$ > ${sup}/cgroup.procs && exec runuser -u ${USER} -- env -i ${env} ${argv}`], {
          cwd: base,
          encoding: 'utf8',
          timeout: 60_000,
        });
      const r = inSubtree(`node ${script}`);
      expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toEqual({ cpuTimeExceeded: true, signal: 'SIGKILL' });
      expect(readdirSync(ctrs).filter((f) => !f.includes('.'))).toEqual([]);
      // A limit whose controller the subtree lacks: named, not ignored.
      const m = inSubtree(`node ${pkg}/dist/cli/main.js run --rm -m 64m busybox true`);
      expect(m.status).toBe(125);
      expect(m.stderr).toMatch(/no memory controller in cgroup v2/);
    } finally {
      for (const d of [ctrs, sup, deleg]) {
        try {
          execFileSync('rmdir', [d]);
        } catch {
          // a process left in it would show in the last test
        }
      }
    }
  });

  it('where the user may not make a user namespace, clone fails with what to change; nothing is left', () => {
    // bubblewrap 0.8+: --disable-userns.
    if (!/--disable-userns/.test(spawnSync('bwrap', ['--help'], { encoding: 'utf8' }).stdout ?? '')) return;
    // bubblewrap's --disable-userns sets user.max_user_namespaces to its minimum inside.
    const r = asUser([
      'bwrap',
      '--bind',
      '/',
      '/',
      '--dev',
      '/dev',
      '--proc',
      '/proc',
      '--unshare-user',
      '--uid',
      String(ids.uid),
      '--gid',
      String(ids.gid),
      '--disable-userns',
      '--',
      'node',
      path.join(pkg, 'dist/cli/main.js'),
      'run',
      '--rm',
      'busybox',
      'true',
    ]);
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(/clone: (ENOSPC|EPERM): rootless \(uid \d+\) needs a user namespace/);
    expect(r.stderr).toMatch(/hint: .*user\.max_user_namespaces.*kernel\.unprivileged_userns_clone.*apparmor_restrict_unprivileged_userns/);
    expect(leftContainers()).toEqual([]);
  });

  it('the default state directory of a user is ~/.local/share/nsbox (or $XDG_DATA_HOME/nsbox)', () => {
    const r = asUser(['sh', '-c', `unset NSBOX_ROOT; exec node ${pkg}/dist/cli/main.js run --rm busybox true`]);
    expect(r.status).toBe(0);
    expect(statSync(path.join(home, '.local', 'share', 'nsbox', 'images')).uid).toBe(ids.uid);
    const x = asUser(['sh', '-c', `unset NSBOX_ROOT; exec node ${pkg}/dist/cli/main.js run --rm busybox true`], { XDG_DATA_HOME: path.join(home, 'xdg') });
    expect(x.status).toBe(0);
    expect(existsSync(path.join(home, 'xdg', 'nsbox', 'images'))).toBe(true);
  });

  it('leaves nothing: no process of the user, no mount on the host, no container directory', () => {
    expect(userProcesses()).toEqual([]);
    expect(ourMounts()).toEqual([]);
    expect(leftContainers()).toEqual([]);
  });
});
