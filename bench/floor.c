// The floor: the fewest system calls that make the container nsbox makes, in a loop.
//
//   floor [-n RUNS] [-w WARMUP] [-H] [-b] [-f] [-V] LOWERDIR SCRATCHDIR
//   floor -F INIT [-C CGROUPDIR] [-n RUNS] [-w WARMUP] [-H] LOWERDIR SCRATCHDIR [INIT-OPTION...]
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
// -F INIT ("full": the same steps as nsbox's default start of /bin/true, issue 14 goal 3) is
// -f -V with nsbox's process tree and the rest of its kernel work, each step done the cheapest
// way C allows and none nsbox does not do:
//   - before the loop, once (as the addon does once per process): INIT, nsbox's own
//     nsbox-init (build/Release/nsbox_init, the very program the addon embeds), copied into a
//     sealed memfd;
//   - per run, in this process: the overlay's three directories, and the container's
//     /etc/hosts and /etc/hostname written beside them (nsbox binds both in); with -C, a
//     cgroup directory under CGROUPDIR (nsbox makes one per start in its cgroup v2
//     hierarchy) that the child is born in (clone3 CLONE_INTO_CGROUP), removed after the exit;
//     the report pipe and a pidfd of this process (nsbox opens one per start for the child
//     and init); clone3 with CLONE_PIDFD;
//   - in the child: not dumpable, a parent-death signal, the pidfd's check that this
//     process lives; -f's mounts, except that the six device nodes are the host's bound in
//     (as nsbox does: bind + a remount for nosuid/noexec) and the masked files get nsbox's
//     read-only, nosuid, noexec bind; /etc/hosts and /etc/hostname bound in from the run's
//     files; pivot_root, loopback up, hostname, setsid; stdio on /dev/null (stdio 'ignore');
//     then execveat of the memfd, with the argv nsbox passes: "nsbox-init report=FD
//     parent=FD INIT-OPTION... -- /bin/true" (bench/lib/init-argv.mjs makes the options
//     with nsbox's own code: capability sets, no_new_privs, ids, its 128-instruction seccomp
//     filter, the rlimits, the candidate path; checked identical to the argv of a traced
//     nsbox start, `strace -f -e trace=execveat -s 100000`, on 2026-12-01) and nsbox's
//     environment; the root and /dev are nodev, as nsbox's;
//   - nsbox-init then does all it does in nsbox: rlimits, no_new_privs, bounding set,
//     ambient set, ids, capset, seccomp, parent-death signal, the pidfd check, two pipes,
//     fork, execve of /bin/true, its reports, reaping, exit;
//   - this process reads the first report (started), waits for the pidfd to be readable,
//     waitid(P_PIDFD), reads the exit report, and removes the run's directories (and cgroup).
// What -F does not do, and nsbox does (nsbox's own cost, not the kernel's floor): the
// container's record (container.json written twice, its temp dir and renames, the lock
// symlink, the tombstone rename at removal); the cgroup files read after the exit and the
// rmdirs of cgroup v1 directories that do not exist; fd-based mounting (nsbox mounts with
// fsopen/fsconfig/fsmount/move_mount and resolves every target with openat2 RESOLVE_IN_ROOT:
// about 320 system calls in its child, where -F's child makes about 100, by path); the child's
// reset of every signal handler (60 more calls) and close_range (this process has no handlers
// and opens every fd close-on-exec); CLONE_VM|CLONE_VFORK (a fork of this small
// process costs as little); Node's event loop, thread pool and spawner thread.
//
// Prints one line per measured run: "<ns clone..exit> <ns mkdir..cleanup done> <cpu us>", the
// last being the CPU time (user + system) of this process and the child over the run.
// Failures in the child exit 100+step (123: execveat), so the runner can say which step broke
// (with -F, nsbox-init's own failures exit 125 after a report, which is printed).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

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

