// Capabilities, credentials, no_new_privs and seccomp, applied by nsbox-init to itself (and so
// inherited by the command it forks). nsbox-init has no C library: every call is a raw system
// call (sys.h), which also means no per-thread broadcast of credential changes is needed.
//
// The order matters:
//   1. no_new_privs      first, so nothing below can be undone by a setuid binary later.
//   2. bounding set      PR_CAPBSET_DROP needs CAP_SETPCAP in the effective set: we are
//                        still the host's root here, with every capability we started with.
//   3. ambient cleared   the host process's ambient set must not leak in.
//   4. ids               setgroups, then setresgid (needs CAP_SETGID), then setresuid
//                        (needs CAP_SETUID, and drops the effective set when the uid leaves
//                        0: PR_SET_KEEPCAPS keeps the permitted set so that 5 can choose).
//   5. capset            permitted = effective = what the plan keeps; inheritable only what
//                        is raised into the ambient set (a non-root user's added caps).
//   6. seccomp           last: the filter never needs to let our own set-up through. init
//                        then runs under it like the command: the denylist leaves it what
//                        it uses (fork, wait4, signalfd, kill, read, write, execve).
// execve itself then computes the final sets: for uid 0 the new permitted set is the bounding
// set, for any other uid it is the ambient set (no file capabilities: no_new_privs, and a
// container image is not trusted to carry them).

#include "init/security.h"

#include <linux/capability.h>
#include <linux/prctl.h>
#include <linux/seccomp.h>

#include "init/sys.h"

namespace nsbox::init {
namespace {

constexpr int kCapSysAdmin = 21;  // CAP_SYS_ADMIN

bool has(uint64_t set, int cap) { return (set >> cap) & 1u; }

SecurityFailure ok() { return {Sys::kNone, 0}; }
SecurityFailure failed(Sys sys, long ret) { return {sys, static_cast<int>(-ret)}; }

long sys_prctl(int op, unsigned long a, unsigned long b = 0) { return sys(__NR_prctl, op, a, b, 0UL, 0UL); }

// The kernel's capability API speaks in two 32-bit halves (_LINUX_CAPABILITY_VERSION_3).
struct CapSets {
  uint64_t effective = 0, permitted = 0, inheritable = 0;
};

SecurityFailure get_caps(CapSets& out) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  long r = sys(__NR_capget, &hdr, data);
  if (r < 0) return failed(Sys::kCapset, r);
  auto join = [](uint32_t lo, uint32_t hi) { return lo | (static_cast<uint64_t>(hi) << 32); };
  out.effective = join(data[0].effective, data[1].effective);
  out.permitted = join(data[0].permitted, data[1].permitted);
  out.inheritable = join(data[0].inheritable, data[1].inheritable);
  return ok();
}

SecurityFailure set_caps(const CapSets& in) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  for (int i = 0; i < 2; i++) {
    data[i].effective = static_cast<uint32_t>(in.effective >> (32 * i));
    data[i].permitted = static_cast<uint32_t>(in.permitted >> (32 * i));
    data[i].inheritable = static_cast<uint32_t>(in.inheritable >> (32 * i));
  }
  long r = sys(__NR_capset, &hdr, data);
  if (r < 0) return failed(Sys::kCapset, r);
  return ok();
}

// Capabilities the running kernel knows end where PR_CAPBSET_READ says EINVAL; probing
// avoids reading /proc/sys/kernel/cap_last_cap, which would need a buffer and an open.
SecurityFailure reduce_bounding_set(uint64_t keep) {
  for (int cap = 0; cap < 64; cap++) {
    long r = sys_prctl(PR_CAPBSET_READ, static_cast<unsigned long>(cap));
    if (r < 0) {
      if (r == -EINVAL) break;
      return failed(Sys::kPrctl, r);
    }
    if (has(keep, cap)) continue;
    r = sys_prctl(PR_CAPBSET_DROP, static_cast<unsigned long>(cap));
    if (r < 0) return failed(Sys::kPrctl, r);
  }
  return ok();
}

SecurityFailure set_ids(const SecurityConfig& s) {
  // Without keepcaps, leaving uid 0 would empty the permitted set before capset can pick
  // what the ambient set needs. The flag is cleared again by execve.
  long r;
  if ((r = sys_prctl(PR_SET_KEEPCAPS, 1)) < 0) return failed(Sys::kPrctl, r);
  // The Node process's supplementary groups (docker, disk, ...) must not follow the container.
  if (!s.keep_groups && (r = sys(__NR_setgroups, 0, nullptr)) < 0) return failed(Sys::kSetgroups, r);
  if ((r = sys(__NR_setresgid, s.gid, s.gid, s.gid)) < 0) return failed(Sys::kSetresgid, r);
  if ((r = sys(__NR_setresuid, s.uid, s.uid, s.uid)) < 0) return failed(Sys::kSetresuid, r);
  return ok();
}

SecurityFailure install_seccomp(const SecurityConfig& s) {
  sock_fprog prog;
  prog.len = static_cast<unsigned short>(s.seccomp_len);
  prog.filter = const_cast<sock_filter*>(s.seccomp);
  // No TSYNC: nsbox-init has one thread.
  long r = sys(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0U, &prog);
  if (r < 0) return failed(Sys::kSeccomp, r);
  return ok();
}

}  // namespace

SecurityFailure apply_security(const SecurityConfig& s) {
  SecurityFailure f;
  long r;
  if (s.no_new_privs && (r = sys_prctl(PR_SET_NO_NEW_PRIVS, 1)) < 0) return failed(Sys::kPrctl, r);
  if ((f = reduce_bounding_set(s.bounding)).sys != Sys::kNone) return f;
  // EINVAL means a kernel without ambient capabilities (before 4.3): nothing to clear.
  r = sys_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL);
  if (r < 0 && r != -EINVAL) return failed(Sys::kPrctl, r);
  if (s.set_ids && (f = set_ids(s)).sys != Sys::kNone) return f;

  // Only what we still hold can be kept: the Node process may itself run with fewer caps.
  CapSets now;
  if ((f = get_caps(now)).sys != Sys::kNone) return f;
  CapSets want;
  want.permitted = s.effective & now.permitted;
  want.effective = want.permitted;
  want.inheritable = s.ambient & want.permitted;
  // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: held only until the filter
  // is in, then dropped again below (outside the bounding set, it never comes back).
  const bool admin_for_filter = s.seccomp && !s.no_new_privs && has(now.permitted, kCapSysAdmin) && !has(want.permitted, kCapSysAdmin);
  if (admin_for_filter) {
    want.permitted |= 1ull << kCapSysAdmin;
    want.effective |= 1ull << kCapSysAdmin;
  }
  if ((f = set_caps(want)).sys != Sys::kNone) return f;
  for (int cap = 0; cap < 64; cap++) {
    if (!has(want.inheritable, cap)) continue;
    r = sys_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, static_cast<unsigned long>(cap));
    if (r < 0) return failed(Sys::kPrctl, r);
  }

  if (s.seccomp && (f = install_seccomp(s)).sys != Sys::kNone) return f;
  if (admin_for_filter) {
    want.permitted &= ~(1ull << kCapSysAdmin);
    want.effective &= ~(1ull << kCapSysAdmin);
    if ((f = set_caps(want)).sys != Sys::kNone) return f;
  }
  return ok();
}

}  // namespace nsbox::init
