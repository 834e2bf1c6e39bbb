// Volumes: both ways, read-only, several at once, data surviving rm; and targets that would
// lead out of the container root refused with the host untouched.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { Runtime } from '../src/runtime';
import { Volume } from '../src/volume';
import { collect, hostMounts, openFds, unionMounts } from './helpers';

let root: string;
let host: string;
let rt: Runtime;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-vol-'));
  host = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-vol-host-'));
  rt = new Runtime({ root });
});
afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
  fs.rmSync(host, { recursive: true, force: true });
});
afterEach(() => expect(unionMounts().filter((l) => l.includes(root))).toEqual([]));

async function sh(script: string, volumes: string[]) {
  const c = await rt.run({ image: 'busybox', command: ['sh', '-c', script], volumes });
  const [out, err] = [collect(c.stdout), collect(c.stderr)];
  const status = await c.wait();
  return { c, status, out: await out, err: await err };
}

/** Names, sizes and mtimes of everything under /etc: any change on the host shows. */
const etcDigest = () => execFileSync('sh', ['-c', "find /etc -xdev -printf '%p %s %T@ %l\\n' 2>/dev/null | sort | md5sum"]).toString();

describe('volumes', () => {
  it('carry data both ways and survive the container', async () => {
    const a = path.join(host, 'a');
    fs.mkdirSync(a);
    fs.writeFileSync(path.join(a, 'from-host'), 'hello from the host\n');
    const r = await sh('cat /data/from-host && echo from-container > /data/out', [`${a}:/data`]);
    expect(r.status.exitCode).toBe(0);
    expect(r.out).toBe('hello from the host\n');
    await r.c.remove();
    expect(fs.readFileSync(path.join(a, 'out'), 'utf8')).toBe('from-container\n');
    expect(fs.readFileSync(path.join(a, 'from-host'), 'utf8')).toBe('hello from the host\n');
  });

  it('refuse writes when read-only, with two volumes at once', async () => {
    const ro = path.join(host, 'ro');
    const rw = path.join(host, 'rw');
    fs.mkdirSync(ro);
    const r = await sh('touch /ro/x 2>&1; echo rc=$?; touch /rw/y && echo ok; grep " /ro " /proc/self/mountinfo | grep -c " ro,"', [
      `${ro}:/ro:ro`,
      `${rw}:/rw`,
    ]);
    expect(r.out).toMatch(/Read-only file system/);
    expect(r.out).toMatch(/rc=1\nok\n1\n/);
    expect(fs.existsSync(path.join(ro, 'x'))).toBe(false);
    expect(fs.existsSync(path.join(rw, 'y'))).toBe(true); // rw was created on the host
    expect((fs.statSync(rw).mode & 0o777).toString(8)).toBe('755');
    await r.c.remove();
  });

  it('bind a file as a file', async () => {
    const f = path.join(host, 'config.txt');
    fs.writeFileSync(f, 'cfg\n');
    const r = await sh('cat /etc/app.conf', [`${f}:/etc/app.conf:ro`]);
    expect(r.out).toBe('cfg\n');
    await r.c.remove();
  });
});

describe('bad volume specs', () => {
  const cases: Array<[string, RegExp]> = [
    ['/tmp/a:../../etc', /must be an absolute path inside the container/],
    ['/tmp/a:/x/../../..', /'\.\.' is not allowed/],
    ['tmp/a:/data', /the host path must be absolute/],
    ['/tmp/a', /no ':' found/],
    ['/a:/b:ro:x', /4 fields/],
    [':/data', /empty host path/],
    ['/tmp/a:', /empty container path/],
    ['/tmp/a:/data:rx', /mode "rx": ro or rw/],
    ['/tmp/a:/', /cannot be a volume target/],
  ];
  for (const [spec, message] of cases) {
    it(`refuses ${JSON.stringify(spec)} before anything happens`, async () => {
      const etc = etcDigest();
      const mounts = hostMounts();
      const fds = openFds();
      const before = fs.readdirSync(path.join(root, 'containers'));
      const err = await rt.run({ image: 'busybox', command: ['true'], volumes: [spec] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NsboxError);
      expect((err as NsboxError).code).toBe('INVALID_ARGUMENT');
      expect((err as NsboxError).message).toMatch(message);
      expect(fs.readdirSync(path.join(root, 'containers'))).toEqual(before);
      expect(hostMounts()).toEqual(mounts);
      expect(openFds()).toEqual(fds);
      expect(etcDigest()).toBe(etc);
      expect(fs.existsSync('/tmp/a')).toBe(false);
    });
  }

  it('refuses a target that is a symlink to /etc in the image, host untouched', async () => {
    // An image whose /data is a symlink to /etc: the mount must not follow it.
    const img = path.join(host, 'evil-rootfs');
    execFileSync('cp', ['-a', rt.images.get('busybox').rootfs, img]);
    fs.symlinkSync('/etc', path.join(img, 'data'));
    const tar = path.join(host, 'evil.tar');
    execFileSync('tar', ['-C', img, '-cf', tar, '.']);
    await rt.import(tar, 'evil-link');
    const etc = etcDigest();
    const mounts = hostMounts();
    const src = path.join(host, 'payload');
    fs.mkdirSync(src);
    const err = await rt.run({ image: 'evil-link', command: ['true'], volumes: [`${src}:/data`] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NsboxError);
    expect(err).toMatchObject({ code: 'ELOOP', step: 'volume /data' });
    expect((err as Error).message).toMatch(/volume \/data: .*ELOOP/);
    expect(etcDigest()).toBe(etc);
    expect(hostMounts()).toEqual(mounts);
    // a path under the symlink resolves inside the root, never the host's /etc
    const r = await sh('ls /etc/passwd-from-volume 2>&1; cat /proc/self/mountinfo | grep -c passwd-from', [`${src}:/data/passwd-from-volume`]).catch(
      (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
    );
    if (!(r instanceof Error)) {
      await r.c.remove();
    }
    expect(fs.existsSync('/etc/passwd-from-volume')).toBe(false);
    expect(etcDigest()).toBe(etc);
  });

  it("a host path holding ':' (given as an object) is recorded as such: commit, start and inspect work", async () => {
    const odd = path.join(host, 'a:b');
    fs.mkdirSync(odd);
    fs.writeFileSync(path.join(odd, 'in'), 'from host\n');
    const c = await rt.run({
      image: 'busybox',
      command: ['sh', '-c', 'cat /data/in; echo made > /kept'],
      volumes: [{ source: odd, target: '/data', readonly: true }],
    });
    expect(await collect(c.stdout)).toBe('from host\n');
    await c.wait();
    expect(rt.inspect(c.id!).mounts).toEqual([{ type: 'bind', source: odd, target: '/data', readonly: true }]);
    // Before, the record held 'HOST:CTR' and could not be read back: commit and start failed.
    await rt.commit(c.id!, 'colon-vol');
    const again = await rt.start(c.id!, { attach: true });
    expect(await collect(again.stdout)).toBe('from host\n');
    await again.wait();
    await rt.remove(c.id!);
    await rt.removeImage('colon-vol');
    expect(fs.readFileSync(path.join(odd, 'in'), 'utf8')).toBe('from host\n');
  });

  it('parses and prints specs', () => {
    const v = Volume.parse('/srv/data:/data:ro');
    expect(v).toMatchObject({ source: '/srv/data', target: '/data', readonly: true });
    expect(String(v)).toBe('/srv/data:/data:ro');
  });
});
