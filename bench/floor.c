// The floor: the fewest system calls that make the container nsbox makes, in a loop.
//
//   floor [-n RUNS] [-w WARMUP] [-H] [-b] [-f] [-V] LOWERDIR SCRATCHDIR
//
// Per run: mkdir a write layer, work dir and mount point under SCRATCHDIR; clone with the
// namespaces nsbox uses (mount, pid, uts, ipc, cgroup, and net unless -H); in the child make /
// rprivate, mount the overlay root (or, with -b, bind LOWERDIR onto itself), mount /proc and a
// tmpfs /dev in it, pivot_root, exec /bin/true; wait; remove the run's directories.
// With -V the overlay is mounted "volatile": no sync of the upper filesystem when the
// overlay's superblock goes away with the container (the write layer is thrown away anyway).
// With -f the child also does what nsbox adds on top of that minimum (device nodes, devpts,
// /dev/shm, read-only sysfs, /dev symlinks, the default masked and read-only paths, loopback
// up, hostname, setsid; not the capability and seccomp calls), so the report can tell the
// kernel's share of nsbox's time from its own.
//
// Prints one line per measured run: "<ns clone..exit> <ns mkdir..cleanup done> <cpu us>", the
// last being the CPU time (user + system) of this process and the child over the run.
// Failures in the child exit 100+step, so the runner can say which step broke.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#define CHECK(step, expr) \
  do {                    \
    if ((expr) < 0) _exit(100 + (step)); \
  } while (0)

static int full, bind_root, volatile_upper;

