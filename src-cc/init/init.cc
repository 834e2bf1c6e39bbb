// nsbox-init: the first program a container runs, and its PID 1.
//
// The supervisor's setup child (src-cc/core/child.cc) mounts the container's root, then
// execs this program from a sealed memfd (never by a path in the image). It:
//   1. confines itself (capabilities, credentials, no_new_privs, seccomp: security.cc),
//   2. arms its parent-death signal and checks that the supervisor is still alive,
//   3. forks the command, which makes itself a session leader (with the terminal, if any)
//      and execs over the candidate paths the supervisor prepared,
//   4. tells the supervisor on the report pipe: failed (with the step and errno) or started,
//   5. forwards every signal it receives to the command, reaps orphans, and when the command
//      ends reports its wait status and exits, which ends the pid namespace.
// Why a separate program: the workload must never run as PID 1 in a process that shares the
// supervisor's executable (/proc/self/exe would reach the host's node, the CVE-2019-5736
// class), and PID 1 must be a process the workload cannot reconfigure: a workload that clears
// its own PR_SET_PDEATHSIG would otherwise outlive its supervisor. The workload cannot signal
// this process (PID 1 ignores what it has no handler for, and it has none), cannot ptrace it
// (seccomp, and it is not dumpable), and cannot write its image (a sealed memfd).
//
// Built with no C library (sys.h): arguments come in argv, before "--":
//   report=FD parent=FD tty nnp bset=HEX eff=HEX amb=HEX ids=UID:GID seccomp=HEX
//   rlimit=RESOURCE:SOFT:HARD... cand=PATH... exec cwd=PATH
// (rlimit values are decimal, or "inf").
// `exec`: this init runs a command inside a container that already has its PID 1 (nsbox exec,
// src-cc/core/exec.cc): the same confinement, reports and signal forwarding, but it is not
// PID 1, so the command is tied to it by a parent-death signal instead (a SIGKILL of this
// process ends the command too). `cwd`: the command's working directory, entered without
// following /proc magic links. `nosetgroups`: the container's user namespace denies
// setgroups (rootless), so the supplementary groups are left as they are.
// then the command's argv; the command's environment is this program's environment.

#include <asm/ioctls.h>
#include <linux/close_range.h>
#include <linux/fcntl.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/poll.h>
#include <linux/prctl.h>
#include <linux/ptrace.h>
#include <linux/resource.h>
#include <linux/signal.h>
#include <linux/signalfd.h>
#include <linux/wait.h>

#include "common/report.h"
#include "init/monitor.h"
#include "init/security.h"
#include "init/sys.h"

// The compiler may turn loops and struct copies into these calls.
extern "C" void* memset(void* dst, int c, size_t n) {
  unsigned char* d = static_cast<unsigned char*>(dst);
  while (n--) *d++ = static_cast<unsigned char>(c);
  return dst;
}
extern "C" void* memcpy(void* dst, const void* src, size_t n) {
  unsigned char* d = static_cast<unsigned char*>(dst);
  const unsigned char* s = static_cast<const unsigned char*>(src);
  while (n--) *d++ = *s++;
  return dst;
}

