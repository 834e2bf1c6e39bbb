// Runs a command many times and prints how long each run took: the harness for every peer
// that is a whole process (crun, runc, bwrap, unshare, the nsbox CLI, node -e 0), so that all
// of them are timed the same way, with the least overhead a launcher can have (posix_spawn,
// no shell).
//
//   spawnloop [-n RUNS] [-w WARMUP] [-j INFLIGHT] [-m] [-i IDPREFIX] -- COMMAND [ARG...]
//
// Every "{id}" in an argument becomes IDPREFIX-<run>, so each run has its own container id.
// -m: first enter a private mount namespace with an empty tmpfs over /sys/fs/cgroup/unified
//     (crun 1.8 refuses hybrid cgroup hosts otherwise); the host's mounts are not touched.
// -j: keep INFLIGHT runs going at once (throughput); then the last line is the wall time.
//
// Output: one line per measured run, "<ns> <cpu us>": from spawn to reaped exit, and the CPU
// time (user + system) of the command and the descendants it reaped; with -j > 1, a final
// line "wall <ns>" for the measured runs. Exit status: 0, or 1 if any run failed (its status
// is printed on stderr along with the run's stderr, kept in a temp file).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

extern char **environ;

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int private_mount_ns(void) {
  if (unshare(CLONE_NEWNS) < 0) { perror("spawnloop: unshare(CLONE_NEWNS)"); return -1; }
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) { perror("spawnloop: make / rprivate"); return -1; }
  struct statfs sf;
  if (statfs("/sys/fs/cgroup/unified", &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC &&
      mount("none", "/sys/fs/cgroup/unified", "tmpfs", 0, NULL) < 0) {
    perror("spawnloop: tmpfs over /sys/fs/cgroup/unified");
    return -1;
  }
  return 0;
}

struct slot { pid_t pid; long long start; int run; };

int main(int argc, char **argv) {
  int runs = 100, warmup = 5, inflight = 1, mountns = 0, opt;
  const char *prefix = "nsbox-bench";
  while ((opt = getopt(argc, argv, "+n:w:j:mi:")) != -1) {
    switch (opt) {
      case 'n': runs = atoi(optarg); break;
      case 'w': warmup = atoi(optarg); break;
      case 'j': inflight = atoi(optarg); break;
      case 'm': mountns = 1; break;
      case 'i': prefix = optarg; break;
      default: goto usage;
    }
  }
  if (optind >= argc || inflight < 1 || runs < 1) goto usage;
  if (mountns && private_mount_ns() < 0) return 2;

  int argn = argc - optind;
  char **args = calloc(argn + 1, sizeof *args);
  char errpath[] = "/tmp/spawnloop-stderr-XXXXXX";
  int errfd = mkstemp(errpath);
  if (errfd < 0) { perror("spawnloop: mkstemp"); return 2; }
  unlink(errpath);
  int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);

  struct slot *slots = calloc(inflight, sizeof *slots);
  int total = warmup + runs, next = 0, live = 0, failed = 0;
  long long wall_start = 0;
  if (warmup == 0) wall_start = now_ns();
  char ids[64][256];  // enough distinct "{id}" expansions for one command line

  while (next < total || live > 0) {
    while (live < inflight && next < total && (inflight > 1 || live == 0)) {
      // With -j the warm-up runs finish before the measured ones start, so "wall" is clean.
      if (inflight > 1 && next == warmup && live > 0) break;
      if (next == warmup && wall_start == 0) wall_start = now_ns();
      int k = 0;
      for (int a = 0; a < argn; a++) {
        const char *s = argv[optind + a];
        const char *hole = strstr(s, "{id}");
        if (hole && k < 64) {
          snprintf(ids[k], sizeof ids[k], "%.*s%s-%d%s", (int)(hole - s), s, prefix, next, hole + 4);
          args[a] = ids[k++];
        } else {
          args[a] = (char *)s;
        }
      }
      posix_spawn_file_actions_t fa;
      posix_spawn_file_actions_init(&fa);
      posix_spawn_file_actions_adddup2(&fa, nullfd, 0);
      posix_spawn_file_actions_adddup2(&fa, nullfd, 1);
      posix_spawn_file_actions_adddup2(&fa, errfd, 2);
      int s;
      for (s = 0; s < inflight && slots[s].pid; s++) {}
      slots[s].start = now_ns();
      slots[s].run = next;
      int err = posix_spawnp(&slots[s].pid, args[0], &fa, NULL, args, environ);
      posix_spawn_file_actions_destroy(&fa);
      if (err) { fprintf(stderr, "spawnloop: %s: %s\n", args[0], strerror(err)); return 2; }
      live++;
      next++;
    }
    int status;
    struct rusage ru;
    pid_t pid = wait4(-1, &status, 0, &ru);
    if (pid < 0) { if (errno == EINTR) continue; perror("spawnloop: wait"); return 2; }
    long long end = now_ns();
    for (int s = 0; s < inflight; s++) {
      if (slots[s].pid != pid) continue;
      slots[s].pid = 0;
      live--;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (failed++ == 0) {
          char buf[2048];
          ssize_t n = pread(errfd, buf, sizeof buf - 1, 0);
          buf[n > 0 ? n : 0] = '\0';
          fprintf(stderr, "spawnloop: run %d: %s %d; stderr so far:\n%s\n", slots[s].run,
                  WIFEXITED(status) ? "exit status" : "killed by signal",
                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), buf);
        }
      } else if (slots[s].run >= warmup) {
        // The run's CPU time: the command's and that of every descendant it reaped.
        long long cpu_us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
        printf("%lld %lld\n", end - slots[s].start, cpu_us);
      }
    }
  }
  if (inflight > 1) printf("wall %lld\n", now_ns() - wall_start);
  if (failed) fprintf(stderr, "spawnloop: %d of %d runs failed\n", failed, total);
  return failed ? 1 : 0;

usage:
  fprintf(stderr, "usage: spawnloop [-n RUNS] [-w WARMUP] [-j INFLIGHT] [-m] [-i IDPREFIX] -- COMMAND [ARG...]\n");
  return 2;
}
