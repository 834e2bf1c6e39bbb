// nsbox-monitor: the supervisor of a detached container (`run -d`, `detach: true`). The same
// static program as nsbox-init (no C library, exec'd from the same sealed memfd), entered with
// "monitor" as its first argument, so a detached container costs a few pages instead of a
// Node process.
//
// spawn_detached() (src-cc/core/spawn.cc) makes this process a grandchild of Node in a session
// of its own, clones the container from it (so the container's nsbox-init dies with it through
// PR_SET_PDEATHSIG: a container never outlives its supervisor), then execs this program with:
//   monitor report=FD pidfd=FD pid=N status=FD ack=FD out=FD err=FD dir=FD
//           [logsize=BYTES] [logfiles=N] [oom=PATH] [cgroup=DIR]...
//           [timeout=MS] [cputime=NS (cpuacct=PATH | cpustat=PATH)]
// It
//   1. relays the container's first report (started or failed) to Node on `status`, then
//      waits for one byte on `ack`: Node has written the record that names this monitor as
//      the container's supervisor. EOF instead (Node died or failed first): the container is
//      killed, so no container runs that no record accounts for,
//   2. passes SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 on to nsbox-init (which
//      passes them to the command),
//   3. writes the container's stdout and stderr to `container.log` in `dir`, one record a line
//      in the CRI format (`TIME STREAM F|P TEXT`; P: a part of a line, the rest follows),
//      rotated to container.log.1... at `logsize`, keeping `logfiles` files in all,
//   4. kills the whole container (SIGKILL to nsbox-init: its pid namespace goes with it) once
//      `timeout` ms have passed since it started, or once its cgroup has used `cputime` ns of
//      CPU (v1 cpuacct.usage, or v2 cpu.stat's usage_usec, read every 50 ms), as a run in Node
//      does; exit.json then says why (timedOut, cpuTimeExceeded),
//   5. when the container has ended: removes its cgroup directories, then writes `exit.json`
//      (tmp + rename) with its status, usage and finish time, and exits.

#include <linux/fcntl.h>
#include <linux/poll.h>
#include <linux/prctl.h>
#include <linux/resource.h>
#include <linux/signal.h>
#include <linux/signalfd.h>
#include <linux/time.h>
#include <linux/uio.h>
#include <linux/wait.h>

#include "common/detach.h"
#include "init/monitor.h"
#include "init/sys.h"

namespace nsbox::init {
namespace {

constexpr int kMaxCgroups = 16;
constexpr size_t kMaxRecord = 16 * 1024;  // longer lines are split into P records
constexpr const char* kLog = "container.log";

struct Options {
  int report = -1, pidfd = -1, status = -1, ack = -1, out = -1, err = -1, dir = -1;
  int pid = 0;
  uint64_t log_max = 10 * 1024 * 1024;
  int log_files = 2;
  const char* oom = nullptr;
  uint64_t timeout_ms = 0;  // 0: none
  uint64_t cputime_ns = 0;  // 0: none
  const char* cpu_file = nullptr;
  bool cpu_v2 = false;  // cpu_file is v2's cpu.stat (usage_usec), else v1's cpuacct.usage (ns)
  const char* cgroups[kMaxCgroups];
  int cgroup_count = 0;
};

bool number(const char* s, uint64_t* out) {
  if (!*s) return false;
  uint64_t n = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || n > (~0ull - 9) / 10) return false;
    n = n * 10 + static_cast<uint64_t>(*s - '0');
  }
  *out = n;
  return true;
}

