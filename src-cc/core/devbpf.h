// The device allowlist on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program (its instructions
// are built in TypeScript, src/devbpf.ts) loaded and attached to a container's cgroup.
#pragma once

#include <stddef.h>

namespace nsbox {

struct DevBpfResult {
  int err = 0;           // errno, 0 on success
  const char* sys = "";  // the call that failed
};

// Loads `insns` (8 bytes each) and attaches it to the cgroup directory `cgroup_dir`.
DevBpfResult attach_device_program(const char* cgroup_dir, const void* insns, size_t count);

}  // namespace nsbox
