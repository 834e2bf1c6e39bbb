// Capabilities, no_new_privs, credentials and seccomp: applied by nsbox-init to itself before
// it forks the command, so that the command and the init that holds the container alive are
// confined alike.
#pragma once

#include <linux/filter.h>
#include <stdint.h>

#include "common/report.h"

namespace nsbox::init {

struct SecurityConfig {
  bool enabled = false;
  uint64_t bounding = ~0ull;   // capabilities kept in the bounding set
  uint64_t effective = ~0ull;  // effective = permitted
  uint64_t ambient = 0;        // raised into the ambient set (and so inheritable): non-root caps
  bool no_new_privs = false;
  bool set_ids = false;
  bool keep_groups = false;  // a user namespace with setgroups denied: setgroups would fail
  uint32_t uid = 0, gid = 0;
  const sock_filter* seccomp = nullptr;  // null: no filter
  uint32_t seccomp_len = 0;
};

struct SecurityFailure {
  Sys sys;
  int err;
};

SecurityFailure apply_security(const SecurityConfig& security);

}  // namespace nsbox::init
