// The parent's side of starting a container: clone, then learn from the error pipe whether
// the child reached execve.
#pragma once

#include "core/plan.h"

namespace nsbox {

struct SpawnResult {
  int pid = -1;
  int pidfd = -1;
  // When the child failed before execve: the record it sent (it has been reaped).
  bool failed = false;
  ErrorRecord error{};
  // When clone itself (or a pipe) failed in the parent.
  Sys parent_sys = Sys::kNone;
  int parent_errno = 0;
};

SpawnResult spawn(const Plan& plan);

}  // namespace nsbox
