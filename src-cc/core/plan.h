// The plan a container's first process walks after clone. Everything here is built before
// clone, in the parent, and only read by the child: the child may not allocate (see child.cc).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "common/report.h"

namespace nsbox {

enum class StepOp : uint8_t {
  kMakeRootPrivate,  // mount("/", MS_REC | MS_PRIVATE): nothing we mount propagates to the host
  kMountRootFs,      // fsopen(fstype) + options, attached at `target` (a host path): the new root
  kBindRoot,         // open_tree(source) attached onto itself: the new root
  kMountFs,          // fsopen(fstype) + options, attached at `target` inside the root
  kBindInRoot,       // open_tree(source, a host path), attached at `target` inside the root
  kMkdirInRoot,      // mkdir -p `target` inside the root
  kSymlinkInRoot,    // `target` inside the root -> `source`
  kMaskInRoot,       // hide `target`: the real /dev/null over a file, an empty read-only tmpfs over a dir
  kReadonlyInRoot,   // bind `target` onto itself read-only (only if it exists)
  kPivotRoot,        // the root becomes /, the old root is detached
  kLoopbackUp,       // bring `lo` up in the new network namespace
  kSethostname,
  kChdir,            // after pivot_root: resolved in the container's own /
  kOpenPty,          // a pty pair from the container's devpts (`target`: its ptmx); the master
                     // goes to the parent over pty_socket, the slave becomes stdio and ctty
  kJoinCgroup,       // write "0" to `fd` (a cgroup.procs the parent opened): join that cgroup
  kUnshareCgroupNs,  // a cgroup namespace rooted at the cgroups just joined
  kMountWriteLayer,  // fsopen(fstype) + options, or the detached mount `fd`, with `upper` and
                     // `work` made in it, attached at `target` (a host path): limits.disk
};

// Per-step flags.
enum : uint32_t {
  kStepNoFollowFinal = 1u << 0,  // refuse a symlink as the final component (volume targets)
  kStepTargetIsFile = 1u << 1,   // the mount point is a file, not a directory
  kStepExpectDevice = 1u << 2,   // bind source must be the device `mode` (S_IFCHR/S_IFBLK) `dev`
  kStepSourceNoLinks = 1u << 3,  // bind source resolved without following any symlink
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
  uint64_t dev = 0;  // makedev(major, minor) for kStepExpectDevice
  int fd = -1;       // kJoinCgroup; kMountWriteLayer's mount
};

const char* syscall_name(Sys sys);

// A user namespace of the container's own (CLONE_NEWUSER). The maps are the text the kernel
// takes in /proc/PID/{uid,gid}_map. Written by the child itself right after clone: the kernel
// lets a process map exactly its own ids (one line "0 <uid> 1") without any privilege, with
// setgroups denied first for the gid map. A map the child cannot write for itself (a range
// from /etc/subuid, or root's own ranges) has to come from outside its namespace: `external`.
//
// `external` (root's `userns: 'auto'`): the maps give a whole range of host ids, which only a
// process outside the namespace may write. The child then waits on `sock` (core/spawn.cc) for
// the parent to write them and to hand over `host_fds`: the host paths the child needs, opened
// by the parent in the child's own mount namespace (through /proc/PID/root, as the host's
// root), since the child, once 0 in its namespace, is nobody to the host's root-owned 0700
// state directory. Each lands on its reserved fd number, which the plan's strings name as
// /proc/self/fd/N; an idmapped entry is a clone of the host path idmapped to the container's
// namespace, mounted by the child over that path (overlay's lower layers).
//
// `newuidmap` set (rootless with a range from /etc/subuid and /etc/subgid): external maps that
// the parent writes by running the setuid `newuidmap PID args...` and `newgidmap PID args...`
// (core/subid.h) instead of writing the files itself. newuidmap requires /proc/PID to be the
// caller's, i.e. the child dumpable until then: such a plan is cloned without CLONE_VM (the
// child's own copy of Node's memory, so that its dumpable flag is not Node's, which a
// concurrent start's child may be clearing), and the child clears it only once the maps are in.
enum : uint32_t {
  kHostFdIdmap = 1u << 0,    // an idmapped clone of the path, mounted over it
  kHostFdNoLinks = 1u << 1,  // resolved without following any symlink (a volume's source)
};
struct HostFd {
  const char* path = "";  // absolute host path
  int fd = -1;            // the fd number the child puts it on
  uint32_t flags = 0;
};
constexpr size_t kMaxHostFds = 96;  // entries; an idmapped one sends two fds
struct UserNs {
  bool enabled = false;
  bool setgroups_deny = true;
  bool external = false;
  const char* uid_map = "";
  const char* gid_map = "";
  std::vector<HostFd> host_fds;
  const char* newuidmap = nullptr;  // absolute paths, resolved by the caller
  const char* newgidmap = nullptr;
  std::vector<const char*> uid_args;  // after the PID; null-terminated
  std::vector<const char*> gid_args;
};

struct Plan {
  int clone_flags = 0;   // CLONE_NEW* flags
  bool share_vm = true;  // CLONE_VM | CLONE_VFORK: no page-table copy of the Node process
                         // (CLONE_VM alone with an external user namespace: see UserNs)
  int cgroup_fd = -1;    // a cgroup v2 directory the first process is born in (clone3 + CLONE_INTO_CGROUP)
  UserNs userns;         // enabled: CLONE_NEWUSER is in clone_flags
  std::vector<Step> steps;
  // nsbox-init's options (src-cc/init/init.cc: tty, security, cand=...), then "--" and the
  // command's argv are appended by spawn(), which adds the fds it makes (report=, parent=).
  std::vector<std::string> init_options;
  std::vector<std::string> argv;
  std::vector<const char*> envp;  // null-terminated: the command's environment
  int stdio[3] = {0, 1, 2};       // fds the child dup2s onto 0, 1, 2
  int pty_socket = -1;            // kOpenPty: where the child sends the master
  unsigned short pty_cols = 80, pty_rows = 24;

  // Owns every string the pointers above refer to. A deque never moves its elements.
  std::deque<std::string> strings;
  std::deque<std::vector<const char*>> string_lists;
  const char* keep(std::string s) { return strings.emplace_back(std::move(s)).c_str(); }
};

}  // namespace nsbox
