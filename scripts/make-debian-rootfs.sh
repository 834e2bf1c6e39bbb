#!/usr/bin/env bash
# Makes a Debian minbase root filesystem with debootstrap, and a tarball of it: the "large
# image" of the import and commit benchmarks. Both are cached: a second call with the same
# DIR and TARBALL does nothing.
#   scripts/make-debian-rootfs.sh DIR TARBALL [SUITE]
# The mirror is the one apt uses here (the first URIs/deb line of /etc/apt/sources.list*),
# or $DEBIAN_MIRROR. Exits 3 (and says why) when debootstrap is missing or cannot fetch.
set -euo pipefail
dir=${1:?usage: make-debian-rootfs.sh DIR TARBALL [SUITE]}
tarball=${2:?usage: make-debian-rootfs.sh DIR TARBALL [SUITE]}
suite=${3:-$( (. /etc/os-release && echo "${VERSION_CODENAME:-}") 2>/dev/null || true)}
suite=${suite:-bookworm}

if [ -f "$dir/.complete" ] && [ -s "$tarball" ]; then
  exit 0
fi
if ! command -v debootstrap >/dev/null; then
  echo "make-debian-rootfs: debootstrap is missing: apt-get install debootstrap" >&2
  exit 3
fi

apt_mirror() {
  local f line
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    line=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' "$f")
    [ -n "$line" ] && { echo "$line"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    line=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { if ($i ~ /\/debian\/?$/) { print $i; exit } break } }' "$f")
    [ -n "$line" ] && { echo "$line"; return; }
  done
  echo http://deb.debian.org/debian
}
mirror=${DEBIAN_MIRROR:-$(apt_mirror)}

rm -rf "$dir" "$tarball"
mkdir -p "$(dirname "$dir")"
log="$dir.debootstrap.log"
echo "make-debian-rootfs: debootstrap --variant=minbase $suite from $mirror (log: $log)" >&2
if ! debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$log" 2>&1; then
  echo "make-debian-rootfs: debootstrap failed (cannot reach $mirror?); last lines of $log:" >&2
  tail -5 "$log" >&2
  rm -rf "$dir"
  exit 3
fi
# Caches that only make the image bigger and vary between runs.
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
touch "$dir/.complete"
tar --numeric-owner --exclude=./.complete -C "$dir" -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
