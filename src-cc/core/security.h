// Capabilities, no_new_privs, credentials and seccomp, applied by the child just before
// execve. apply_security runs after clone: it follows child.cc's rules (no allocation).
#pragma once

#include "core/plan.h"

namespace nsbox {

struct SecurityFailure {
  Sys sys;
  int err;
};

SecurityFailure apply_security(const Security& security);

}  // namespace nsbox
