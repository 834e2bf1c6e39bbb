// What a container's setup processes tell the supervisor, shared by the addon's child
// (src-cc/core/child.cc) and nsbox-init (src-cc/init/): fixed-size records on the report
// pipe. Header-only and free of the C++ library: nsbox-init is built without one.
#pragma once

#include <stdint.h>

namespace nsbox {

// Which system call failed; turned into text by syscall_name() (src-cc/core/spawn.cc).
enum class Sys : int32_t {
  kNone,
  kMount,
  kFsopen,
  kFsconfig,
  kFsmount,
  kMoveMount,
  kOpenTree,
  kMountSetattr,
  kOpenat2,
  kMkdirat,
  kMknodat,
  kSymlinkat,
  kFstat,
  kFchdir,
  kPivotRoot,
  kUmount2,
  kChdir,
  kSethostname,
  kSocket,
  kIoctl,
  kSetsid,
  kDup2,
  kFcntl,
  kPrctl,
  kSigaction,
  kSigprocmask,
  kCloseRange,
  kExecve,
  kCapset,
  kSeccomp,
  kSetgroups,
  kSetresgid,
  kSetresuid,
  kOpen,
  kClone,
  kPipe,
  kSendmsg,
  kExecveat,
  kSignalfd,
  kWrite,
  kRead,
  kUnshare,
  kConfig,
  kSetrlimit,
  kSetns,      // exec (core/exec_child.cc)
  kNewuidmap,  // core/subid.h: the helper's status, not an errno
  kNewgidmap,
};

enum class ReportKind : int32_t {
  kFailed = 1,   // a setup step, the security phase or the command's exec failed
  kStarted = 2,  // the command has been exec'd
  kExited = 3,   // the command ended; `status` is its wait status
};

// The phase after the plan's steps (stdio, init, security, the command's exec) reports this
// step index; the supervisor maps it to "exec".
constexpr int32_t kExecPhase = -2;
// The child writing its own user namespace's id maps, before the first step; the report's
// detail says which file: 0 setgroups, 1 uid_map, 2 gid_map.
constexpr int32_t kUserNsPhase = -3;

struct Report {
  int32_t kind;    // ReportKind
  int32_t step;    // index into the plan's steps, or kExecPhase
  int32_t sys;     // Sys
  int32_t err;     // errno
  int32_t detail;  // exec: index of the candidate path that gave `err`
  int32_t status;  // kExited: the wait status of the command
  // kExited: what the command and every process init reaped used (getrusage of init's
  // children): CPU time in microseconds, and the largest resident set among them in KiB.
  int64_t user_us;
  int64_t system_us;
  int64_t max_rss_kib;
};

}  // namespace nsbox