static void child(const char *lower, const char *upper, const char *work, const char *merged) {
  char opts[4096];
  CHECK(1, mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
  if (bind_root) {
    CHECK(2, mount(lower, lower, NULL, MS_BIND | MS_REC, NULL));
    CHECK(3, chdir(lower));
  } else {
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s%s", lower, upper, work,
             volatile_upper ? ",volatile" : "");
    CHECK(2, mount("overlay", merged, "overlay", 0, opts));
    CHECK(3, chdir(merged));
  }
  CHECK(4, mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
  CHECK(5, mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k"));
  if (full) {
    static const struct { const char *name; int major, minor; } devs[] = {
        {"dev/null", 1, 3}, {"dev/zero", 1, 5}, {"dev/full", 1, 7},
        {"dev/random", 1, 8}, {"dev/urandom", 1, 9}, {"dev/tty", 5, 0}};
    umask(0);
    for (unsigned i = 0; i < sizeof devs / sizeof devs[0]; i++)
      CHECK(6, mknod(devs[i].name, S_IFCHR | 0666, makedev(devs[i].major, devs[i].minor)));
    CHECK(7, mkdir("dev/pts", 0755));
    CHECK(7, mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"));
    CHECK(8, symlink("pts/ptmx", "dev/ptmx"));
    CHECK(9, mkdir("dev/shm", 01777));
    CHECK(9, mount("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k"));
    CHECK(10, symlink("/proc/self/fd", "dev/fd"));
    CHECK(10, symlink("/proc/self/fd/0", "dev/stdin"));
    CHECK(10, symlink("/proc/self/fd/1", "dev/stdout"));
    CHECK(10, symlink("/proc/self/fd/2", "dev/stderr"));
    CHECK(11, mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
    // The default confinement (src/security.ts): masked paths, read-only paths.
    static const char *masked[] = {
        "proc/acpi", "proc/asound", "proc/interrupts", "proc/kcore", "proc/keys",
        "proc/latency_stats", "proc/sched_debug", "proc/scsi", "proc/timer_list",
        "proc/timer_stats", "sys/devices/virtual/powercap", "sys/firmware"};
    static const char *readonly[] = {"proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"};
    for (unsigned i = 0; i < sizeof masked / sizeof masked[0]; i++) {
      struct stat st;
      if (lstat(masked[i], &st) < 0) continue;
      if (S_ISDIR(st.st_mode)) {
        CHECK(18, mount("tmpfs", masked[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
      } else if (!S_ISLNK(st.st_mode)) {
        CHECK(18, mount("/dev/null", masked[i], NULL, MS_BIND, NULL));
      }
    }
    for (unsigned i = 0; i < sizeof readonly / sizeof readonly[0]; i++) {
      if (access(readonly[i], F_OK) < 0) continue;
      CHECK(19, mount(readonly[i], readonly[i], NULL, MS_BIND | MS_REC, NULL));
      CHECK(19, mount(NULL, readonly[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
    }
  }
  CHECK(12, syscall(SYS_pivot_root, ".", "."));
  CHECK(13, umount2(".", MNT_DETACH));
  CHECK(14, chdir("/"));
  if (full) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    CHECK(15, s);
    CHECK(15, ioctl(s, SIOCGIFFLAGS, &ifr));
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0 && errno != EPERM) _exit(115);  // -H: host lo
    close(s);
    CHECK(16, sethostname("nsbox", 5));
    CHECK(17, setsid());
  }
  char *argv[] = {"/bin/true", NULL};
  char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL};
  execve(argv[0], argv, envp);
  _exit(120);
}

static long long cpu_us(void) {
  struct rusage self, kids;
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &kids);
  return (self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec + kids.ru_stime.tv_sec) * 1000000LL +
         self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec + kids.ru_stime.tv_usec;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st; (void)type; (void)ftw;
  return remove(path);
}

int main(int argc, char **argv) {
  int runs = 300, warmup = 20, hostnet = 0, opt;
  while ((opt = getopt(argc, argv, "n:w:HbfV")) != -1) {
    switch (opt) {
      case 'n': runs = atoi(optarg); break;
      case 'w': warmup = atoi(optarg); break;
      case 'H': hostnet = 1; break;
      case 'b': bind_root = 1; break;
      case 'f': full = 1; break;
      case 'V': volatile_upper = 1; break;
      default:
        fprintf(stderr, "usage: floor [-n RUNS] [-w WARMUP] [-H] [-b] [-f] [-V] LOWERDIR SCRATCHDIR\n");
        return 2;
    }
  }
  if (argc - optind != 2) {
    fprintf(stderr, "usage: floor [-n RUNS] [-w WARMUP] [-H] [-b] [-f] [-V] LOWERDIR SCRATCHDIR\n");
    return 2;
  }
  const char *lower = argv[optind], *scratch = argv[optind + 1];
  unsigned long flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
  if (!hostnet) flags |= CLONE_NEWNET;
  if (mkdir(scratch, 0700) < 0 && errno != EEXIST) { perror(scratch); return 1; }

  for (int i = 0; i < warmup + runs; i++) {
    char dir[4096], upper[4200], work[4200], merged[4200];
    snprintf(dir, sizeof dir, "%s/%d-%d", scratch, (int)getpid(), i);
    snprintf(upper, sizeof upper, "%s/upper", dir);
    snprintf(work, sizeof work, "%s/work", dir);
    snprintf(merged, sizeof merged, "%s/merged", dir);

    long long c0 = cpu_us();
    long long t0 = now_ns();
    if (!bind_root && (mkdir(dir, 0700) < 0 || mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0 ||
                       mkdir(merged, 0755) < 0)) {
      perror(dir);
      return 1;
    }
    long long t1 = now_ns();
    pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
    if (pid < 0) { perror("clone"); return 1; }
    if (pid == 0) child(lower, upper, work, merged);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    long long t2 = now_ns();
    if (!bind_root) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    long long t3 = now_ns();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "floor: run %d: child %s %d\n", i, WIFEXITED(status) ? "exited" : "killed by",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
      return 1;
    }
    if (i >= warmup) printf("%lld %lld %lld\n", t2 - t1, t3 - t0, cpu_us() - c0);
  }
  return 0;
}
