// exec: a new process inside a running container (its namespaces, root, cgroups and
// confinement), started the way a container's first process is: nsbox-init, exec'd from the
// sealed memfd, confines itself, forks the command and reports on a pipe (common/report.h).
#pragma once

#include <vector>

#include "core/plan.h"
#include "core/spawn.h"

namespace nsbox {

// Where an exec failed before nsbox-init took over (Report.step); nsbox-init itself reports
// kExecPhase as for a container.
enum class ExecStep : int32_t {
  kJoin = 0,      // the first process's own set-up (prctl)
  kCgroup = 1,    // joining the container's cgroups
  kSetns = 2,     // joining its namespaces
  kTerminal = 3,  // opening a pty in its devpts
  kEnter = 4,     // cloning the process inside its pid namespace
  kExec = kExecPhase,
};

struct ExecTarget {
  int pidfd = -1;                 // the container's nsbox-init, proven by the caller (start time, pid ns)
  int ns_flags = 0;               // CLONE_NEW* of the namespaces it has apart from ours: all joined at once
  std::vector<int> cgroup_procs;  // open cgroup.procs files of the container's cgroups to join
};

// Starts `plan` (argv, env, stdio or tty, nsbox-init's options) in the target container.
// SpawnResult as for spawn(): on success pid/pidfd are the exec's nsbox-init (a child of
// this process) and report_fd gives its kExited record.
SpawnResult exec_in(const Plan& plan, const ExecTarget& target, int init_fd);

}  // namespace nsbox