bool parse(int argc, char** argv, Options& o) {
  for (int i = 2; i < argc; i++) {
    const char* a = argv[i];
    const char* v;
    uint64_t n = 0;
    auto fd = [&](const char* key, int* slot) {
      if (!starts_with(a, key, &v)) return false;
      if (!number(v, &n) || n > 1u << 30) return false;
      *slot = static_cast<int>(n);
      return true;
    };
    if (fd("report=", &o.report) || fd("pidfd=", &o.pidfd) || fd("pid=", &o.pid) || fd("status=", &o.status) || fd("ack=", &o.ack) ||
        fd("out=", &o.out) || fd("err=", &o.err) || fd("dir=", &o.dir) || fd("logfiles=", &o.log_files)) {
      continue;
    }
    if (starts_with(a, "logsize=", &v)) {
      if (!number(v, &o.log_max)) return false;
    } else if (starts_with(a, "oom=", &v)) {
      o.oom = v;
    } else if (starts_with(a, "timeout=", &v)) {
      if (!number(v, &o.timeout_ms) || o.timeout_ms == 0) return false;
    } else if (starts_with(a, "cputime=", &v)) {
      if (!number(v, &o.cputime_ns) || o.cputime_ns == 0) return false;
    } else if (starts_with(a, "cpuacct=", &v)) {
      o.cpu_file = v;
      o.cpu_v2 = false;
    } else if (starts_with(a, "cpustat=", &v)) {
      o.cpu_file = v;
      o.cpu_v2 = true;
    } else if (starts_with(a, "cgroup=", &v)) {
      if (o.cgroup_count == kMaxCgroups) return false;
      o.cgroups[o.cgroup_count++] = v;
    } else {
      return false;
    }
  }
  return o.report >= 0 && o.pidfd >= 0 && o.pid > 0 && o.status >= 0 && o.ack >= 0 && o.dir >= 0 && o.log_files >= 1 && o.log_max >= 1 &&
         (o.cputime_ns == 0 || o.cpu_file != nullptr);
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

long read_retry(int fd, void* buf, size_t n) {
  long r;
  do r = sys(__NR_read, fd, buf, n);
  while (r == -EINTR);
  return r;
}

// Decimal digits of n into buf (no terminator); returns how many.
size_t digits(char* buf, uint64_t n, int width = 0) {
  char tmp[24];
  int len = 0;
  do tmp[len++] = static_cast<char>('0' + n % 10), n /= 10;
  while (n);
  while (len < width) tmp[len++] = '0';
  for (int i = 0; i < len; i++) buf[i] = tmp[len - 1 - i];
  return static_cast<size_t>(len);
}

// The time now as RFC 3339 in UTC with nanoseconds, 30 characters: 2026-12-01T06:00:00.123456789Z.
size_t timestamp(char* buf) {
  struct timespec ts = {0, 0};
  sys(__NR_clock_gettime, CLOCK_REALTIME, &ts);
  int64_t secs = ts.tv_sec;
  int64_t days = secs / 86400, rem = secs % 86400;
  // Days since 1970-01-01 to a civil date, counting in 400-year eras from 0000-03-01.
  int64_t z = days + 719468;
  int64_t era = z / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t day = doy - (153 * mp + 2) / 5 + 1;
  int64_t month = mp < 10 ? mp + 3 : mp - 9;
  int64_t year = yoe + era * 400 + (month <= 2);
  char* p = buf;
  p += digits(p, static_cast<uint64_t>(year), 4);
  *p++ = '-';
  p += digits(p, static_cast<uint64_t>(month), 2);
  *p++ = '-';
  p += digits(p, static_cast<uint64_t>(day), 2);
  *p++ = 'T';
  p += digits(p, static_cast<uint64_t>(rem / 3600), 2);
  *p++ = ':';
  p += digits(p, static_cast<uint64_t>(rem / 60 % 60), 2);
  *p++ = ':';
  p += digits(p, static_cast<uint64_t>(rem % 60), 2);
  *p++ = '.';
  p += digits(p, static_cast<uint64_t>(ts.tv_nsec), 9);
  *p++ = 'Z';
  return static_cast<size_t>(p - buf);
}

// container.log and its rotated predecessors, in the container's directory (by fd: the
// directory may be renamed to a tombstone and deleted meanwhile; then nothing is written).
struct Log {
  int dir = -1;
  int fd = -1;
  uint64_t size = 0, max = 0;
  int files = 1;

  void open() {
    fd = static_cast<int>(sys(__NR_openat, dir, kLog, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600));
    long end = fd >= 0 ? sys(__NR_lseek, fd, 0, 2 /* SEEK_END */) : 0;
    size = end > 0 ? static_cast<uint64_t>(end) : 0;
  }

  // container.log.(N-1) is dropped, each older file moves up one, container.log becomes .1.
  void rotate() {
    if (fd >= 0) sys(__NR_close, fd);
    fd = -1;
    if (files == 1) {
      sys(__NR_unlinkat, dir, kLog, 0);
    } else {
      char from[32], to[32];
      for (int i = files - 1; i >= 1; i--) {
        name(from, i - 1);
        name(to, i);
        sys(__NR_renameat2, dir, from, dir, to, 0);
      }
    }
    open();
  }

  static void name(char* buf, int index) {
    size_t n = str_len(kLog);
    for (size_t i = 0; i < n; i++) buf[i] = kLog[i];
    if (index > 0) {
      buf[n++] = '.';
      n += digits(buf + n, static_cast<uint64_t>(index));
    }
    buf[n] = '\0';
  }

  void record(const char* stream, bool full, const char* text, size_t len) {
    char head[64];
    size_t h = timestamp(head);
    head[h++] = ' ';
    for (const char* s = stream; *s; s++) head[h++] = *s;
    head[h++] = ' ';
    head[h++] = full ? 'F' : 'P';
    head[h++] = ' ';
    uint64_t total = h + len + 1;
    if (fd >= 0 && size > 0 && size + total > max) rotate();
    if (fd < 0) return;
    struct iovec iov[3] = {{head, h}, {const_cast<char*>(text), len}, {const_cast<char*>("\n"), 1}};
    long w;
    do w = sys(__NR_writev, fd, iov, 3);
    while (w == -EINTR);
    if (w > 0) size += static_cast<uint64_t>(w);
  }

  // A chunk read from a stream: each complete line one F record, a rest without its newline
  // a P record (its line goes on in the next one).
  void chunk(const char* stream, const char* data, size_t n) {
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
      if (data[i] == '\n' || i - start == kMaxRecord) {
        bool full = data[i] == '\n';
        record(stream, full, data + start, i - start);
        start = full ? i + 1 : i;
      }
    }
    if (start < n) record(stream, false, data + start, n - start);
  }
};

