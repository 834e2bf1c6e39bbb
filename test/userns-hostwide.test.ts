// userns: 'auto' ranges are unique across the host, not per state directory: two state
// directories (two --root, two library users) sharing one claims directory never give two
// containers the same host ids, from one process or from two at once; a claim is taken back
// only when its container is gone (its state directory deleted included), never because
// another state directory was pruned; the claims of an older nsbox (idranges/ in the state
// directory) are honoured; a restart never runs in a range another container holds; a claims
// directory that cannot be used fails the start cleanly.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { Container } from '../src/container';
import { NsboxError } from '../src/errors';
import { Runtime } from '../src/runtime';
import { ClaimsLock, DEFAULT_BASE, RANGE_SIZE, claimTarget, parseClaim } from '../src/userns';
import { childPids, claimsOf, hostMounts, openFds, runNode } from './helpers';

const sharedClaims = process.env.NSBOX_IDRANGES_DIR;
let work: string;
let claims: string;

beforeEach(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-hostwide-'));
  // One claims directory for every state directory of a test (and its subprocesses), made on demand.
  claims = path.join(work, 'claims');
  process.env.NSBOX_IDRANGES_DIR = claims;
});
afterEach(() => {
  if (sharedClaims === undefined) delete process.env.NSBOX_IDRANGES_DIR;
  else process.env.NSBOX_IDRANGES_DIR = sharedClaims;
  delete process.env.NSBOX_SUBUID;
  delete process.env.NSBOX_SUBGID;
  fs.rmSync(work, { recursive: true, force: true });
});

function runtime(name: string): { rt: Runtime; root: string } {
  const root = path.join(work, name);
  return { rt: new Runtime({ root }), root };
}

const baseOf = (rt: Runtime, id: string): number => Number(/^0 (\d+) 65536$/.exec(rt.inspect(id).userns!.uidMap)![1]);

/** The uid map as the container's own process reads it: "0 BASE 65536". */
async function mapInside(c: Container): Promise<string> {
  const line = await new Promise<string>((resolve) => {
    let s = '';
    c.stdout!.on('data', (d: Buffer) => {
      s += d.toString();
      if (s.includes('\n')) resolve(s.split('\n')[0]!);
    });
  });
  return line.trim().split(/\s+/).join(' ');
}

const live = (rt: Runtime) => rt.run({ image: 'busybox', userns: 'auto', command: ['sh', '-c', 'cat /proc/self/uid_map; exec sleep 30'] });

/** A container that ran and exited (it keeps its range): run again, it prints its uid map. */
async function stopped(rt: Runtime): Promise<string> {
  const c = await rt.run({ image: 'busybox', userns: 'auto', command: ['cat', '/proc/self/uid_map'] });
  await c.wait();
  return c.id!;
}

