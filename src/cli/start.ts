#!/usr/bin/env node
/**
 * The `nsbox` command. Loads the CLI from dist/cli/bundle.js (every module in one file, made by
 * scripts/bundle-cli.js) with V8's code cache for it, so that a start reads two files and
 * compiles little (the bundle is ASCII: read as latin1, with no UTF-8 decoding). Without
 * the bundle, or with one older than main.js (a plain `tsc` ran after it), it loads main.js.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vm from 'node:vm';

type Factory = (exports: unknown, require: (id: string) => unknown, module: { exports: unknown }, filename: string, dirname: string) => void;

const dist = path.join(__dirname, '..');
const bundleFile = path.join(__dirname, 'bundle.js');
const cacheFile = path.join(__dirname, 'bundle.cache');

function readOrNull(file: string): Buffer | null {
  try {
    return fs.readFileSync(file);
  } catch {
    return null;
  }
}

/** A bundle older than main.js is stale (a plain `tsc` ran after the last bundle-cli). */
function stale(): boolean {
  try {
    return fs.statSync(path.join(__dirname, 'main.js')).mtimeMs > fs.statSync(bundleFile).mtimeMs;
  } catch {
    return false;
  }
}

const source = stale() ? null : readOrNull(bundleFile);
if (source === null) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the CLI's entry, loaded as Node loads it
  require('./main');
} else {
  const cachedData = readOrNull(cacheFile) ?? undefined;
  const script = new vm.Script(source.toString('latin1'), { filename: bundleFile, ...(cachedData ? { cachedData } : {}) });
  // For the tests and the bench: whether V8 took the cache (it refuses one made by another
  // V8 version, or with other flags).
  if (process.env.NSBOX_CODE_CACHE_REPORT)
    process.stderr.write(`nsbox: code cache ${cachedData ? (script.cachedDataRejected ? 'rejected' : 'accepted') : 'absent'}\n`);
  const bundled = script.runInThisContext() as Record<string, Factory> & { '(requires)'?: Record<string, Record<string, string>> };
  const table: Record<string, Factory> = bundled;
  // Each module's relative requires, resolved when the bundle was made (scripts/bundle-cli.js).
  const resolved = bundled['(requires)'] ?? {};
  const loaded = new Map<string, { exports: unknown }>();

  const load = (rel: string): unknown => {
    const done = loaded.get(rel);
    if (done) return done.exports;
    const module = { exports: {} as unknown };
    loaded.set(rel, module);
    const filename = path.join(dist, rel);
    table[rel]!(module.exports, requireFrom(rel), module, filename, path.dirname(filename));
    return module.exports;
  };

  // A module's require: its relative requires are the bundle's modules, anything else
  // (node: built-ins, the addon by absolute path, package.json) Node's own.
  const requireFrom = (from: string) => {
    const known = resolved[from];
    return (id: string): unknown => {
      const found = known?.[id];
      if (found !== undefined) return load(found);
      if (id.startsWith('./') || id.startsWith('../')) {
        const rel = path.posix.normalize(path.posix.join(path.posix.dirname(from), id));
        for (const candidate of [`${rel}.js`, rel, `${rel}/index.js`]) {
          if (Object.prototype.hasOwnProperty.call(table, candidate)) return load(candidate);
        }
        // eslint-disable-next-line @typescript-eslint/no-require-imports -- a file beside the bundle (package.json)
        return require(path.join(dist, rel));
      }
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- built-ins, the addon, node_modules
      return require(id);
    };
  };

  const writeCache = process.env.NSBOX_WRITE_CODE_CACHE;
  if (writeCache) {
    // After the run: the cache then holds the functions the run compiled, not only the top level.
    process.on('exit', () => fs.writeFileSync(writeCache, script.createCachedData()));
  }
  load('cli/main.js');
}