namespace nsbox::init {
namespace {

constexpr int kMaxCandidates = 1024;
constexpr int kMaxRlimits = 16;  // RLIM_NLIMITS

struct Rlimit {
  uint32_t resource;
  uint64_t soft, hard;
};
constexpr int kMaxFilter = 4096;  // BPF_MAXINSNS

struct Config {
  int report = -1;
  int parent = -1;
  bool tty = false;
  bool exec = false;
  const char* cwd = nullptr;
  SecurityConfig security;
  const char* candidates[kMaxCandidates] = {};
  int candidate_count = 0;
  Rlimit rlimits[kMaxRlimits] = {};
  int rlimit_count = 0;
  char** argv = nullptr;
  char** envp = nullptr;
  // The whole argument area (argv[1] to the end of the last argument), wiped once the command
  // has its own copy: ps in the container (and on the host) then shows only "nsbox-init".
  char* args_begin = nullptr;
  char* args_end = nullptr;
};

sock_filter g_filter[kMaxFilter];
// Initialised at compile time: there is no C runtime here to run constructors.
constinit Config g_config;

bool parse_uint(const char* s, unsigned base, uint64_t* out, char stop = '\0') {
  uint64_t v = 0;
  if (*s == stop) return false;
  for (; *s != stop; s++) {
    unsigned d;
    if (*s >= '0' && *s <= '9') d = static_cast<unsigned>(*s - '0');
    else if (base == 16 && *s >= 'a' && *s <= 'f') d = static_cast<unsigned>(*s - 'a' + 10);
    else return false;
    v = v * base + d;
  }
  *out = v;
  return true;
}

bool parse_filter(const char* hex, SecurityConfig& s) {
  size_t len = str_len(hex);
  if (len % 16 || len == 0 || len / 16 > kMaxFilter) return false;
  unsigned char* out = reinterpret_cast<unsigned char*>(g_filter);
  for (size_t i = 0; i < len; i += 2) {
    char pair[3] = {hex[i], hex[i + 1], '\0'};
    uint64_t b;
    if (!parse_uint(pair, 16, &b)) return false;
    out[i / 2] = static_cast<unsigned char>(b);
  }
  s.seccomp = g_filter;
  s.seccomp_len = static_cast<uint32_t>(len / 16);
  return true;
}

bool parse_option(const char* a, Config& c) {
  const char* v;
  uint64_t n;
  if (starts_with(a, "report=", &v)) {
    if (!parse_uint(v, 10, &n)) return false;
    c.report = static_cast<int>(n);
  } else if (starts_with(a, "parent=", &v)) {
    if (!parse_uint(v, 10, &n)) return false;
    c.parent = static_cast<int>(n);
  } else if (str_eq(a, "tty")) {
    c.tty = true;
  } else if (str_eq(a, "exec")) {
    c.exec = true;
  } else if (starts_with(a, "cwd=", &v)) {
    if (*v != '/') return false;
    c.cwd = v;
  } else if (str_eq(a, "nosetgroups")) {
    c.security.keep_groups = true;
  } else if (str_eq(a, "nnp")) {
    c.security.enabled = true;
    c.security.no_new_privs = true;
  } else if (starts_with(a, "bset=", &v)) {
    c.security.enabled = true;
    return parse_uint(v, 16, &c.security.bounding);
  } else if (starts_with(a, "eff=", &v)) {
    return parse_uint(v, 16, &c.security.effective);
  } else if (starts_with(a, "amb=", &v)) {
    return parse_uint(v, 16, &c.security.ambient);
  } else if (starts_with(a, "ids=", &v)) {
    uint64_t uid, gid;
    const char* colon = v;
    while (*colon && *colon != ':') colon++;
    if (*colon != ':' || !parse_uint(v, 10, &uid, ':') || !parse_uint(colon + 1, 10, &gid)) return false;
    c.security.set_ids = true;
    c.security.uid = static_cast<uint32_t>(uid);
    c.security.gid = static_cast<uint32_t>(gid);
  } else if (starts_with(a, "seccomp=", &v)) {
    return parse_filter(v, c.security);
  } else if (starts_with(a, "rlimit=", &v)) {
    if (c.rlimit_count == kMaxRlimits) return false;
    Rlimit& l = c.rlimits[c.rlimit_count++];
    uint64_t res;
    if (!parse_uint(v, 10, &res, ':')) return false;
    while (*v != ':') v++;
    v++;
    const char* hard = v;
    while (*hard && *hard != ':') hard++;
    if (*hard != ':') return false;
    hard++;
    auto limit = [](const char* text, char stop, uint64_t* out) {
      const char* rest;
      if (starts_with(text, "inf", &rest) && *rest == stop) {
        *out = ~0ull;  // RLIM64_INFINITY
        return true;
      }
      return parse_uint(text, 10, out, stop);
    };
    l.resource = static_cast<uint32_t>(res);
    if (!limit(v, ':', &l.soft) || !limit(hard, '\0', &l.hard)) return false;
  } else if (starts_with(a, "cand=", &v)) {
    if (c.candidate_count == kMaxCandidates) return false;
    c.candidates[c.candidate_count++] = v;
  } else {
    return false;
  }
  return true;
}

bool parse(int argc, char** argv, char** envp, Config& c) {
  int i = 1;
  for (; i < argc && !str_eq(argv[i], "--"); i++) {
    if (!parse_option(argv[i], c)) return false;
  }
  if (i + 1 >= argc || c.report < 0 || c.candidate_count == 0) return false;
  c.argv = argv + i + 1;
  c.envp = envp;
  c.args_begin = argv[1];
  c.args_end = argv[argc - 1] + str_len(argv[argc - 1]);
  return true;
}

void write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n) {
    long w = sys(__NR_write, fd, p, n);
    if (w == -EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void report(int fd, ReportKind kind, Sys sys_ = Sys::kNone, int err = 0, int32_t detail = 0, int32_t status = 0) {
  Report r{static_cast<int32_t>(kind), kExecPhase, static_cast<int32_t>(sys_), err, detail, status, 0, 0, 0};
  write_all(fd, &r, sizeof r);
}

[[noreturn]] void fail(int fd, Sys sys_, int err, int32_t detail = 0) {
  if (fd >= 0) report(fd, ReportKind::kFailed, sys_, err, detail);
  exit_now(125);
}

// The command's side of the fork: session, terminal, mask, fds, then execve over the
// candidates with execvp's rules (ENOENT/ENOTDIR: next; EACCES: remembered). A failure goes
// to init on `sync_fd` as a Report.
[[noreturn]] void exec_command(const Config& c, int sync_fd, long init_pid) {
  long r;
  if (c.exec) {
    // Not in a pid namespace of its own: the command dies with this init (which dies with the
    // supervisor), and one that outlived it already is not started.
    if ((r = sys(__NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) < 0) fail(sync_fd, Sys::kPrctl, static_cast<int>(-r));
    if (sys(__NR_getppid) != init_pid) exit_now(125);
  }
  if (c.cwd) {
    // A link the container planted on the way resolves inside its root (this process's root);
    // /proc magic links (another process's cwd or fds) are refused.
    struct open_how how = {};
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_NO_MAGICLINKS;
    long dir = sys(__NR_openat2, AT_FDCWD, c.cwd, &how, sizeof how);
    if (dir < 0) fail(sync_fd, Sys::kChdir, static_cast<int>(-dir));
    if ((r = sys(__NR_fchdir, dir)) < 0) fail(sync_fd, Sys::kChdir, static_cast<int>(-r));
    sys(__NR_close, dir);
  }
  if ((r = sys(__NR_setsid)) < 0) fail(sync_fd, Sys::kSetsid, static_cast<int>(-r));
  if (c.tty && (r = sys(__NR_ioctl, 0, TIOCSCTTY, 0)) < 0) fail(sync_fd, Sys::kIoctl, static_cast<int>(-r));
  sys(__NR_umask, 022);
  // Everything above stdio (the report pipe, the signalfd, anything inherited) is closed by
  // the exec: the command holds no fd of nsbox's.
  if ((r = sys(__NR_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC)) < 0) fail(sync_fd, Sys::kCloseRange, static_cast<int>(-r));
  uint64_t none = 0;
  if ((r = sys(__NR_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none)) < 0) fail(sync_fd, Sys::kSigprocmask, static_cast<int>(-r));

  int32_t eacces_at = -1;
  int last_err = ENOENT;
  for (int i = 0; i < c.candidate_count; i++) {
    r = sys(__NR_execve, c.candidates[i], c.argv, c.envp);
    last_err = static_cast<int>(-r);
    if (last_err == EACCES) {
      if (eacces_at < 0) eacces_at = i;
    } else if (last_err != ENOENT && last_err != ENOTDIR) {
      fail(sync_fd, Sys::kExecve, last_err, i);
    }
  }
  if (eacces_at >= 0) fail(sync_fd, Sys::kExecve, EACCES, eacces_at);
  fail(sync_fd, Sys::kExecve, last_err == ENOTDIR ? ENOENT : last_err, -1);
}

bool stopped(int status) { return (status & 0xff) == 0x7f; }
bool exited(int status) { return (status & 0x7f) == 0; }

// Reaps every child that has ended; true once `command` has, with its status in *status.
bool reap(int command, int* status) {
  bool done = false;
  for (;;) {
    int st = 0;
    long pid = sys(__NR_wait4, -1, &st, WNOHANG | __WALL, nullptr);
    if (pid <= 0) return done;
    if (stopped(st)) {
      // Only a process that made us its tracer (PTRACE_TRACEME, with SYS_PTRACE kept) stops
      // for us: let it go rather than leave it stopped forever.
      sys(__NR_ptrace, PTRACE_DETACH, pid, 0, 0);
      continue;
    }
    if (pid == command) {
      *status = st;
      done = true;
    }
  }
}

[[noreturn]] void run(Config& c) {
  long r;
  // Not dumpable from the first instruction on: execve made it dumpable again, and once the
  // confinement below has lowered its capabilities to the container's, a process of the
  // container (in an exec's case, one already running) could otherwise read its fds and memory.
  sys(__NR_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);
  // Exec'd through an fd, its name would be the fd's number.
  sys(__NR_prctl, PR_SET_NAME, "nsbox-init", 0, 0, 0);
  // Every signal is read from a signalfd: PID 1 gets only the signals it handles, and a
  // blocked signal counts as handled, so the supervisor's SIGTERM arrives here and is passed
  // on. SIGKILL and SIGSTOP cannot be blocked: from outside they end or stop init itself.
  uint64_t all = ~0ull;
  if ((r = sys(__NR_rt_sigprocmask, SIG_SETMASK, &all, nullptr, sizeof all)) < 0) fail(c.report, Sys::kSigprocmask, static_cast<int>(-r));
  int sigfd = static_cast<int>(sys(__NR_signalfd4, -1, &all, sizeof all, O_CLOEXEC));
  if (sigfd < 0) fail(c.report, Sys::kSignalfd, -sigfd);

  // Resource limits first: raising a hard limit needs CAP_SYS_RESOURCE, which the
  // confinement below takes away.
  for (int i = 0; i < c.rlimit_count; i++) {
    struct {
      uint64_t cur, max;
    } lim = {c.rlimits[i].soft, c.rlimits[i].hard};
    if ((r = sys(__NR_prlimit64, 0, c.rlimits[i].resource, &lim, nullptr)) < 0) fail(c.report, Sys::kSetrlimit, static_cast<int>(-r), i);
  }
  if (c.security.enabled) {
    SecurityFailure f = apply_security(c.security);
    if (f.sys != Sys::kNone) fail(c.report, f.sys, f.err);
  }
  // After the credentials changed (which clears it): die with the supervisor's thread.
  if ((r = sys(__NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) < 0) fail(c.report, Sys::kPrctl, static_cast<int>(-r));
  if ((r = sys(__NR_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0)) < 0) fail(c.report, Sys::kPrctl, static_cast<int>(-r));
  if (c.parent >= 0) {
    // The supervisor may have died before the signal was armed: its pidfd says so.
    struct pollfd p = {c.parent, POLLIN, 0};
    struct {
      long sec, nsec;
    } zero = {0, 0};
    if (sys(__NR_ppoll, &p, 1, &zero, nullptr, 0) != 0) exit_now(125);
    sys(__NR_close, c.parent);
  }

  // sync: the command's exec result (EOF: exec'd) to init. go: init to the command, once
  // init's arguments are wiped, so that no process of the container ever reads them.
  int sync[2], go[2];
  if ((r = sys(__NR_pipe2, sync, O_CLOEXEC)) < 0) fail(c.report, Sys::kPipe, static_cast<int>(-r));
  if ((r = sys(__NR_pipe2, go, O_CLOEXEC)) < 0) fail(c.report, Sys::kPipe, static_cast<int>(-r));
  const long self = sys(__NR_getpid);
  long command = sys(__NR_clone, SIGCHLD, 0, 0, 0, 0);
  if (command < 0) fail(c.report, Sys::kClone, static_cast<int>(-command));
  if (command == 0) {
    sys(__NR_close, sync[0]);
    sys(__NR_close, go[1]);
    char byte;
    while (sys(__NR_read, go[0], &byte, 1) == -EINTR) {
    }
    exec_command(c, sync[1], self);
  }
  sys(__NR_close, sync[1]);
  sys(__NR_close, go[0]);
  for (char* p = c.args_begin; p < c.args_end; p++) *p = '\0';
  sys(__NR_close, go[1]);  // EOF: go
  Report rec;
  long n;
  do n = sys(__NR_read, sync[0], &rec, sizeof rec);
  while (n == -EINTR);
  sys(__NR_close, sync[0]);
  if (n == static_cast<long>(sizeof rec)) {
    write_all(c.report, &rec, sizeof rec);
    exit_now(rec.sys == static_cast<int32_t>(Sys::kExecve) && (rec.err == ENOENT) ? 127 : 126);
  }
  report(c.report, ReportKind::kStarted);
  // The command's stdio is the command's: a pipe ends when it (and its children) close it.
  for (int fd = 0; fd < 3; fd++) sys(__NR_close, fd);

  for (;;) {
    signalfd_siginfo si;
    n = sys(__NR_read, sigfd, &si, sizeof si);
    if (n != static_cast<long>(sizeof si)) continue;
    int status = 0;
    if (si.ssi_signo == SIGCHLD) {
      if (!reap(static_cast<int>(command), &status)) continue;
      Report done{static_cast<int32_t>(ReportKind::kExited), kExecPhase, 0, 0, 0, status, 0, 0, 0};
      struct rusage ru = {};
      if (sys(__NR_getrusage, RUSAGE_CHILDREN, &ru) == 0) {
        done.user_us = ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec;
        done.system_us = ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
        done.max_rss_kib = ru.ru_maxrss;
      }
      write_all(c.report, &done, sizeof done);
      exit_now(exited(status) ? (status >> 8) & 0xff : 128 + (status & 0x7f));
    }
    sys(__NR_kill, command, si.ssi_signo);
  }
}

}  // namespace
}  // namespace nsbox::init

extern "C" [[noreturn]] void nsbox_init_main(long* sp) {
  using namespace nsbox::init;
  int argc = static_cast<int>(sp[0]);
  char** argv = reinterpret_cast<char**>(sp + 1);
  char** envp = argv + argc + 1;
  // The same program supervises detached containers (monitor.cc).
  if (argc > 1 && str_eq(argv[1], "monitor")) monitor_main(argc, argv);
  if (!parse(argc, argv, envp, g_config)) fail(g_config.report, nsbox::Sys::kConfig, EINVAL);
  run(g_config);
}

// The entry point: the kernel leaves argc, argv and envp on the stack.
#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".global _start\n"
    "_start:\n"
    "  xor %rbp, %rbp\n"
    "  mov %rsp, %rdi\n"
    "  and $-16, %rsp\n"
    "  call nsbox_init_main\n"
    "  hlt\n");
#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".global _start\n"
    "_start:\n"
    "  mov x29, #0\n"
    "  mov x30, #0\n"
    "  mov x0, sp\n"
    "  and x1, x0, #-16\n"
    "  mov sp, x1\n"
    "  bl nsbox_init_main\n"
    "  brk #0\n");
#endif