constinit Log g_log;
char g_buf[32 * 1024];

// Drains what a stream has now; false at its end.
bool pump(int fd, const char* stream) {
  long n = read_retry(fd, g_buf, sizeof g_buf);
  if (n == -EAGAIN) return true;
  if (n <= 0) return false;
  g_log.chunk(stream, g_buf, static_cast<size_t>(n));
  return true;
}

void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  sys(__NR_nanosleep, &ts, nullptr);
}

// The container's last processes leave its cgroups a moment after its PID 1: rmdir says
// EBUSY until then (up to 3 s; what stays is left to prune).
void remove_cgroups(const Options& o) {
  for (int i = 0; i < o.cgroup_count; i++) {
    for (int attempt = 0; attempt < 600; attempt++) {
      long r = sys(__NR_unlinkat, AT_FDCWD, o.cgroups[i], AT_REMOVEDIR);
      if (r != -EBUSY) break;
      sleep_ms(5);
    }
  }
}

// memory.oom_control says "oom_kill N": N > 0 means the OOM killer ended a process.
bool oom_killed(const char* file) {
  if (!file) return false;
  int fd = static_cast<int>(sys(__NR_openat, AT_FDCWD, file, O_RDONLY | O_CLOEXEC, 0));
  if (fd < 0) return false;
  char text[512];
  long n = read_retry(fd, text, sizeof text - 1);
  sys(__NR_close, fd);
  if (n <= 0) return false;
  text[n] = '\0';
  for (long i = 0; i < n; i++) {
    const char* rest;
    if ((i == 0 || text[i - 1] == '\n') && starts_with(text + i, "oom_kill ", &rest)) return *rest >= '1' && *rest <= '9';
  }
  return false;
}

