// The entry point of the container's first process (see child.cc for its rules).
#pragma once

#include "core/plan.h"

namespace nsbox {

struct ChildArgs {
  const Plan* plan;
  int report_fd;           // write end of the CLOEXEC report pipe; nsbox-init inherits it
  int parent_pidfd;        // the Node process, to notice it died before PR_SET_PDEATHSIG was armed
  int init_fd;             // nsbox-init's sealed memfd
  char* const* init_argv;  // null-terminated
  int userns_sock;         // external user namespace: the child's end of the socket it waits on, else -1
  int userns_peer;         // the parent's end, closed by the child first (else no EOF reaches it), or -1
  bool own_vm = false;     // cloned without CLONE_VM: its dumpable flag is its own (spawn.cc)
};

// Runs in the cloned child; never returns.
int child_main(void* arg);

}  // namespace nsbox
