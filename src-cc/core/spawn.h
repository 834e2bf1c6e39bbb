// The parent's side of starting a container: clone, then learn from the report pipe whether
// the command was exec'd.
#pragma once

#include <signal.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "core/plan.h"

namespace nsbox {

struct SpawnResult {
  int pid = -1;  // nsbox-init, the container's PID 1
  int pidfd = -1;
  int report_fd = -1;  // read end, non-blocking: the command's exit status comes here
  // When setup failed: the record it sent (the process has been reaped).
  bool failed = false;
  Report error{};
  // When the setup process ended without a report (killed): its wait status.
  bool vanished = false;
  int vanished_status = 0;
  // When clone itself (or a pipe) failed in the parent.
  Sys parent_sys = Sys::kNone;
  int parent_errno = 0;
};

// `init_fd`: nsbox-init's image (make_init_image()).
SpawnResult spawn(const Plan& plan, int init_fd);

// A child cloned with CLONE_VM makes itself non-dumpable until it execs, and that flag lands
// on the address space it shares with Node. With starts on several threads at once, one
// thread's "put it back" would run while another's child still holds it (and a thread that
// read the flag then would restore the child's 0 for good): the value Node had is saved by the
// first start in flight and restored by the last one out.
//
// A rootless child writes its own maps through /proc/self, which is the user's only while the
// address space is dumpable: it may share Node's only when no other child is in it until its
// exec (shared_vm_enter_alone: true, and every shared_vm_enter waits meanwhile); false: the
// caller forks it instead (its own copy, whose flag it sets itself).
void shared_vm_enter();
bool shared_vm_enter_alone();
void shared_vm_leave(bool alone = false);

// Waits for a child's exit through its pidfd (blocking, EINTR retried) and reaps it.
void reap(int pidfd, siginfo_t* info);
// SIGKILL through a pidfd and reap it: the one kill-and-reap (spawn, exec and the binding).
void kill_and_reap(int pidfd);
// rmdir of a killed container's cgroup directories, EBUSY retried for about 200 ms (its last
// processes may still be exiting): for an environment's teardown, where no JS runs to do it.
void remove_cgroup_dirs(const std::vector<std::string>& dirs);

// ---- Detached containers (`detach: true`): supervised by nsbox-monitor, not by Node ----

struct DetachSpec {
  int cgroup_tasks_fd = -1;          // a v1 `tasks` file the monitor joins first (the container is born there)
  int out = -1, err = -1;            // read ends of the container's stdout and stderr pipes (-1: none)
  int dir = -1;                      // the container's directory: its log and exit.json go there
  uint64_t log_max = 0;              // bytes a log file may grow to before it is rotated
  int log_files = 1;                 // files kept, the current one included
  std::string oom;                   // the memory cgroup's memory.oom_control, or ""
  uint64_t timeout_ms = 0;           // kill the container this long after its start (0: never)
  uint64_t cputime_ns = 0;           // kill it once its cgroup has used this much CPU (0: never)
  std::string cpu_file;              // with cputime: v1 cpuacct.usage or v2 cpu.stat
  bool cpu_v2 = false;               // cpu_file is v2's cpu.stat
  std::vector<std::string> cgroups;  // the container's cgroup directories, removed at its end
};

struct DetachResult {
  int monitor_pid = -1;    // the container's supervisor: a grandchild of Node in its own session
  int container_pid = -1;  // nsbox-init
  // Write end of the ack pipe (started only): one byte once the container's record names the
  // monitor; closed without it, the monitor kills the container (the caller died or failed).
  int ack_fd = -1;
  bool failed = false;  // the container's setup failed: `error` is its record
  Report error{};
  bool vanished = false;  // a setup process died without a report: its wait status
  int vanished_status = 0;
  Sys parent_sys = Sys::kNone;  // a call here (or in the monitor's own setup) failed
  int parent_errno = 0;
};

// Starts the container under a monitor of its own and returns once the container has
// started (or failed): nothing of it is Node's child, nothing of it is watched by Node.
DetachResult spawn_detached(const Plan& plan, int init_fd, const DetachSpec& spec);

}  // namespace nsbox
