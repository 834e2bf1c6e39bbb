#!/usr/bin/env bash
# The child's rule (src-cc/core/child.cc): after clone it only makes async-signal-safe system
# calls on prepared data. This checks the object files that run in the child: every symbol
# they take from elsewhere must be on the list below (system call wrappers, errno, string
# functions that neither allocate nor lock). A new one fails CI until someone checks it is
# async-signal-safe and adds it here: no malloc, no operator new, no stdio, no locks.
#   scripts/check-child-symbols.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build/Release}
objects=("$build"/obj.target/nsbox/src-cc/core/child.o "$build"/obj.target/nsbox/src-cc/core/fdpass.o
  "$build"/obj.target/nsbox/src-cc/core/exec_child.o "$build"/obj.target/nsbox/src-cc/core/subid.o)
allowed=(
  __errno_location _exit chdir close dup2 fchdir fcntl fcntl64 fstat fstat64 ioctl mkdirat mount
  open open64 openat openat64 poll prctl recvmsg sendmsg sethostname setsid sigaction socket
  strchrnul strlen strrchr memcpy memset symlinkat syscall umask umount2 unshare write
  _ZN5nsbox7send_fdEii _ZN5nsbox10receive_fdEi _ZN5nsbox11receive_fdsEiPii
  dup3  # a single system call (core/child.cc wait_for_userns)
  clone fstatfs fstatfs64  # exec_child.o: the glibc wrappers are single system calls
  read pipe2 mmap mmap64 munmap  # subid.o (newuidmap's helpers): single system calls too
)
status=0
for o in "${objects[@]}"; do
  [ -f "$o" ] || { echo "check-child-symbols: $o is missing (build first)" >&2; exit 2; }
  while read -r _ sym; do
    sym=${sym%@*}
    if [[ " ${allowed[*]} " != *" $sym "* ]]; then
      echo "check-child-symbols: $(basename "$o") uses $sym, which is not on the list of calls the child may make" >&2
      status=1
    fi
  done < <(nm -u "$o")
done
[ $status -eq 0 ] && echo "check-child-symbols: the child's objects use only allowed symbols"
exit $status
