#!/bin/bash
# Builds scripts/fuzz-tar.cc with the tar parser alone (src-cc/core/tar.cc) under
# AddressSanitizer and UBSan, and runs it: scripts/fuzz-tar.sh [SECONDS=60] [SEED].
# Not a build of the addon: only the parser, which takes no system calls.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${TMPDIR:-/tmp}/nsbox-fuzz-tar
g++ -std=c++20 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
  -Wall -Wextra -Werror -Isrc-cc scripts/fuzz-tar.cc src-cc/core/tar.cc -o "$out"
exec "$out" "${1:-60}" ${2:+"$2"}
