// The parent's side of starting a container: clone, then learn from the report pipe whether
// the command was exec'd.
#pragma once

#include "core/plan.h"

namespace nsbox {

struct SpawnResult {
  int pid = -1;    // nsbox-init, the container's PID 1
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

// SIGKILL through a pidfd and reap it (waitid on the pidfd, blocking, EINTR retried).
void kill_and_reap(int pidfd);

}  // namespace nsbox
