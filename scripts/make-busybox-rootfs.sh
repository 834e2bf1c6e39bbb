#!/usr/bin/env bash
# Makes a busybox root filesystem from the host's static busybox (Debian's busybox-static),
# and a tarball of it: the test fixture and the source of the built-in `busybox` image.
#   scripts/make-busybox-rootfs.sh DIR [TARBALL]
set -euo pipefail
dir=${1:?usage: make-busybox-rootfs.sh DIR [TARBALL]}
tarball=${2:-}

static_busybox() {
  local b
  b=$(command -v busybox) || return 1
  case "$(ldd "$b" 2>&1)" in *'not a dynamic'*) echo "$b" ;; *) return 1 ;; esac
}
if ! bb=$(static_busybox); then
  # The runtime sets NSBOX_NO_INSTALL: a library never installs packages behind its user's back.
  if [ -z "${NSBOX_NO_INSTALL:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  fi
  bb=$(static_busybox) || { echo "make-busybox-rootfs: needs a static busybox: apt-get install busybox-static" >&2; exit 1; }
fi

rm -rf "$dir"
mkdir -p "$dir"/{bin,dev,etc,home,proc,root,sys,tmp,usr/bin,usr/sbin,sbin,var}
chmod 1777 "$dir/tmp"
cp "$bb" "$dir/bin/busybox"
# One process for all applets, each linked where busybox files it (/bin/sh, /usr/bin/env...),
# as links to /bin/busybox that resolve inside the root. The static binary lists its applets'
# paths itself: no chroot, so a user without root can make the image too.
"$bb" --list-full | while IFS= read -r applet; do
  case "$applet" in '' | /* | *..*) continue ;; esac
  [ "$applet" = bin/busybox ] || [ -e "$dir/$applet" ] || [ -L "$dir/$applet" ] || ln -s /bin/busybox "$dir/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$dir/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' >"$dir/etc/group"
echo nsbox-busybox >"$dir/etc/nsbox-image"

if [ -n "$tarball" ]; then
  tar --numeric-owner -C "$dir" -cf "$tarball" .
fi
