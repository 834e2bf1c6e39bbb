// A tiny static program the security tests run inside a container: each argument names one
// system call to try, and the probe prints "<name> OK" or "<name> <ERRNO>" for it. A shell
// cannot make most of these calls, and busybox's applets would hide the errno in a message.
//
//   probe mount keyctl unshare-user ...      one line per argument
//   probe x32-getpid | i386-getpid           made from a foreign ABI: the filter kills us
//   probe swap-loop A B                      (on the host) exchange A and B until killed,
//                                            to race the resolution of a volume target
//
// Built with `gcc -static -O2 -o probe probe.c` by test/security.test.ts.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// Runs clone without libc's wrapper, so the flags reach the kernel as given; the child
// exits at once.
static long raw_clone(unsigned long flags) {
  long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid((pid_t)pid, NULL, 0);
  return pid;
}

static long try_call(const char* what) {
  if (!strcmp(what, "mount")) return mount("none", "/tmp", "tmpfs", 0, NULL);
  if (!strcmp(what, "umount")) return umount2("/proc", MNT_DETACH);
  if (!strcmp(what, "fsopen")) return syscall(SYS_fsopen, "tmpfs", 0);
  if (!strcmp(what, "open_tree")) return syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */);
  if (!strcmp(what, "pivot_root")) return syscall(SYS_pivot_root, ".", ".");
  if (!strcmp(what, "keyctl")) return syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
  if (!strcmp(what, "add_key")) return syscall(SYS_add_key, "user", "nsbox", "x", 1, KEY_SPEC_PROCESS_KEYRING);
  if (!strcmp(what, "unshare-user")) return unshare(CLONE_NEWUSER);
  if (!strcmp(what, "unshare-ns")) return unshare(CLONE_NEWNS);
  if (!strcmp(what, "unshare-files")) return unshare(CLONE_FILES);
  if (!strcmp(what, "clone")) return raw_clone(0);
  if (!strcmp(what, "clone-newuser")) return raw_clone(CLONE_NEWUSER);
  if (!strcmp(what, "clone-newpid")) return raw_clone(CLONE_NEWPID);
  if (!strcmp(what, "clone3")) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    return pid;
  }
  if (!strcmp(what, "fork")) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0);
    return pid;
  }
  if (!strcmp(what, "setns")) {
    int fd = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    return setns(fd, 0);
  }
  if (!strcmp(what, "kexec_load")) return syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0UL);
  if (!strcmp(what, "finit_module")) return syscall(SYS_finit_module, -1, "", 0);
  if (!strcmp(what, "delete_module")) return syscall(SYS_delete_module, "nsbox_none", O_NONBLOCK);
  if (!strcmp(what, "bpf")) return syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, NULL, 0);
  if (!strcmp(what, "perf_event_open")) return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
  if (!strcmp(what, "userfaultfd")) return syscall(SYS_userfaultfd, O_CLOEXEC);
  if (!strcmp(what, "ptrace")) return ptrace(PTRACE_TRACEME, 0, NULL, NULL);
  if (!strcmp(what, "process_vm_readv")) {
    char src[4] = "abc", dst[4];
    struct iovec l = {dst, sizeof dst}, r = {src, sizeof src};
    return process_vm_readv(getpid(), &l, 1, &r, 1, 0);
  }
  if (!strcmp(what, "personality-query")) return personality(0xffffffff);
  if (!strcmp(what, "personality-norandom")) return personality(ADDR_NO_RANDOMIZE);
  if (!strcmp(what, "reboot")) return reboot(RB_DISABLE_CAD);
  if (!strcmp(what, "clock_settime")) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return clock_settime(CLOCK_REALTIME, &now);
  }
  if (!strcmp(what, "acct")) return acct(NULL);
  if (!strcmp(what, "iopl")) return syscall(SYS_iopl, 3);
  if (!strcmp(what, "open_by_handle_at")) return syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, 0);
  if (!strcmp(what, "io_uring_setup")) return syscall(SYS_io_uring_setup, 1, NULL);
  if (!strcmp(what, "tiocsti")) return ioctl(0, TIOCSTI, "x");
  // The request is an unsigned int: high bits must not sneak past the filter's comparison.
  if (!strcmp(what, "tiocsti-high")) return syscall(SYS_ioctl, 0, (1UL << 32) | TIOCSTI, "x");
  if (!strcmp(what, "tioclinux")) {
    char sub = 6; /* TIOCL_GETSHIFTSTATE */
    return ioctl(0, TIOCLINUX, &sub);
  }
  if (!strcmp(what, "tiocgwinsz")) {
    struct winsize ws;
    return ioctl(0, TIOCGWINSZ, &ws);
  }
  if (!strcmp(what, "nosys")) return syscall(-1L);
  if (!strcmp(what, "x32-getpid")) return syscall(0x40000000L | SYS_getpid);
#if defined(__x86_64__)
  if (!strcmp(what, "i386-getpid")) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L /* getpid on i386 */) : "memory");
    if (ret < 0) {
      errno = (int)-ret;
      return -1;
    }
    return ret;
  }
#endif
  errno = EINVAL;
  fprintf(stderr, "probe: %s: unknown call\n", what);
  return -2;
}

int main(int argc, char** argv) {
  if (argc == 4 && !strcmp(argv[1], "swap-loop")) {
    // RENAME_EXCHANGE swaps both names in one step: at every instant each name exists,
    // one as the directory and the other as the symlink.
    for (;;) {
      if (syscall(SYS_renameat2, AT_FDCWD, argv[2], AT_FDCWD, argv[3], 2 /* RENAME_EXCHANGE */) < 0) {
        perror("probe: renameat2");
        return 1;
      }
    }
  }
  int status = 0;
  for (int i = 1; i < argc; i++) {
    errno = 0;
    long r = try_call(argv[i]);
    if (r == -2) {
      status = 2;
      continue;
    }
    if (r < 0) {
      const char* name = strerrorname_np(errno);
      printf("%s %s\n", argv[i], name ? name : "E?");
    } else {
      printf("%s OK\n", argv[i]);
    }
    fflush(stdout);
  }
  return status;
}
