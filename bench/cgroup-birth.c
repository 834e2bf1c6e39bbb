// Usage: gcc -O2 -o /tmp/cgroup-birth bench/cgroup-birth.c && mkdir V2DIR V1TASKSDIR && /tmp/cgroup-birth V2DIR V1DIR 50 30
// (the last argument: milliseconds between runs, so that every move meets an idle rcu_sync).
// Cost of putting a new process in a cgroup: born there (clone3 + CLONE_INTO_CGROUP) against
// moved there by its first act (a write of "0" to v2 cgroup.procs, or to a v1 tasks file).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
struct ca { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup; };
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
static int cmp(const void* a, const void* b) { double x = *(double*)a, y = *(double*)b; return x < y ? -1 : x > y; }
int main(int argc, char** argv) {
  const char* v2 = argv[1]; const char* v1 = argv[2]; int n = atoi(argv[3]);
  char p[512];
  snprintf(p, sizeof p, "%s/cgroup.procs", v2); int v2procs = open(p, O_WRONLY | O_CLOEXEC);
  snprintf(p, sizeof p, "%s/tasks", v1); int v1tasks = open(p, O_WRONLY | O_CLOEXEC);
  int dirfd = open(v2, O_PATH | O_DIRECTORY | O_CLOEXEC);
  double* t[4]; for (int m = 0; m < 4; m++) t[m] = calloc(n, sizeof(double));
  const char* names[4] = {"fork, no cgroup", "clone3 CLONE_INTO_CGROUP (v2)", "fork + write v2 cgroup.procs", "fork + write v1 tasks"};
  for (int i = 0; i < n; i++) for (int m = 0; m < 4; m++) {
    double t0 = now(); pid_t pid;
    if (m == 1) {
      struct ca a; memset(&a, 0, sizeof a); a.flags = 0x200000000ULL; a.exit_signal = SIGCHLD; a.cgroup = dirfd;
      pid = syscall(SYS_clone3, &a, sizeof a);
      if (pid == 0) _exit(0);
    } else {
      pid = fork();
      if (pid == 0) { if (m == 2) write(v2procs, "0", 1); if (m == 3) write(v1tasks, "0", 1); _exit(0); }
    }
    if (pid < 0) { perror("clone"); return 1; }
    waitpid(pid, NULL, 0);
    t[m][i] = now() - t0;
    if (argc > 4) usleep(atoi(argv[4]) * 1000);
  }
  for (int m = 0; m < 4; m++) { qsort(t[m], n, sizeof(double), cmp); printf("%-32s median %.3f ms\n", names[m], t[m][n / 2]); }
  return 0;
}
