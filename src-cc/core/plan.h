// The plan a container's first process walks after clone. Everything here is built before
// clone, in the parent, and only read by the child: the child may not allocate (see child.cc).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include <linux/filter.h>

namespace nsbox {

enum class StepOp : uint8_t {
  kMakeRootPrivate,  // mount("/", MS_REC | MS_PRIVATE): nothing we mount propagates to the host
  kMountRootFs,      // fsopen(fstype) + options, attached at `target` (a host path): the new root
  kBindRoot,         // open_tree(source) attached onto itself: the new root
  kMountFs,          // fsopen(fstype) + options, attached at `target` inside the root
  kBindInRoot,       // open_tree(source, a host path), attached at `target` inside the root
  kMkdirInRoot,      // mkdir -p `target` inside the root
  kMknodInRoot,      // character device `target` inside the root
  kSymlinkInRoot,    // `target` inside the root -> `source`
  kMaskInRoot,       // hide `target`: the real /dev/null over a file, an empty read-only tmpfs over a dir
  kReadonlyInRoot,   // bind `target` onto itself read-only (only if it exists)
  kPivotRoot,        // the root becomes /, the old root is detached
  kLoopbackUp,       // bring `lo` up in the new network namespace
  kSethostname,
  kChdir,            // after pivot_root: resolved in the container's own /
  kOpenPty,          // a pty pair from the container's devpts (`target`: its ptmx); the master
                     // goes to the parent over pty_socket, the slave becomes stdio and ctty
};

// Per-step flags.
enum : uint32_t {
  kStepNoFollowFinal = 1u << 0,  // refuse a symlink as the final component (volume targets)
  kStepTargetIsFile = 1u << 1,   // the mount point is a file, not a directory
};

struct Step {
  StepOp op;
  uint32_t flags = 0;
  const char* name = "";    // for error messages: "mount /proc", "volume /data", ...
  const char* source = "";  // host path, link target or fs source
  const char* target = "";  // relative to the root for *InRoot steps, host path otherwise
  const char* fstype = "";
  const char* const* options = nullptr;  // key, value, key, value, ... (value "" = flag)
  uint32_t options_count = 0;            // number of pairs
  uint64_t attrs = 0;                    // MOUNT_ATTR_* applied to the new mount
  uint32_t mode = 0;
  uint64_t dev = 0;                      // makedev(major, minor) for kMknodInRoot
};

// Which system call failed in the child; turned into text by syscall_name().
enum class Sys : int32_t {
  kNone, kMount, kFsopen, kFsconfig, kFsmount, kMoveMount, kOpenTree, kMountSetattr,
  kOpenat2, kMkdirat, kMknodat, kSymlinkat, kFstat, kFchdir, kPivotRoot, kUmount2, kChdir,
  kSethostname, kSocket, kIoctl, kSetsid, kDup2, kFcntl, kPrctl, kSigaction, kSigprocmask,
  kCloseRange, kExecve, kCapset, kSeccomp, kSetgroups, kSetresgid, kSetresuid, kOpen,
  kClone, kPipe, kSendmsg,
};

const char* syscall_name(Sys sys);

// What the child writes to the error pipe before _exit. EOF without a record: execve worked.
struct ErrorRecord {
  int32_t step;   // index into steps; steps.size() means the exec (or security) phase
  int32_t sys;    // Sys
  int32_t err;    // errno
  int32_t detail; // exec: index of the candidate path that gave `err`
};

// Capability sets, seccomp and credentials applied just before execve.
struct Security {
  bool enabled = false;
  uint64_t bounding = ~0ull;    // capabilities kept in the bounding set
  uint64_t effective = ~0ull;   // effective = permitted
  uint64_t ambient = 0;         // raised into the ambient set (and so inheritable): non-root caps
  bool no_new_privs = false;
  bool set_ids = false;
  uint32_t uid = 0, gid = 0;
  std::vector<sock_filter> seccomp;  // empty: no filter
};

struct Plan {
  int clone_flags = 0;  // CLONE_NEW* flags
  bool share_vm = true; // CLONE_VM | CLONE_VFORK: no page-table copy of the Node process
  std::vector<Step> steps;
  std::vector<const char*> argv;        // null-terminated
  std::vector<const char*> envp;        // null-terminated
  std::vector<const char*> candidates;  // full paths execve tries in order
  int stdio[3] = {0, 1, 2};             // fds the child dup2s onto 0, 1, 2
  int pty_socket = -1;                  // kOpenPty: where the child sends the master
  unsigned short pty_cols = 80, pty_rows = 24;
  Security security;

  // Owns every string the pointers above refer to. A deque never moves its elements.
  std::deque<std::string> strings;
  std::deque<std::vector<const char*>> string_lists;
  const char* keep(std::string s) { return strings.emplace_back(std::move(s)).c_str(); }
};

}  // namespace nsbox
