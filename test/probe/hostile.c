// A hostile container workload, for the tests of nsbox-init and the container's lifetime
// (test/container-init.test.ts). Each mode tries to escape the supervisor's control:
//
//   hostile linger        clears its parent-death signal, ignores every catchable signal,
//                         forks a grandchild that makes its own session and does the same,
//                         prints "ready <pid> <grandchild>" and sleeps forever
//   hostile traceme       PTRACE_TRACEME, then stops itself: a tracer that never lets it go
//                         would wedge the container; prints "continued" and exits 0 after
//   hostile orphans N     makes N orphans (children that exit after their parent has gone),
//                         waits for them to be gone, prints the zombies it sees, exits 0
//
// Built with `gcc -static -O2 -o hostile hostile.c` by the test.
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

static void ignore_everything(void) {
  prctl(PR_SET_PDEATHSIG, 0);
  for (int sig = 1; sig < 32; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP && sig != SIGCHLD) signal(sig, SIG_IGN);
  }
}

static int linger(void) {
  ignore_everything();
  int pipefd[2];
  if (pipe(pipefd) < 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    setsid();
    ignore_everything();
    close(pipefd[0]);
    close(pipefd[1]);
    for (;;) pause();
  }
  close(pipefd[1]);
  printf("ready %d %d\n", getpid(), child);
  fflush(stdout);
  for (;;) pause();
}

static int traceme(void) {
  if (ptrace(PTRACE_TRACEME, 0, 0, 0) < 0) {
    perror("ptrace");
    return 2;
  }
  raise(SIGSTOP);
  printf("continued\n");
  return 0;
}

static int count_zombies(void) {
  int n = 0;
  DIR* d = opendir("/proc");
  struct dirent* e;
  while (d && (e = readdir(d))) {
    char path[300], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    FILE* f = fopen(path, "r");
    if (!f) continue;
    if (fgets(buf, sizeof buf, f)) {
      char* p = strrchr(buf, ')');
      if (p && p[2] == 'Z') n++;
    }
    fclose(f);
  }
  if (d) closedir(d);
  return n;
}

static int orphans(int n) {
  for (int i = 0; i < n; i++) {
    pid_t p = fork();
    if (p == 0) {
      // The middle process exits at once; its child, orphaned, exits a little later and
      // must be reaped by PID 1.
      if (fork() == 0) {
        usleep(50000);
        _exit(0);
      }
      _exit(0);
    }
    waitpid(p, NULL, 0);
  }
  usleep(400000);
  printf("zombies %d\n", count_zombies());
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "linger") == 0) return linger();
  if (argc >= 2 && strcmp(argv[1], "traceme") == 0) return traceme();
  if (argc >= 3 && strcmp(argv[1], "orphans") == 0) return orphans(atoi(argv[2]));
  fprintf(stderr, "usage: hostile linger | traceme | orphans N\n");
  return 64;
}
