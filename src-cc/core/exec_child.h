// The two processes of an exec between clone and nsbox-init (see exec_child.cc for the rule).
#pragma once

#include "core/exec.h"

namespace nsbox {

struct ExecChildArgs {
  const Plan* plan;
  const ExecTarget* target;
  int report_fd;           // write end of the CLOEXEC report pipe; nsbox-init inherits it
  int parent_pidfd;        // the Node process: dead already means do nothing
  int init_fd;             // nsbox-init's sealed memfd
  char* const* init_argv;  // null-terminated
  char* enter_stack;       // top of the stack the second process runs on
  // Written by the first process (the memory is shared): the second's pid, its stdio fds.
  int enter_pid;
  int pty_slave;
};

// The first process: joins the cgroups and the namespaces, opens the terminal, clones the
// second (a sibling of itself: its parent is this Node process) and exits.
int exec_join_main(void* arg);

}  // namespace nsbox