int64_t monotonic_ms() {
  struct timespec ts = {0, 0};
  sys(__NR_clock_gettime, CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// The decimal number at `p` (stops at the first non-digit).
uint64_t leading_number(const char* p) {
  uint64_t n = 0;
  for (; *p >= '0' && *p <= '9'; p++) n = n * 10 + static_cast<uint64_t>(*p - '0');
  return n;
}

// CPU time the container's cgroup has used, in ns; 0 when the file cannot be read (gone).
uint64_t cpu_used_ns(const Options& o) {
  int fd = static_cast<int>(sys(__NR_openat, AT_FDCWD, o.cpu_file, O_RDONLY | O_CLOEXEC, 0));
  if (fd < 0) return 0;
  char text[1024];
  long n = read_retry(fd, text, sizeof text - 1);
  sys(__NR_close, fd);
  if (n <= 0) return 0;
  text[n] = '\0';
  if (!o.cpu_v2) return leading_number(text);
  for (long i = 0; i < n; i++) {
    const char* rest;
    if ((i == 0 || text[i - 1] == '\n') && starts_with(text + i, "usage_usec ", &rest)) return leading_number(rest) * 1000;
  }
  return 0;
}

enum class KilledFor { kNone, kTimeout, kCpuTime };

struct Text {
  char buf[512];
  size_t n = 0;
  Text& s(const char* t) {
    while (*t && n < sizeof buf) buf[n++] = *t++;
    return *this;
  }
  Text& i(int64_t v) {
    if (v < 0) s("-"), v = -v;
    if (n + 24 < sizeof buf) n += digits(buf + n, static_cast<uint64_t>(v));
    return *this;
  }
};

// exit.json, whole or not at all: written beside and renamed.
void write_exit(const Options& o, int exit_code, int signal, const Report& usage, bool oom, KilledFor killed_for) {
  Text t;
  t.s("{\"exitCode\":");
  if (signal) t.s("null,\"signal\":").i(signal);
  else t.i(exit_code).s(",\"signal\":null");
  char now[40];
  now[timestamp(now)] = '\0';
  t.s(",\"finishedAt\":\"").s(now).s("\",\"userUs\":").i(usage.user_us).s(",\"systemUs\":").i(usage.system_us);
  t.s(",\"maxRssKiB\":").i(usage.max_rss_kib).s(",\"oomKilled\":").s(oom ? "true" : "false");
  t.s(",\"timedOut\":").s(killed_for == KilledFor::kTimeout ? "true" : "false");
  t.s(",\"cpuTimeExceeded\":").s(killed_for == KilledFor::kCpuTime ? "true" : "false").s("}\n");
  int fd = static_cast<int>(sys(__NR_openat, o.dir, "exit.json.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (fd < 0) return;
  write_all(fd, t.buf, t.n);
  sys(__NR_close, fd);
  sys(__NR_renameat2, o.dir, "exit.json.tmp", o.dir, "exit.json", 0);
}

int wait_status_of(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return (info.si_status & 0xff) << 8;
  return info.si_status & 0x7f;
}

[[noreturn]] void relay_failure(const Options& o, DetachStart& start, long n) {
  siginfo_t info = {};
  if (n == static_cast<long>(sizeof start.report)) sys(__NR_pidfd_send_signal, o.pidfd, SIGKILL, nullptr, 0);
  // Reaped before Node hears of it: the cgroups it was in are free when Node removes them.
  while (sys(__NR_waitid, P_PIDFD, o.pidfd, &info, WEXITED, nullptr) == -EINTR) {
  }
  if (n != static_cast<long>(sizeof start.report)) {
    start.report.kind = 0;
    start.vanished = wait_status_of(info);
  }
  write_all(o.status, &start, sizeof start);
  // Node reads on to EOF: this exit is what closes the pipe, so when Node returns the monitor
  // is gone too.
  exit_now(125);
}

}  // namespace

[[noreturn]] void monitor_main(int argc, char** argv) {
  sys(__NR_prctl, PR_SET_NAME, "nsbox-monitor", 0, 0, 0);
  Options o;
  if (!parse(argc, argv, o)) exit_now(125);
  // Every signal blocked: the ones passed on are read from a signalfd; the others (SIGPIPE,
  // SIGALRM, ...) must not end the supervisor. One that came before this point is pending
  // (the mask was inherited blocked) and read below.
  uint64_t all = ~0ull;
  sys(__NR_rt_sigprocmask, SIG_SETMASK, &all, nullptr, sizeof all);
  uint64_t passed = 0;
  const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  for (int s : forwarded) passed |= 1ull << (s - 1);
  int sigfd = static_cast<int>(sys(__NR_signalfd4, -1, &passed, sizeof passed, O_CLOEXEC | O_NONBLOCK));

  DetachStart start = {};
  // The container's time runs from its start, as it does in Node: the ack below waits on Node.
  const int64_t deadline = o.timeout_ms ? monotonic_ms() + static_cast<int64_t>(o.timeout_ms) : 0;
  start.monitor_pid = static_cast<int32_t>(sys(__NR_getpid));
  start.container_pid = o.pid;
  long n = read_retry(o.report, &start.report, sizeof start.report);
  if (n != static_cast<long>(sizeof start.report) || start.report.kind != static_cast<int32_t>(ReportKind::kStarted)) {
    relay_failure(o, start, n);
  }
  write_all(o.status, &start, sizeof start);
  sys(__NR_close, o.status);
  char byte = 0;
  if (read_retry(o.ack, &byte, 1) != 1) sys(__NR_pidfd_send_signal, o.pidfd, SIGKILL, nullptr, 0);
  sys(__NR_close, o.ack);

  g_log.dir = o.dir;
  g_log.max = o.log_max;
  g_log.files = o.log_files;
  g_log.open();

  Report done = {};
  bool reported = false, exited = false;
  siginfo_t info = {};
  int timeouts = 0;
  KilledFor killed_for = KilledFor::kNone;
  for (;;) {
    struct pollfd p[5] = {{sigfd, POLLIN, 0}, {exited ? -1 : o.pidfd, POLLIN, 0}, {o.out, POLLIN, 0}, {o.err, POLLIN, 0}, {o.report, POLLIN, 0}};
    if (exited && o.out < 0 && o.err < 0) break;
    // Once PID 1 is gone the kernel kills the rest, whose exit closes the pipes: wait for
    // that a bounded time (a process stuck in the kernel must not keep the monitor forever).
    struct timespec tick = {1, 0};
    struct timespec* wait = exited ? &tick : nullptr;
    const bool bounded = !exited && killed_for == KilledFor::kNone && (o.timeout_ms || o.cputime_ns);
    if (bounded) {
      int64_t ms = o.cputime_ns ? 50 : (int64_t{1} << 40);
      if (o.timeout_ms) {
        int64_t left = deadline - monotonic_ms();
        if (left < ms) ms = left < 0 ? 0 : left;
      }
      tick = {static_cast<long>(ms / 1000), static_cast<long>((ms % 1000) * 1000000)};
      wait = &tick;
    }
    long r = sys(__NR_ppoll, p, 5, wait, nullptr, 0);
    if (bounded) {
      if (o.timeout_ms && monotonic_ms() >= deadline) killed_for = KilledFor::kTimeout;
      else if (o.cputime_ns && cpu_used_ns(o) > o.cputime_ns) killed_for = KilledFor::kCpuTime;
      if (killed_for != KilledFor::kNone) sys(__NR_pidfd_send_signal, o.pidfd, SIGKILL, nullptr, 0);
    }
    if (r == -EINTR) continue;
    if (r == 0 && !exited) continue;
    if (r == 0 && exited && ++timeouts >= 3) break;
    if (p[0].revents & POLLIN) {
      signalfd_siginfo si;
      while (read_retry(sigfd, &si, sizeof si) == static_cast<long>(sizeof si)) {
        if (!exited) sys(__NR_pidfd_send_signal, o.pidfd, si.ssi_signo, nullptr, 0);
      }
    }
    if (p[2].revents && !pump(o.out, "stdout")) sys(__NR_close, o.out), o.out = -1;
    if (p[3].revents && !pump(o.err, "stderr")) sys(__NR_close, o.err), o.err = -1;
    if (p[4].revents) {
      Report rec;
      long got = read_retry(o.report, &rec, sizeof rec);
      if (got == static_cast<long>(sizeof rec) && rec.kind == static_cast<int32_t>(ReportKind::kExited)) {
        done = rec;
        reported = true;
      } else if (got <= 0) {
        sys(__NR_close, o.report);
        o.report = -1;
      }
    }
    if (p[1].revents & POLLIN) {
      long w;
      do w = sys(__NR_waitid, P_PIDFD, o.pidfd, &info, WEXITED | WNOHANG, nullptr);
      while (w == -EINTR);
      if (w == 0 && info.si_pid != 0) exited = true;
    }
  }
  // nsbox-init writes its record before it exits: what it wrote is in the pipe now.
  if (!reported && o.report >= 0) {
    Report rec;
    if (read_retry(o.report, &rec, sizeof rec) == static_cast<long>(sizeof rec) && rec.kind == static_cast<int32_t>(ReportKind::kExited)) {
      done = rec;
      reported = true;
    }
  }
  // The command's status as init reported it; without a report (init was killed), init's own.
  int status = reported ? done.status : wait_status_of(info);
  bool oom = oom_killed(o.oom);
  remove_cgroups(o);
  int code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 0;
  int sig = status & 0x7f;
  write_exit(o, code, sig, done, oom, killed_for);
  exit_now(sig ? 128 + sig : code);
}

}  // namespace nsbox::init
