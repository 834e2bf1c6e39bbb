// What one cgroup v1 move costs, and when: after GAP_MS of idle, the calling thread is moved
// into each FILE given (one per hierarchy, as a limited start's child does), back to back,
// N times; prints each write's time in ms, one line per round.
//
//   cc -O2 -o cgroup-move bench/cgroup-move.c
//   ./cgroup-move GAP_MS N HOW FILE...
//     HOW = self   write "0" to FILE (a `tasks` file: this thread moves itself alone)
//           tid    write this thread's id (to a `tasks` file)
//           pid    write this process's id (to a `cgroup.procs` file)
//           zero   write "0" (to a `cgroup.procs` file: the whole process)
//
// Make the directories first (one per hierarchy, e.g. <mount>/nsbox/movetest with a cpuset's
// cpus and mems copied from its parent) and rmdir them after. bench/ANALYSIS.md has results.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s GAP_MS N self|tid|pid|zero FILE...\n", argv[0]);
    return 2;
  }
  int gap = atoi(argv[1]), n = atoi(argv[2]), k = argc - 4;
  const char* how = argv[3];
  char value[32];
  if (!strcmp(how, "self") || !strcmp(how, "zero")) snprintf(value, sizeof value, "0");
  else if (!strcmp(how, "tid")) snprintf(value, sizeof value, "%ld", (long)syscall(SYS_gettid));
  else if (!strcmp(how, "pid")) snprintf(value, sizeof value, "%d", getpid());
  else {
    fprintf(stderr, "HOW: self, tid, pid or zero\n");
    return 2;
  }
  int fds[64];
  if (k > 64) k = 64;
  for (int j = 0; j < k; j++) {
    fds[j] = open(argv[4 + j], O_WRONLY | O_CLOEXEC);
    if (fds[j] < 0) {
      perror(argv[4 + j]);
      return 1;
    }
  }
  for (int i = 0; i < n; i++) {
    usleep(gap * 1000);
    for (int j = 0; j < k; j++) {
      double t0 = now_ms();
      if (write(fds[j], value, strlen(value)) < 0) {
        perror("write");
        return 1;
      }
      printf("%.3f ", now_ms() - t0);
    }
    printf("\n");
  }
  return 0;
}
