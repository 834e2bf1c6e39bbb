#!/usr/bin/env bash
# nsbox as its users get it. Packs this work tree, installs the tarball into an empty project
# on a PATH with no C/C++ compiler, and there:
#   - checks the tarball holds what a user needs and nothing else;
#   - runs a container from ESM (`import`) and from CommonJS (`require`);
#   - type-checks a strict TypeScript file that uses the API;
#   - proves the prebuild is what loads (no compile could have happened, no build/ dir,
#     node-gyp-build resolves into prebuilds/, the process mapped that file);
#   - runs `npx nsbox --version` (the bin).
# With --fallback it also installs with a compiler on PATH but LIBC=musl, so that the glibc
# prebuild does not match and node-gyp-build must compile from the shipped sources.
#
#   scripts/consumer-test.sh [--fallback]        (as root; NSBOX_CONSUMER_KEEP=1 keeps the temp dir)
#
# It packs a copy of the tree: packing runs prebuildify, which rebuilds build/ in place and
# would pull the addon from under tests running in this tree at the same time.
set -euo pipefail

fallback=0
case "${1:-}" in
  '') ;;
  --fallback) fallback=1 ;;
  *) echo "usage: consumer-test.sh [--fallback]" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)
# prebuildify names the folder after the platform and architecture it built on.
prebuild_dir=linux-$(node -p process.arch)
export PREBUILD_DIR=$prebuild_dir
begin=$EPOCHREALTIME

