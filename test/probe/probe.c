// A tiny static program the security tests run inside a container: each argument names one
// system call to try, and the probe prints "<name> OK" or "<name> <ERRNO>" for it. A shell
// cannot make most of these calls, and busybox's applets would hide the errno in a message.
//
//   probe mount keyctl unshare-user ...      one line per argument
//   probe x32-getpid | i386-getpid           made from a foreign ABI: the filter kills us
//   probe nr-468                             syscall 468 with arguments -1, 0, 0, ...
//   probe uevent-recv                        waits up to 5 s for one device event (the
//                                            test makes the host send some meanwhile)
//   probe swap-loop A B                      (on the host) exchange A and B until killed,
//                                            to race the resolution of a volume target
//
// Built with `gcc -static -O2 -o probe probe.c` by test/security.test.ts.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <linux/mempolicy.h>
#include <linux/netlink.h>
#include <linux/sched.h>
#include <linux/vm_sockets.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

// Binds a vsock port any peer of the VM (the host, other guests' services) could reach,
// and listens on it: what a container must not do, whatever its network namespace.
static long vsock_listen(void) {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_vm addr;
  memset(&addr, 0, sizeof addr);
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = VMADDR_PORT_ANY;
  if (bind(fd, (struct sockaddr*)&addr, sizeof addr) < 0 || listen(fd, 1) < 0) return -1;
  return 0;
}

// A socket subscribed to the kernel's device events (what udev listens to).
static int uevent_socket(void) {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  if (fd < 0) return -1;
  struct sockaddr_nl addr;
  memset(&addr, 0, sizeof addr);
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = 1; // the kernel's group
  if (bind(fd, (struct sockaddr*)&addr, sizeof addr) < 0) return -1;
  return fd;
}

static long uevent_recv(void) {
  int fd = uevent_socket();
  if (fd < 0) return -1;
  struct timeval timeout = {5, 0};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) < 0) return -1;
  char buf[4096];
  return recv(fd, buf, sizeof buf, 0); // EAGAIN: nothing came
}

// One page of our own, touched so that it has a NUMA node.
static void* own_page(void) {
  void* p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED) memset(p, 1, 4096);
  return p;
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
  if (!strcmp(what, "vsock-listen")) return vsock_listen();
  if (!strcmp(what, "uevent-socket")) return uevent_socket();
  if (!strcmp(what, "uevent-recv")) return uevent_recv();
  if (!strcmp(what, "pidfd-getfd")) {
    long pidfd = syscall(SYS_pidfd_open, getpid(), 0);
    if (pidfd < 0) return -1;
    return syscall(SYS_pidfd_getfd, pidfd, 1, 0);
  }
  if (!strcmp(what, "process-madvise")) {
    long pidfd = syscall(SYS_pidfd_open, getpid(), 0);
    void* page = own_page();
    if (pidfd < 0 || page == MAP_FAILED) return -1;
    struct iovec iov = {page, 4096};
    return syscall(SYS_process_madvise, pidfd, &iov, 1, MADV_COLD, 0);
  }
  // FAN_REPORT_FID: the kind of group the kernel grants a process without caps.
  if (!strcmp(what, "fanotify")) return fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_FID | FAN_CLOEXEC, O_RDONLY);
  if (!strcmp(what, "mbind")) {
    void* page = own_page();
    if (page == MAP_FAILED) return -1;
    return syscall(SYS_mbind, page, 4096, MPOL_DEFAULT, NULL, 0, 0);
  }
  if (!strcmp(what, "set_mempolicy")) return syscall(SYS_set_mempolicy, MPOL_DEFAULT, NULL, 0);
  if (!strcmp(what, "get_mempolicy")) {
    int mode;
    return syscall(SYS_get_mempolicy, &mode, NULL, 0, NULL, 0);
  }
  if (!strcmp(what, "move_pages")) {
    // Without target nodes: only asks where the page is.
    void* page = own_page();
    int status = 0;
    if (page == MAP_FAILED) return -1;
    return syscall(SYS_move_pages, 0, 1, &page, NULL, &status, 0);
  }
  if (!strcmp(what, "migrate_pages")) {
    unsigned long nodes = 1; // node 0 to node 0: nothing moves
    return syscall(SYS_migrate_pages, 0, 8 * sizeof nodes, &nodes, &nodes);
  }
  if (!strcmp(what, "syslog")) return syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
  if (!strcmp(what, "vhangup")) return syscall(SYS_vhangup);
  if (!strcmp(what, "chroot")) return chroot("/");
#if defined(SYS_ustat)
  if (!strcmp(what, "ustat")) {
    struct stat st;
    char buf[64]; // struct ustat, which glibc no longer declares
    if (stat("/", &st) < 0) return -1;
    return syscall(SYS_ustat, (unsigned)st.st_dev, buf);
  }
#endif
  if (!strcmp(what, "nosys")) return syscall(-1L);
  if (!strncmp(what, "nr-", 3)) return syscall(strtol(what + 3, NULL, 10), -1L, 0L, 0L, 0L, 0L, 0L);
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