// -F: nsbox-init's memfd, the argv and environment it is exec'd with (the report and parent
// fds filled in per run), /dev/null for the container's stdio, this process's pidfd.
static int init_fd = -1, devnull = -1, self_pidfd = -1, report_wfd = -1;
static char **init_argv, *init_envp[4];
static char report_arg[32], parent_arg[32], hostname_env[64];

// A bind mount with flags of its own: mount(2) takes them only on a remount of the bind.
static int bind_with(const char *src, const char *dst, unsigned long flags) {
  if (mount(src, dst, NULL, MS_BIND, NULL) < 0) return -1;
  return mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | flags, NULL);
}

// An empty file to bind something onto.
static int touch(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  return close(fd);
}

static void child(const char *lower, const char *upper, const char *work, const char *merged, const char *dir) {
  char opts[16384];
  const int nsbox_tree = init_fd >= 0;  // -F
  if (nsbox_tree) {
    CHECK(0, prctl(PR_SET_DUMPABLE, 0));
    CHECK(0, prctl(PR_SET_PDEATHSIG, SIGKILL));
    struct pollfd p = {self_pidfd, POLLIN, 0};
    if (poll(&p, 1, 0) != 0) _exit(100);
  }
  CHECK(1, mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
  if (bind_root) {
    CHECK(2, mount(lower, lower, NULL, MS_BIND | MS_REC, NULL));
    CHECK(3, chdir(lower));
  } else {
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s%s", lower, upper, work,
             volatile_upper ? ",volatile" : "");
    CHECK(2, mount("overlay", merged, "overlay", nsbox_tree ? MS_NODEV : 0, opts));
    CHECK(3, chdir(merged));
  }
  CHECK(4, mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
  CHECK(5, mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC | (nsbox_tree ? MS_NODEV : 0), "mode=755,size=65536k"));
  if (full) {
    // Host path; the container's is the same without the first '/'.
    static const struct { const char *host; int major, minor; } devs[] = {
        {"/dev/null", 1, 3}, {"/dev/zero", 1, 5}, {"/dev/full", 1, 7},
        {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0}};
    umask(0);
    for (unsigned i = 0; i < sizeof devs / sizeof devs[0]; i++) {
      if (nsbox_tree) {
        // nsbox binds the host's nodes onto empty files (its /dev is nodev).
        CHECK(6, touch(devs[i].host + 1));
        CHECK(6, bind_with(devs[i].host, devs[i].host + 1, MS_NOSUID | MS_NOEXEC));
      } else {
        CHECK(6, mknod(devs[i].host + 1, S_IFCHR | 0666, makedev(devs[i].major, devs[i].minor)));
      }
    }
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
    if (nsbox_tree) {
      // The run's /etc/hosts and /etc/hostname, bound onto files made in the container's /etc.
      static const char *names[] = {"hosts", "hostname"};
      for (unsigned i = 0; i < 2; i++) {
        char src[4200], dst[64];
        snprintf(src, sizeof src, "%s/%s", dir, names[i]);
        snprintf(dst, sizeof dst, "etc/%s", names[i]);
        CHECK(22, touch(dst));
        CHECK(22, bind_with(src, dst, MS_NOSUID | MS_NODEV | MS_NOEXEC));
      }
    }
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
        if (nsbox_tree) CHECK(18, bind_with("/dev/null", masked[i], MS_RDONLY | MS_NOSUID | MS_NOEXEC));
        else CHECK(18, mount("/dev/null", masked[i], NULL, MS_BIND, NULL));
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
  if (nsbox_tree) {
    // stdio 'ignore'; the report pipe and the pidfd are the only other fds init gets.
    for (int fd = 0; fd < 3; fd++) CHECK(21, dup2(devnull, fd));
    CHECK(21, fcntl(report_wfd, F_SETFD, 0));
    CHECK(21, fcntl(self_pidfd, F_SETFD, 0));
    syscall(SYS_execveat, init_fd, "", init_argv, init_envp, AT_EMPTY_PATH);
    _exit(123);
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

// nsbox-init's report (src-cc/common/report.h): kind 1 failed, 2 started, 3 exited.
struct report {
  int32_t kind, step, sys, err, detail, status;
  int64_t user_us, system_us, max_rss_kib;
};

static int read_report(int fd, struct report *r) {
  ssize_t n;
  do n = read(fd, r, sizeof *r);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t)sizeof *r ? 0 : -1;
}

// nsbox-init into a sealed memfd, once, as the addon does (src-cc/core/init_image.cc).
static int load_init(const char *path) {
  int src = open(path, O_RDONLY | O_CLOEXEC);
  if (src < 0) return -1;
  int fd = (int)syscall(SYS_memfd_create, "nsbox-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -1;
  char buf[65536];
  ssize_t n;
  while ((n = read(src, buf, sizeof buf)) > 0)
    if (write(fd, buf, (size_t)n) != n) return -1;
  close(src);
  if (n < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) return -1;
  return fd;
}

static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  size_t len = strlen(text);
  int ok = write(fd, text, len) == (ssize_t)len;
  close(fd);
  return ok ? 0 : -1;
}

static void usage(void) {
  fprintf(stderr,
          "usage: floor [-n RUNS] [-w WARMUP] [-H] [-b] [-f] [-V] LOWERDIR SCRATCHDIR\n"
          "       floor -F INIT [-C CGROUPDIR] [-n RUNS] [-w WARMUP] [-H] LOWERDIR SCRATCHDIR [INIT-OPTION...]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int runs = 300, warmup = 20, hostnet = 0, opt;
  const char *init_path = NULL, *cgroup_parent = NULL;
  while ((opt = getopt(argc, argv, "+n:w:HbfVF:C:")) != -1) {
    switch (opt) {
      case 'n': runs = atoi(optarg); break;
      case 'w': warmup = atoi(optarg); break;
      case 'H': hostnet = 1; break;
      case 'b': bind_root = 1; break;
      case 'f': full = 1; break;
      case 'V': volatile_upper = 1; break;
      case 'F': init_path = optarg; break;
      case 'C': cgroup_parent = optarg; break;
      default: usage();
    }
  }
  if (argc - optind < 2 || (!init_path && argc - optind != 2) || (cgroup_parent && !init_path) || (init_path && bind_root)) usage();
  const char *lower = argv[optind], *scratch = argv[optind + 1];
  char **init_opts = argv + optind + 2;
  int n_init_opts = argc - optind - 2;
  unsigned long flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
  if (!hostnet) flags |= CLONE_NEWNET;
  if (mkdir(scratch, 0700) < 0 && errno != EEXIST) { perror(scratch); return 1; }
  // The child names the run's files by path after its chdir into the root.
  char *scratch_abs = realpath(scratch, NULL);
  if (!scratch_abs) { perror(scratch); return 1; }
  scratch = scratch_abs;
  if (init_path) {
    // -F: -f's steps, on nsbox's volatile overlay, with nsbox-init as the container's PID 1.
    full = volatile_upper = 1;
    if ((init_fd = load_init(init_path)) < 0) { perror(init_path); return 1; }
    if ((devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) { perror("/dev/null"); return 1; }
    init_argv = calloc((size_t)n_init_opts + 6, sizeof *init_argv);
    int k = 0;
    init_argv[k++] = "nsbox-init";
    init_argv[k++] = report_arg;
    init_argv[k++] = parent_arg;
    for (int i = 0; i < n_init_opts; i++) init_argv[k++] = init_opts[i];
    init_argv[k++] = "--";
    init_argv[k++] = "/bin/true";
    init_envp[0] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    init_envp[1] = hostname_env;
    init_envp[2] = "HOME=/root";
  }

  for (int i = 0; i < warmup + runs; i++) {
    char dir[4096], upper[4200], work[4200], merged[4200], file[4200], cgdir[4200];
    snprintf(dir, sizeof dir, "%s/%d-%d", scratch, (int)getpid(), i);
    snprintf(upper, sizeof upper, "%s/upper", dir);
    snprintf(work, sizeof work, "%s/work", dir);
    snprintf(merged, sizeof merged, "%s/merged", dir);
    int cgfd = -1, pidfd = -1, report[2] = {-1, -1};

    long long c0 = cpu_us();
    long long t0 = now_ns();
    if (!bind_root && (mkdir(dir, 0700) < 0 || mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0 ||
                       mkdir(merged, 0755) < 0)) {
      perror(dir);
      return 1;
    }
    if (init_path) {
      char host[16];
      snprintf(host, sizeof host, "%012x", i);
      snprintf(hostname_env, sizeof hostname_env, "HOSTNAME=%s", host);
      char hosts[512];
      snprintf(hosts, sizeof hosts,
               "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
               "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t%s\n", host);
      snprintf(file, sizeof file, "%s/hosts", dir);
      if (write_file(file, hosts) < 0) { perror(file); return 1; }
      snprintf(file, sizeof file, "%s/hostname", dir);
      strcat(host, "\n");
      if (write_file(file, host) < 0) { perror(file); return 1; }
      if (cgroup_parent) {
        snprintf(cgdir, sizeof cgdir, "%s/floor-%d-%d", cgroup_parent, (int)getpid(), i);
        if (mkdir(cgdir, 0755) < 0 || (cgfd = open(cgdir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) { perror(cgdir); return 1; }
      }
      if (pipe2(report, O_CLOEXEC) < 0) { perror("pipe2"); return 1; }
      if ((self_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0)) < 0) { perror("pidfd_open"); return 1; }
      report_wfd = report[1];
      snprintf(report_arg, sizeof report_arg, "report=%d", report[1]);
      snprintf(parent_arg, sizeof parent_arg, "parent=%d", self_pidfd);
    }
    long long t1 = now_ns();
    pid_t pid;
    if (init_path) {
      struct clone_args ca;
      memset(&ca, 0, sizeof ca);
      ca.flags = flags | CLONE_PIDFD | (cgfd >= 0 ? CLONE_INTO_CGROUP : 0);
      ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
      ca.exit_signal = SIGCHLD;
      ca.cgroup = (uint64_t)(cgfd >= 0 ? cgfd : 0);
      pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
    } else {
      pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
    }
    if (pid < 0) { perror("clone"); return 1; }
    if (pid == 0) child(lower, upper, work, merged, dir);
    int status;
    if (init_path) {
      // As the supervisor: the first report (the command started), then the pidfd readable,
      // waitid on it, and the exit report.
      close(report[1]);
      close(self_pidfd);
      struct report started, exited;
      int got = read_report(report[0], &started);
      if (got == 0 && started.kind == 2) {
        struct pollfd p = {pidfd, POLLIN, 0};
        while (poll(&p, 1, -1) < 0 && errno == EINTR) {}
      }
      siginfo_t si;
      memset(&si, 0, sizeof si);
      while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR) {}
      status = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : (si.si_status & 0x7f);
      if (got < 0 || started.kind != 2 || read_report(report[0], &exited) < 0 || exited.kind != 3 || exited.status != 0) {
        fprintf(stderr, "floor: run %d: nsbox-init %s (step %d, sys %d, errno %d), exit %d\n", i,
                got < 0 ? "sent no report" : started.kind == 1 ? "failed" : "did not report a clean exit",
                started.step, started.sys, started.err, status >> 8);
        if (status == 0) status = 1 << 8;
      }
      close(report[0]);
      close(pidfd);
    } else {
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    }
    long long t2 = now_ns();
    if (cgfd >= 0) {
      close(cgfd);
      if (rmdir(cgdir) < 0) { perror(cgdir); return 1; }
    }
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