describe("userns: 'auto' ranges across state directories", () => {
  it('gives running containers of two state directories different host ids', async () => {
    const a = runtime('a');
    const b = runtime('b');
    const [ca, cb] = await Promise.all([live(a.rt), live(b.rt)]);
    try {
      const [ma, mb] = await Promise.all([mapInside(ca), mapInside(cb)]);
      expect(ma).toMatch(/^0 \d+ 65536$/);
      expect(mb).toMatch(/^0 \d+ 65536$/);
      // Each state directory alone would start at the first slice: the claims are shared.
      expect(ma).not.toBe(mb);
      expect(new Set([ma, mb])).toEqual(new Set([`0 ${DEFAULT_BASE} 65536`, `0 ${DEFAULT_BASE + RANGE_SIZE} 65536`]));
      // Each claim names its state directory and container.
      const target = fs.readlinkSync(path.join(claims, String(baseOf(a.rt, ca.id!))));
      expect(parseClaim(String(baseOf(a.rt, ca.id!)), target)).toMatchObject({ id: ca.id, stateDir: fs.realpathSync(a.root) });
      expect(claimsOf(b.root)).toEqual([baseOf(b.rt, cb.id!)]);
      // The claims directory is root's alone.
      expect(fs.statSync(claims).mode & 0o777).toBe(0o700);
    } finally {
      await ca.remove({ force: true });
      await cb.remove({ force: true });
    }
    expect(claimsOf(a.root)).toEqual([]);
    expect(claimsOf(b.root)).toEqual([]);
  });

  it('takes back the claim of a container whose state directory was deleted', async () => {
    const a = runtime('a');
    const c = runtime('c');
    const gone = await stopped(c.rt);
    expect(baseOf(c.rt, gone)).toBe(DEFAULT_BASE);
    const first = await stopped(a.rt);
    expect(baseOf(a.rt, first)).toBe(DEFAULT_BASE + RANGE_SIZE);
    // The whole state directory goes, its container with it (no nsbox rm): its claim is stale.
    fs.rmSync(c.root, { recursive: true, force: true });
    const second = await stopped(a.rt);
    expect(baseOf(a.rt, second)).toBe(DEFAULT_BASE);
    expect(claimsOf(a.root)).toEqual([DEFAULT_BASE, DEFAULT_BASE + RANGE_SIZE]);
    expect(fs.readdirSync(claims).filter((n) => n !== 'lock')).toHaveLength(2);
  });

  it("never takes back another state directory's live claims, even after a prune of this one", async () => {
    const a = runtime('a');
    const b = runtime('b');
    const running = await live(b.rt);
    try {
      const idle = await stopped(b.rt);
      const held = [baseOf(b.rt, running.id!), baseOf(b.rt, idle)].sort((x, y) => x - y);
      // A claim for b's stopped container that its record does not name (a lost release, its id
      // reused): prune takes it back, the record's own stays.
      const forged = DEFAULT_BASE + 5 * RANGE_SIZE;
      fs.symlinkSync(claimTarget({ uidBase: forged, gidBase: forged, id: idle, stateDir: fs.realpathSync(b.root) }), path.join(claims, String(forged)));
      await stopped(a.rt).then((id) => a.rt.remove(id));
      await a.rt.prune();
      expect(claimsOf(b.root)).toEqual(held);
      const mine = await stopped(a.rt);
      expect(held).not.toContain(baseOf(a.rt, mine));
      // A prune of b's own keeps what its containers hold, the running one's included.
      expect(await b.rt.prune()).toEqual([idle]);
      expect(claimsOf(b.root)).toEqual([baseOf(b.rt, running.id!)]);
    } finally {
      await running.remove({ force: true });
    }
    expect(claimsOf(b.root)).toEqual([]);
  });

  it('gives distinct ranges to two processes starting five containers each at once', async () => {
    const roots = [path.join(work, 'p1'), path.join(work, 'p2')];
    const script = (root: string) => `
      const { Runtime } = require(${JSON.stringify(path.resolve(__dirname, '../dist/runtime.js'))});
      (async () => {
        const rt = new Runtime({ root: ${JSON.stringify(root)} });
        const one = async () => {
          const c = await rt.run({ image: 'busybox', userns: 'auto', command: ['cat', '/proc/self/uid_map'] });
          let s = '';
          c.stdout.on('data', (d) => (s += d));
          await new Promise((resolve) => c.stdout.on('close', resolve));
          await c.wait();
          return { id: c.id, map: s.trim().split(/\\s+/).join(' ') };
        };
        console.log(JSON.stringify(await Promise.all(Array.from({ length: 5 }, one))));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const results = await Promise.all(roots.map((r) => runNode(script(r), { timeoutMs: 50_000 })));
    const started: Array<{ rt: Runtime; id: string; map: string }> = [];
    for (const [i, r] of results.entries()) {
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const rt = new Runtime({ root: roots[i]! });
      for (const c of JSON.parse(r.stdout) as Array<{ id: string; map: string }>) started.push({ rt, ...c });
    }
    expect(started).toHaveLength(10);
    // What each container saw inside is what its record says, and no two are alike.
    for (const s of started) expect(s.map).toBe(s.rt.inspect(s.id).userns!.uidMap);
    expect(new Set(started.map((s) => s.map)).size).toBe(10);
    for (const s of started) await s.rt.remove(s.id);
    for (const r of roots) expect(claimsOf(r)).toEqual([]);
  });

  it("honours an older nsbox's claims in the state directory, and moves them host-wide", async () => {
    const a = runtime('a');
    const b = runtime('b');
    const old = await stopped(a.rt);
    // As an nsbox before host-wide claims left it: idranges/<uid base> -> <id>:<gid base>.
    fs.rmSync(path.join(claims, String(DEFAULT_BASE)));
    fs.mkdirSync(path.join(a.root, 'idranges'), { mode: 0o700 });
    fs.symlinkSync(`${old}:${DEFAULT_BASE}`, path.join(a.root, 'idranges', String(DEFAULT_BASE)));
    fs.symlinkSync(`aaaaaaaaaaaa:${DEFAULT_BASE + RANGE_SIZE}`, path.join(a.root, 'idranges', String(DEFAULT_BASE + RANGE_SIZE))); // its container is gone
    const next = await stopped(a.rt);
    expect(baseOf(a.rt, next)).toBe(DEFAULT_BASE + RANGE_SIZE);
    expect(claimsOf(a.root)).toEqual([DEFAULT_BASE, DEFAULT_BASE + RANGE_SIZE]);
    expect(fs.existsSync(path.join(a.root, 'idranges'))).toBe(false);
    // Now every state directory sees it.
    const other = await stopped(b.rt);
    expect(baseOf(b.rt, other)).toBe(DEFAULT_BASE + 2 * RANGE_SIZE);
    // And the old container runs again in its range.
    const again = (await a.rt.start(old, { attach: true })) as Container;
    expect(await mapInside(again)).toBe(`0 ${DEFAULT_BASE} 65536`);
    await again.wait();
  });

  it('refuses to start a stopped container in a range another container holds now, and claims it again once free', async () => {
    const a = runtime('a');
    const b = runtime('b');
    const old = await stopped(a.rt);
    // Its claim lost (taken back while its state directory was out of sight, say).
    fs.rmSync(path.join(claims, String(DEFAULT_BASE)));
    const thief = await live(b.rt);
    try {
      expect(await mapInside(thief)).toBe(`0 ${DEFAULT_BASE} 65536`);
      const err = await a.rt.start(old).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NsboxError);
      expect((err as NsboxError).code).toBe('IN_USE');
      expect((err as NsboxError).message).toMatch(new RegExp(`claimed by container ${thief.id} of ${fs.realpathSync(b.root)}`));
      expect(a.rt.inspect(old).status).not.toBe('running');
    } finally {
      await thief.remove({ force: true });
    }
    const again = (await a.rt.start(old, { attach: true })) as Container;
    expect(await mapInside(again)).toBe(`0 ${DEFAULT_BASE} 65536`);
    await again.wait();
    expect(claimsOf(a.root)).toEqual([DEFAULT_BASE]);
    await a.rt.remove(old);
    expect(claimsOf(a.root)).toEqual([]);
  });

  it("never gives a range to another container while a process still runs in it, its container's directory deleted by hand", async () => {
    const a = runtime('a');
    const b = runtime('b');
    const c = await a.rt.run({ image: 'busybox', userns: 'auto', command: ['sleep', '60'], stdio: 'ignore' });
    try {
      expect(baseOf(a.rt, c.id!)).toBe(DEFAULT_BASE);
      // The overlay is mounted inside the container's own mount namespace: nothing on the host stops this.
      fs.rmSync(path.join(a.root, 'containers', c.id!), { recursive: true });
      const other = await stopped(b.rt);
      expect(baseOf(b.rt, other)).toBe(DEFAULT_BASE + RANGE_SIZE);
      await b.rt.remove(other);
    } finally {
      c.kill('SIGKILL');
      await c.wait().catch(() => undefined);
    }
    // Its processes gone, the range is taken back.
    const again = await stopped(b.rt);
    expect(baseOf(b.rt, again)).toBe(DEFAULT_BASE);
    await b.rt.remove(again);
  });

  it('holds its lock on a close-on-exec fd (no child inherits it), one holder at a time, and never waits without bound', async () => {
    fs.mkdirSync(claims, { mode: 0o700 });
    const lock = ClaimsLock.tryTake(claims)!;
    try {
      const fd = fs.readdirSync('/proc/self/fd').find((n) => {
        try {
          return fs.readlinkSync(`/proc/self/fd/${n}`) === path.join(claims, 'lock');
        } catch {
          return false;
        }
      });
      expect(fd).toBeDefined();
      const flags = parseInt(/^flags:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
      expect(flags & 0o2000000).not.toBe(0); // O_CLOEXEC
      expect(ClaimsLock.tryTake(claims)).toBeUndefined();
      const err = await ClaimsLock.take(claims, 50).catch((e: unknown) => e);
      expect((err as NsboxError).code).toBe('IN_USE');
    } finally {
      lock.release();
    }
    ClaimsLock.tryTake(claims)!.release();
  });

  it('skips a base named by an entry it cannot read as a claim (a newer nsbox, a damaged one), and leaves it', async () => {
    const a = runtime('a');
    fs.mkdirSync(claims, { mode: 0o700 });
    // The first base: a symlink whose target is no claim of this version; the second: a plain file.
    const odd = path.join(claims, String(DEFAULT_BASE));
    fs.symlinkSync('not a claim of this version', odd);
    fs.writeFileSync(path.join(claims, String(DEFAULT_BASE + RANGE_SIZE)), '');
    const id = await stopped(a.rt);
    expect(baseOf(a.rt, id)).toBe(DEFAULT_BASE + 2 * RANGE_SIZE);
    expect(fs.readlinkSync(odd)).toBe('not a claim of this version');
    await a.rt.remove(id);
    expect(fs.readdirSync(claims).sort()).toEqual([String(DEFAULT_BASE), String(DEFAULT_BASE + RANGE_SIZE), 'lock']);
  });

  it('fails a start cleanly when the claims directory cannot be used or every range is taken', async () => {
    const a = runtime('a');
    const b = runtime('b');
    // Made once, so that the checks below see this process's steady state.
    await a.rt.remove(await stopped(a.rt));
    const before = { fds: openFds(), children: childPids(), mounts: hostMounts() };
    const refused = async (pattern: RegExp) => {
      const err = await a.rt.run({ image: 'busybox', userns: 'auto', command: ['true'] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NsboxError);
      expect((err as NsboxError).message).toMatch(pattern);
      expect(fs.readdirSync(path.join(a.root, 'containers')).filter((n) => !n.startsWith('.'))).toEqual([]);
      expect(openFds()).toEqual(before.fds);
      expect(childPids()).toEqual(before.children);
      expect(hostMounts()).toEqual(before.mounts);
    };
    const file = path.join(work, 'file');
    fs.writeFileSync(file, '');
    process.env.NSBOX_IDRANGES_DIR = path.join(file, 'claims');
    await refused(/host id range claims directory .*\/file\/claims: cannot make it \(ENOTDIR\)/);
    const theirs = path.join(work, 'theirs');
    fs.mkdirSync(theirs, { mode: 0o700 });
    fs.chownSync(theirs, 65534, 65534);
    process.env.NSBOX_IDRANGES_DIR = theirs;
    await refused(/claims directory .*theirs: owned by uid 65534, not 0/);
    expect(fs.readdirSync(theirs)).toEqual([]);
    fs.chownSync(theirs, 0, 0);
    fs.chmodSync(theirs, 0o777);
    await refused(/claims directory .*theirs: writable by others than its owner \(mode 0777\)/);
    expect(fs.readdirSync(theirs)).toEqual([]);
    // A directory above it that another user may change: they could rename the claims away,
    // and the next start would make an empty directory and hand out the ranges of running
    // containers again. Sticky (as /tmp) is fine: the tests' own claims live under /tmp.
    fs.chmodSync(theirs, 0o755);
    fs.chownSync(theirs, 65534, 65534);
    process.env.NSBOX_IDRANGES_DIR = path.join(theirs, 'claims');
    await refused(/claims directory .*theirs\/claims: .*theirs above it is owned by uid 65534/);
    fs.chownSync(theirs, 0, 0);
    fs.chmodSync(theirs, 0o777);
    await refused(/claims directory .*theirs\/claims: .*theirs above it is writable by others than its owner \(mode 0777\)/);
    // Reached through a link from a safe place: the directories above its real path count.
    const link = path.join(work, 'link');
    fs.mkdirSync(path.join(theirs, 'inner'), { mode: 0o755 });
    fs.symlinkSync(path.join(theirs, 'inner'), link);
    process.env.NSBOX_IDRANGES_DIR = path.join(link, 'claims');
    await refused(/claims directory .*link\/claims: .*theirs above it is writable by others/);
    expect(fs.readdirSync(path.join(theirs, 'inner'))).toEqual([]);
    fs.rmdirSync(path.join(theirs, 'inner'));
    fs.rmSync(link);
    process.env.NSBOX_IDRANGES_DIR = path.join(theirs, 'claims');
    fs.chmodSync(theirs, 0o1777);
    await a.rt.remove(await stopped(a.rt));
    expect(fs.readdirSync(path.join(theirs, 'claims'))).toEqual(['lock']);
    fs.rmSync(path.join(theirs, 'claims'), { recursive: true });
    fs.chmodSync(theirs, 0o777);
    process.env.NSBOX_IDRANGES_DIR = theirs;
    await refused(/claims directory .*theirs: writable by others than its owner \(mode 0777\)/);
    expect(fs.readdirSync(theirs)).toEqual([]);
    // From the CLI: exit 125, the error on one line (and its hint).
    const cli = path.resolve(__dirname, '../dist/cli/start.js');
    const bad = spawnSync(process.execPath, [cli, '--root', a.root, 'run', '--rm', '--userns', 'auto', 'busybox', 'true'], { encoding: 'utf8' });
    expect(bad.status).toBe(125);
    const lines = bad.stderr.trim().split('\n');
    expect(lines[0]).toMatch(/^nsbox: userns auto: host id range claims directory .*theirs: writable by others/);
    expect(lines.slice(1)).toEqual([expect.stringMatching(/^hint: .*NSBOX_IDRANGES_DIR/)]);
    // One range on the host, held by b's container: a's start finds none, and says so.
    process.env.NSBOX_IDRANGES_DIR = claims;
    const subid = path.join(work, 'subid');
    fs.writeFileSync(subid, 'nsbox:300000:65536\n');
    process.env.NSBOX_SUBUID = subid;
    process.env.NSBOX_SUBGID = subid;
    const holder = await stopped(b.rt);
    expect(baseOf(b.rt, holder)).toBe(300000);
    await refused(/every host id range is in use \(1 containers on this host hold one\)/);
    expect(claimsOf(a.root)).toEqual([]);
    expect(claimsOf(b.root)).toEqual([300000]);
    execFileSync(process.execPath, [cli, '--root', b.root, 'rm', holder]);
    expect(claimsOf(b.root)).toEqual([]);
  });
});