fail() { echo "consumer-test: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root: containers need CAP_SYS_ADMIN"
[ -d "$repo/node_modules/prebuildify" ] || fail "no dev dependencies in $repo: run npm ci first"
git -C "$repo" rev-parse --git-dir >/dev/null 2>&1 || fail "$repo is not a git work tree"

# A hermetic npm: the variables an outer `npm test` exports (npm_config_local_prefix=this
# repo, npm_package_*, ...) must not steer the consumer's installs. Its nodedir (where the
# Node headers for a fallback compile are) is the one setting kept.
keep_nodedir=${npm_config_nodedir:-}
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(npm_|NPM_CONFIG_|INIT_CWD$|NODE_OPTIONS$|NODE_PATH$|NSBOX_PREBUILD$|PREBUILDS_ONLY$|LIBC$)' || true)
[ -z "$keep_nodedir" ] || export npm_config_nodedir=$keep_nodedir

work=$(mktemp -d "${TMPDIR:-/tmp}/nsbox-consumer.XXXXXX")
cleanup() {
  if [ -n "${NSBOX_CONSUMER_KEEP:-}" ]; then echo "consumer-test: kept $work" >&2; return; fi
  # Containers were started with remove: true and their mounts lived in their own mount
  # namespaces, so nothing is mounted here; --one-file-system in case that ever breaks.
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
mkdir -p "$work/logs" "$work/pack" "$work/state" "$work/tmp"

elapsed() { awk -v now="$EPOCHREALTIME" -v start="$1" 'BEGIN { printf "%.1f s", now - start }'; }

# step NAME COMMAND...: runs it with its output in a log, shown only when it fails. (A
# function run this way has no errexit: the functions below return their failures.)
step() {
  local name=$1 start=$EPOCHREALTIME log="$work/logs/$1.log"
  shift
  if ! "$@" >"$log" 2>&1; then
    echo "consumer-test: --- $name failed; the end of its output:" >&2
    tail -n 60 "$log" >&2
    fail "$name"
  fi
  echo "consumer-test: $name ok ($(elapsed "$start"))"
}

# --- pack ------------------------------------------------------------------------------
# The tree as git sees it (tracked and untracked, less what .gitignore leaves out), so that
# stale build output in the work tree cannot reach the tarball.
stage() {
  mkdir -p "$work/stage"
  git -C "$repo" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$repo/$f" ] && printf '%s\0' "$f"; done |
    tar -C "$repo" --null -T - -cf - | tar -C "$work/stage" -xf - || return 1
  ln -s "$repo/node_modules" "$work/stage/node_modules"
}
step stage stage
# node-gyp compiles one file at a time unless told; the prebuild compile is the slow part.
export JOBS=${JOBS:-max}
# TMPDIR: prebuildify makes a header cache dir there; it goes with the rest.
step pack bash -c 'cd "$1" && TMPDIR=$3 npm pack --foreground-scripts --pack-destination "$2"' _ "$work/stage" "$work/pack" "$work/tmp"
tgz=$(ls "$work"/pack/nsbox-*.tgz 2>/dev/null | head -n 1)
[ -n "$tgz" ] || fail "npm pack made no tarball"

# What a user needs and nothing else: the compiled JS and its types (one per source, none
# stale), the glibc prebuild, the C++ sources and binding.gyp for a fallback compile, the
# busybox image script, README and LICENSE.
check_contents() {
  tar -tzf "$tgz" >"$work/contents.txt" || return 1
  node - "$work/contents.txt" "$work/stage" <<'EOF'
const fs = require('node:fs');
const path = require('node:path');
const [list, stage] = process.argv.slice(2);
const files = fs.readFileSync(list, 'utf8').split('\n').filter((l) => l && !l.endsWith('/'))
  .map((l) => l.replace(/^package\//, ''));
const problems = [];
const allowed = [
  /^package\.json$/, /^README\.md$/, /^LICENSE$/, /^binding\.gyp$/, /^docs\/DESIGN\.md$/,
  /^scripts\/make-busybox-rootfs\.sh$/, /^scripts\/embed-init\.js$/,
  /^dist\/.+\.(js|d\.ts)$/, /^dist\/cli\/bundle\.cache$/,
  new RegExp(`^prebuilds/${process.env.PREBUILD_DIR}/nsbox\\.glibc\\.node$`),
  /^src-cc\/.+\.(cc|h)$/,
];
for (const f of files) if (!allowed.some((re) => re.test(f))) problems.push(`unexpected file: ${f}`);

const walk = (dir) => fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
  e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]);
const sources = walk(path.join(stage, 'src')).filter((f) => f.endsWith('.ts'))
  .map((f) => path.relative(path.join(stage, 'src'), f).replace(/\.ts$/, ''));
const required = ['package.json', 'LICENSE', 'binding.gyp', 'scripts/make-busybox-rootfs.sh', 'scripts/embed-init.js',
  `prebuilds/${process.env.PREBUILD_DIR}/nsbox.glibc.node`];
if (fs.existsSync(path.join(stage, 'README.md'))) required.push('README.md');
for (const s of sources) required.push(`dist/${s}.js`, `dist/${s}.d.ts`);
// The bin's one-file CLI and its code cache (scripts/bundle-cli.js, at prepack).
required.push('dist/cli/bundle.js', 'dist/cli/bundle.cache');
for (const f of walk(path.join(stage, 'src-cc'))) required.push(path.relative(stage, f));
const pkg = JSON.parse(fs.readFileSync(path.join(stage, 'package.json'), 'utf8'));
required.push(pkg.main.replace(/^\.\//, ''), pkg.types.replace(/^\.\//, ''),
  pkg.bin.nsbox.replace(/^\.\//, ''));
for (const f of new Set(required)) if (!files.includes(f)) problems.push(`missing: ${f}`);
const compiled = new Set(sources);
for (const f of files) {
  const m = /^dist\/(.+?)(\.d)?\.(js|ts)$/.exec(f);
  if (m && !compiled.has(m[1]) && f !== 'dist/cli/bundle.js') problems.push(`stale: ${f} has no source in src/`);
}
if (problems.length) { console.error(problems.join('\n')); process.exit(1); }
console.log(`${files.length} files`);
EOF
}
step contents check_contents
echo "consumer-test: $(basename "$tgz"): $(wc -l <"$work/contents.txt") entries, $(du -k "$tgz" | cut -f1) KiB packed"

# --- a PATH with no compiler -----------------------------------------------------------
# Everything on the usual PATH but C/C++ compilers, preprocessors, assemblers, linkers and
# make. ldd and ldconfig stay: they are not compilers, and the busybox image script asks
# ldd whether busybox is static.
nocc=$work/bin
make_nocc_path() {
  mkdir -p "$nocc"
  local d f n targets=()
  local -A seen=()
  for d in /usr/local/bin /usr/bin /bin /usr/sbin /sbin; do
    [ -d "$d" ] || continue
    for f in "$d"/*; do
      n=${f##*/}
      case $n in
        cc | c++ | c89* | c99* | gcc* | g++* | cpp* | clang* | tcc | make | gmake | as | \
          ld | ld.bfd | ld.gold | ld.lld | lld* | gold | x86_64-linux-gnu-* | *-gcc* | *-g++*) continue ;;
      esac
      # The first directory on the PATH wins, as it would in a lookup.
      [ -z "${seen[$n]:-}" ] && [ -x "$f" ] && [ ! -d "$f" ] || continue
      seen[$n]=1
      targets+=("$f")
    done
  done
  ln -s -t "$nocc" "${targets[@]}" || return 1
  # A fresh shell, so that no hashed path from this one answers.
  /usr/bin/env -i PATH="$nocc" /bin/bash -c '
    for c in g++ gcc cc c++ cpp clang make gmake ld as; do
      if command -v "$c"; then echo "$c is still on the PATH"; exit 1; fi
    done
    command -v node && command -v npm' _
}
step no-compiler-path make_nocc_path

# --- the consumer project --------------------------------------------------------------
consumer=$work/consumer
mkdir -p "$consumer"
version=$(node -p "require('$work/stage/package.json').version")
ts_version=$(node -p "require('$repo/node_modules/typescript/package.json').version")
types_node_version=$(node -p "require('$repo/node_modules/@types/node/package.json').version")
cat >"$consumer/package.json" <<'EOF'
{ "name": "nsbox-consumer", "version": "1.0.0", "private": true }
EOF

# typescript and @types/node at the versions the repo uses, so that the npm cache has them.
step install bash -c 'cd "$1" && PATH=$2 npm install --prefer-offline --no-audit --no-fund --foreground-scripts "$3" "typescript@$4" "@types/node@$5"' \
  _ "$consumer" "$nocc" "$tgz" "$ts_version" "$types_node_version"

prebuild_used() {
  [ -f node_modules/nsbox/package.json ] || { echo "nsbox is not in node_modules"; return 1; }
  [ ! -e node_modules/nsbox/build ] || { echo "node_modules/nsbox/build exists: the install compiled the addon"; return 1; }
  local p
  p=$(node -p "require('node-gyp-build').path('node_modules/nsbox')")
  echo "node-gyp-build resolves $p"
  case $p in
    "$consumer"/node_modules/nsbox/prebuilds/"$prebuild_dir"/*.node) ;;
    *) echo "not a prebuild"; return 1 ;;
  esac
}
cd "$consumer"
step prebuild-resolved prebuild_used

# One container through the package's public entry, and which addon file the process mapped.
cat >"$consumer/check.cjs" <<'EOF'
const fs = require('node:fs');
module.exports = async function check(Runtime, NsboxError, how) {
  if (typeof Runtime !== 'function' || typeof NsboxError !== 'function') {
    throw new Error(`${how}: Runtime and NsboxError are not exported`);
  }
  const rt = new Runtime({ root: process.env.STATE });
  const c = await rt.run({ image: 'busybox', command: ['echo', 'hi'], remove: true });
  let out = '';
  c.stdout.setEncoding('utf8');
  for await (const chunk of c.stdout) out += chunk;
  const { exitCode, signal } = await c.wait();
  if (exitCode !== 0 || out !== 'hi\n') {
    throw new Error(`${how}: echo hi gave exit ${exitCode} (signal ${signal}) and ${JSON.stringify(out)}`);
  }
  const left = rt.list({ all: true });
  if (left.length !== 0) throw new Error(`${how}: remove: true left ${left.length} container(s)`);
  const addon = fs.readFileSync('/proc/self/maps', 'utf8').split('\n')
    .map((l) => l.split(/\s+/)[5]).find((f) => f && f.endsWith('.node'));
  console.log(`${how}: ran echo hi; addon ${addon}`);
  if (process.env.EXPECT_ADDON && !(addon || '').startsWith(process.env.EXPECT_ADDON)) {
    throw new Error(`${how}: the addon loaded from ${addon}, not from ${process.env.EXPECT_ADDON}`);
  }
};
EOF
cat >"$consumer/use.mjs" <<'EOF'
import { Runtime, NsboxError } from 'nsbox';
import check from './check.cjs';
await check(Runtime, NsboxError, 'ESM import');
EOF
cat >"$consumer/use.cjs" <<'EOF'
const { Runtime, NsboxError } = require('nsbox');
require('./check.cjs')(Runtime, NsboxError, 'CommonJS require').catch((e) => {
  console.error(e);
  process.exit(1);
});
EOF
export STATE=$work/state EXPECT_ADDON=$consumer/node_modules/nsbox/prebuilds/$prebuild_dir/
step esm env PATH="$nocc" node use.mjs
step cjs env PATH="$nocc" node use.cjs
cat "$work/logs/esm.log" "$work/logs/cjs.log"

# A strict TypeScript consumer, resolving through package.json "exports" (nodenext) and
# checking the shipped .d.ts files too (no skipLibCheck). The @ts-expect-error lines fail
# the check if the types were missing or `any`.
cat >"$consumer/tsconfig.json" <<'EOF'
{
  "compilerOptions": {
    "strict": true,
    "noEmit": true,
    "target": "ES2022",
    "module": "nodenext",
    "moduleResolution": "nodenext",
    "types": ["node"]
  },
  "files": ["use.ts"]
}
EOF
cat >"$consumer/use.ts" <<'EOF'
import { Runtime, NsboxError, type Container, type ExitStatus, type RunOptions } from 'nsbox';

const options: RunOptions = { image: 'busybox', command: ['echo', 'hi'], remove: true };

export async function echo(root: string): Promise<{ out: string; status: ExitStatus }> {
  const rt = new Runtime({ root });
  const c: Container = await rt.run(options);
  let out = '';
  c.stdout?.setEncoding('utf8');
  c.stdout?.on('data', (chunk: string) => { out += chunk; });
  const status: ExitStatus = await c.wait();
  const code: number | null = status.exitCode;
  const signal: NodeJS.Signals | null = status.signal;
  void code;
  void signal;
  return { out, status };
}

export function describe(err: unknown): string {
  if (err instanceof NsboxError) {
    const code: string = err.code;
    return `${code}: ${err.message}`;
  }
  return String(err);
}

// @ts-expect-error image is a string
export const wrongImage: RunOptions = { image: 42 };
// @ts-expect-error wait() resolves to an ExitStatus, not a number
export const wrongStatus = async (c: Container): Promise<number> => c.wait();
EOF
step typescript env PATH="$nocc" node_modules/.bin/tsc -p tsconfig.json

cli_version() {
  local v
  v=$(PATH=$nocc npx --no-install nsbox --version)
  echo "npx nsbox --version: $v"
  [ "$v" = "nsbox $version" ] || { echo "expected: nsbox $version"; return 1; }
}
step cli-version cli_version

# --- the fallback compile --------------------------------------------------------------
if [ "$fallback" = 1 ]; then
  fb=$work/fallback
  mkdir -p "$fb"
  cp "$consumer/package.json" "$consumer/check.cjs" "$consumer/use.cjs" "$fb/"
  cd "$fb"
  # LIBC=musl makes node-gyp-build look for a musl prebuild; there is none, so its install
  # step must compile (with the compiler on the ordinary PATH) from src-cc/ and binding.gyp.
  step fallback-install env LIBC=musl npm install --prefer-offline --no-audit --no-fund --foreground-scripts "$tgz"
  [ -f node_modules/nsbox/build/Release/nsbox.node ] || fail "fallback: no build/Release/nsbox.node after the install"
  grep -q 'gyp info ok' "$work/logs/fallback-install.log" || fail "fallback: node-gyp did not report a build"
  EXPECT_ADDON=$fb/node_modules/nsbox/build/Release/ step fallback-cjs node use.cjs
  cat "$work/logs/fallback-cjs.log"
fi

echo "consumer-test: all ok ($(elapsed "$begin"))"
