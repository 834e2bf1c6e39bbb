// Issue 10's question: does copying a tarball's file data in the kernel beat reading it and
// writing it? CPU time per new file, for N files of SIZE bytes taken from a tarball at spread
// offsets, each made as the extractor makes it (openat O_EXCL, the data, futimens, close).
//
//   copy-ways TARBALL DIR SIZE N WAY
//
// WAY 0: pread the data into a buffer, then write it (what the batched extractor does: the
//        JS thread's read, shared with the hash and the parser, then the writer's write);
// WAY 1: copy_file_range from the tarball (same file system only: EXDEV across);
// WAY 2: splice the tarball into a 1 MiB pipe and the pipe into the file (across file systems).
// Build: cc -O2 -o /tmp/copy-ways bench/copy-ways.c. DIR must be empty; remove it after.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static double cpu_ms(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e3 + (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e3;
}

static void die(const char* what) {
  fprintf(stderr, "copy-ways: %s: %s\n", what, strerror(errno));
  exit(1);
}

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: copy-ways TARBALL DIR SIZE N WAY\n");
    return 2;
  }
  size_t size = strtoul(argv[3], NULL, 10);
  int n = atoi(argv[4]), way = atoi(argv[5]);
  int in = open(argv[1], O_RDONLY | O_CLOEXEC);
  int dir = open(argv[2], O_PATH | O_DIRECTORY | O_CLOEXEC);
  struct stat st;
  if (in < 0 || dir < 0 || fstat(in, &st) < 0) die("open");
  if ((off_t)size + 1 >= st.st_size) die("SIZE beyond the tarball");
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) die("pipe2");
  fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
  char* buf = malloc(size + 1);
  if (!buf) die("malloc");
  double start = cpu_ms();
  for (int i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "f%d", i);
    int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) die("openat");
    off_t off = ((off_t)i * 7919 * 512) % (st.st_size - (off_t)size - 1) / 512 * 512;
    size_t left = size;
    while (left > 0) {
      ssize_t k;
      if (way == 0) {
        k = pread(in, buf, left, off);
        if (k > 0 && write(fd, buf, (size_t)k) != k) die("write");
        off += k;
      } else if (way == 1) {
        k = copy_file_range(in, &off, fd, NULL, left, 0);
      } else {
        k = splice(in, &off, p[1], NULL, left, SPLICE_F_MOVE);
        for (ssize_t moved = 0; k > 0 && moved < k;) {
          ssize_t m = splice(p[0], NULL, fd, NULL, (size_t)(k - moved), SPLICE_F_MOVE);
          if (m <= 0) die("splice out");
          moved += m;
        }
      }
      if (k <= 0) die(way == 0 ? "pread" : way == 1 ? "copy_file_range" : "splice in");
      left -= (size_t)k;
    }
    struct timespec t[2] = {{1600000000, 0}, {1600000000, 0}};
    if (futimens(fd, t) < 0) die("futimens");
    close(fd);
  }
  printf("way %d size %zu: %.1f us CPU a file\n", way, size, (cpu_ms() - start) * 1000 / n);
  return 0;
}
