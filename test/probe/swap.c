// Swaps directory entries with their symlink twins as fast as it can, atomically
// (renameat2 RENAME_EXCHANGE), as the proof of concept of CVE-2018-15664 did: at any moment
// each name is either the real directory or a symlink, flipping millions of times a second.
// Usage: swap DIR NAME TWIN [DIR NAME TWIN...] (each DIR opened once, at the start).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int main(int argc, char** argv) {
  int n = (argc - 1) / 3;
  if (n < 1 || n > 16 || (argc - 1) % 3 != 0) return 2;
  int dirs[16];
  for (int i = 0; i < n; i++) {
    dirs[i] = open(argv[1 + 3 * i], O_RDONLY | O_DIRECTORY);
    if (dirs[i] < 0) return 3;
  }
  write(1, "swapping\n", 9);
  for (;;) {
    for (int i = 0; i < n; i++) {
      syscall(SYS_renameat2, dirs[i], argv[2 + 3 * i], dirs[i], argv[3 + 3 * i], RENAME_EXCHANGE);
    }
  }
}
