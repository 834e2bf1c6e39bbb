// What the rootless tests share: an ordinary user (`nsboxuser`, made by .ci/run) runs nsbox
// through runuser from a copy of the package in a world-readable directory (CI's clone sits in
// a root-only mktemp dir the user cannot read), with a home and a state directory of its own.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, cpSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

export const USER = 'nsboxuser';
const REPO = path.join(__dirname, '..');

export interface UserIds {
  uid: number;
  gid: number;
}

/** The user's ids, or undefined when there is no such user. */
export function userIds(): UserIds | undefined {
  if (spawnSync('id', ['-u', USER]).status !== 0) return undefined;
  return { uid: Number(execFileSync('id', ['-u', USER]).toString()), gid: Number(execFileSync('id', ['-g', USER]).toString()) };
}

export interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface UserBoxOptions {
  /** The test directory's name starts with this, under /tmp. */
  prefix: string;
  /** Set for every command the user runs (before a call's own). */
  env?: Record<string, string>;
  /** A TMPDIR of the user's own under the test directory, to check it is left empty. */
  tmp?: boolean;
}

/**
 * One test file's directory: `base` (world-readable), the package copy in `pkg`, the user's
 * `home` and `state` (NSBOX_ROOT) in it. The paths are fixed at construction; `setup()` makes
 * them (in beforeAll: nothing is made when the tests are skipped), `dispose()` removes them.
 */
export class UserBox {
  readonly base: string;
  readonly pkg: string;
  readonly home: string;
  readonly state: string;

  constructor(
    private readonly ids: UserIds,
    private readonly options: UserBoxOptions,
  ) {
    this.base = path.join('/tmp', `${options.prefix}${randomBytes(6).toString('hex')}`);
    this.pkg = path.join(this.base, 'pkg');
    this.home = path.join(this.base, 'home');
    this.state = path.join(this.home, 'state');
  }

  setup(): void {
    mkdirSync(this.base, { mode: 0o755 });
    chmodSync(this.base, 0o755);
    // What the package loads: the compiled JS, the addon, package.json, the busybox script.
    for (const p of ['dist', 'build/Release/nsbox.node', 'package.json', 'scripts/make-busybox-rootfs.sh']) {
      cpSync(path.join(REPO, p), path.join(this.pkg, p), { recursive: true });
    }
    execFileSync('chmod', ['-R', 'a+rX', this.base]);
    mkdirSync(this.home, { mode: 0o755 });
    chownSync(this.home, this.ids.uid, this.ids.gid);
    if (this.options.tmp) {
      mkdirSync(path.join(this.base, 'tmp'), { mode: 0o700 });
      chownSync(path.join(this.base, 'tmp'), this.ids.uid, this.ids.gid);
    }
  }

  /** Removes the directory as root (files a container's range owns included). */
  dispose(): void {
    rmSync(this.base, { recursive: true, force: true });
  }

  /** Runs argv as the user with a clean environment: state under `state` unless env says else. */
  asUser = (argv: string[], env: Record<string, string> = {}, opts: { input?: string; timeout?: number } = {}): Result => {
    const r = spawnSync(
      'runuser',
      [
        '-u',
        USER,
        '--',
        'env',
        '-i',
        `PATH=${process.env.PATH}`,
        `HOME=${this.home}`,
        `NSBOX_ROOT=${this.state}`,
        ...(this.options.tmp ? [`TMPDIR=${this.base}/tmp`] : []),
        ...Object.entries({ ...this.options.env, ...env }).map(([k, v]) => `${k}=${v}`),
        ...argv,
      ],
      { cwd: this.base, encoding: 'utf8', timeout: opts.timeout ?? 60_000, ...(opts.input !== undefined ? { input: opts.input } : {}) },
    );
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  /** The CLI, as the user. */
  nsbox = (args: string[], env: Record<string, string> = {}): Result => this.asUser(['node', path.join(this.pkg, 'dist/cli/main.js'), ...args], env);

  /** Writes a script of the API's that the user can read (`body` runs in an async function). */
  apiScript(body: string, name = `api-${randomBytes(6).toString('hex')}.js`): string {
    const file = path.join(this.base, name);
    writeFileSync(
      file,
      `const nsbox = require(${JSON.stringify(path.join(this.pkg, 'dist/index.js'))});\n(async () => {\n${body}\n})().catch((e) => { console.log(JSON.stringify({ error: e.message, code: e.code, hint: e.hint })); process.exitCode = 1; });\n`,
    );
    chmodSync(file, 0o644);
    return file;
  }

  /** Runs a script of the API's as the user; it prints one JSON line (an error as one too). */
  api = (body: string): Result => this.asUser(['node', this.apiScript(body)]);

  /**
   * The user's processes of this test: working in its directory (node, run through runuser)
   * or holding a file of its state (a detached container's monitor). A container's own
   * processes die with those (tested elsewhere); another run's of the same user are not counted.
   */
  userProcesses = (): string[] => {
    const r = spawnSync('ps', ['-u', String(this.ids.uid), '-o', 'pid=,comm='], { encoding: 'utf8' });
    const link = (p: string) => {
      try {
        return readlinkSync(p);
      } catch {
        return '';
      }
    };
    return r.stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .filter((line) => {
        const pid = line.trim().split(/\s+/)[0]!;
        if (link(`/proc/${pid}/cwd`).startsWith(this.base)) return true;
        try {
          return readdirSync(`/proc/${pid}/fd`).some((fd) => link(`/proc/${pid}/fd/${fd}`).startsWith(this.state));
        } catch {
          return false;
        }
      });
  };

  /** Host mounts of anything under this test's directory (the machine's others are not ours). */
  ourMounts = (): string[] =>
    readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => l.includes(this.base));
}
